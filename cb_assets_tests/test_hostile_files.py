"""Hostile and odd files under the logs root.

Each is a clear ResultFileError naming the file and the key (which run_results and
eval_results raise as a failure that is not retried), and none stalls a sensor tick:
FIFOs and directories named result.json, symlink loops, numbers DuckDB cannot hold,
lone surrogates, NaN, non-canonical folder names, copies that keep an old mtime, and
control characters on their way to a terminal. Modules are imported whole and their
functions looked up inside the tests, so each test fails on its own on older code.
"""

import argparse
import csv
import io
import json
import os
import shutil
import stat
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from cb_assets.defs.benchmark.resources import BenchmarkDataset
from cb_assets.defs.evals.outcomes import eval_row
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.runs import result_scan, results
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.defs.runs.sensors import new_results
from cb_assets.defs.storage import sql
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.platform import write_registry
from cb_assets_tests.support.services import real_logs_dir, require_real_logs
from cb_assets_tests.support.synthetic import write_result
from cb_assets_tests.support.timeouts import within

PAIR = Pair("dspy_task", 8394, 3, 4)
REAL_LOGS = real_logs_dir()
CONTROL = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]


def later(seconds: float = 5) -> float:
    return time.time() + seconds


def coop(tmp_path: Path, run_name: str = "e-coop-comm", pair: Pair = PAIR) -> Path:
    return write_result(tmp_path, run_name, pair, "coop")


def rows(pair_dir: Path, logs: Path, pair: Pair = PAIR) -> list[dict]:
    return results.result_rows(pair_dir, pair, Arm("e", "coop-comm"), ran=False, logs_root=logs)


def fifo_at(path: Path) -> Path:
    if os.path.lexists(path):
        path.unlink()
    os.mkfifo(path)
    return path


# 1. Only regular files are read, and never blocking ------------------------------------


@pytest.mark.parametrize("name", ["result.json", "conversation.json"])
def test_a_fifo_is_refused_at_once_naming_the_file(tmp_path: Path, name: str) -> None:
    d = coop(tmp_path)
    fifo = fifo_at(d / name)
    with pytest.raises(results.ResultFileError) as err:
        within(5, lambda: rows(d, tmp_path), fifos=(fifo,))
    assert f"{fifo}: is a FIFO, not a regular file" in str(err.value)


def test_a_fifo_eval_json_is_refused_at_once(tmp_path: Path) -> None:
    d = coop(tmp_path)
    fifo = fifo_at(d / "eval.json")
    with pytest.raises(results.ResultFileError, match="is a FIFO, not a regular file"):
        within(
            5,
            lambda: eval_row(
                d, PAIR, Arm("e", "coop-comm"), ran=False, patterns=(), logs_root=tmp_path
            ),
            fifos=(fifo,),
        )


def test_a_directory_named_result_json_is_a_clear_error(tmp_path: Path) -> None:
    d = coop(tmp_path)
    (d / "result.json").unlink()
    (d / "result.json").mkdir()
    with pytest.raises(results.ResultFileError) as err:
        rows(d, tmp_path)
    assert f"{d / 'result.json'}: is a directory, not a regular file" in str(err.value)


def test_a_symlink_loop_is_a_clear_error(tmp_path: Path) -> None:
    d = coop(tmp_path)
    (d / "result.json").unlink()
    (d / "result.json").symlink_to("result.json")
    with pytest.raises(results.ResultFileError, match="symbolic link"):
        rows(d, tmp_path)
    with pytest.raises(results.ResultFileError, match="symbolic link"):
        results.read_json_file(d / "result.json")


def test_a_symlink_inside_the_logs_root_is_still_read(tmp_path: Path) -> None:
    d = coop(tmp_path)
    kept = tmp_path / "kept.json"
    (d / "result.json").rename(kept)
    (d / "result.json").symlink_to(kept)
    assert [r["agent_id"] for r in rows(d, tmp_path)] == ["agent1", "agent2"]


def make_hostile_run(logs: Path, run: str = "exp-coop-comm") -> dict[str, Path]:
    """A run with a FIFO, a directory and a symlink to a FIFO named like upstream's files,
    next to a regular result and a symlink to one."""
    pairs = {n: Pair("dspy_task", 8394, 1, n) for n in range(2, 7)}
    dirs = {n: write_result(logs, run, p, "coop") for n, p in pairs.items()}
    fifo_at(dirs[2] / "result.json")
    (dirs[3] / "result.json").unlink()
    (dirs[3] / "result.json").mkdir()
    (dirs[3] / "result.json" / "inside.txt").write_text("kept")
    elsewhere = logs / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    os.mkfifo(elsewhere / "pipe")
    (dirs[4] / "eval.json").symlink_to(elsewhere / "pipe")
    (dirs[6] / "result.json").rename(elsewhere / "result6.json")
    (dirs[6] / "result.json").symlink_to(elsewhere / "result6.json")
    return {
        "fifo": dirs[2] / "result.json",
        "dir": dirs[3] / "result.json",
        "link_to_fifo": dirs[4] / "eval.json",
        "regular": dirs[5] / "result.json",
        "link_to_regular": dirs[6] / "result.json",
        "pipe": elsewhere / "pipe",
    }


def test_quarantine_moves_non_regular_entries_aside_and_upstream_totals_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network on import
    from cooperbench.utils import get_run_totals

    logs = tmp_path / "logs"
    entries = make_hostile_run(logs)
    aside = logs / "_quarantine"
    moved = result_scan.quarantine_non_regular(logs / "exp-coop-comm", aside)
    assert moved == sorted([entries["fifo"], entries["dir"], entries["link_to_fifo"]])
    for path in moved:
        assert not os.path.lexists(path)
        assert os.path.lexists(aside / path.relative_to(logs))
    assert stat.S_ISFIFO(os.lstat(aside / entries["fifo"].relative_to(logs)).st_mode)
    assert (aside / entries["dir"].relative_to(logs) / "inside.txt").read_text() == "kept"
    assert os.path.islink(aside / entries["link_to_fifo"].relative_to(logs))  # the link moved
    assert stat.S_ISFIFO(os.lstat(entries["pipe"]).st_mode)  # its target did not
    assert entries["regular"].is_file() and entries["link_to_regular"].is_symlink()
    assert result_scan.quarantine_non_regular(logs / "exp-coop-comm", aside) == []
    # a second FIFO at the same place is moved next to the first, replacing nothing
    fifo_at(entries["fifo"])
    assert result_scan.quarantine_non_regular(logs / "exp-coop-comm", aside) == [entries["fifo"]]
    assert stat.S_ISFIFO(os.lstat(f"{aside / entries['fifo'].relative_to(logs)}.1").st_mode)
    # upstream's own totals, which open every result.json of a run, now finish
    totals = within(10, lambda: get_run_totals("exp-coop-comm", "coop", logs_dir=str(logs)))
    assert totals["task_count"] == 3  # the regular result, the link to one, the eval.json pair


def test_scan_skips_non_regular_entries_without_blocking(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    entries = make_hostile_run(logs)
    (entries["link_to_regular"].parent / "result.json").unlink()
    (entries["link_to_regular"].parent / "result.json").symlink_to("result.json")  # a loop
    scanned = within(
        10,
        lambda: result_scan.scan(
            logs, {"exp"}, result_scan.Cursor(), limit=10, settle_seconds=2, now=later()
        ),
        fifos=(entries["fifo"],),
    )
    regular = {entries["regular"], entries["link_to_fifo"].with_name("result.json")}
    assert {f.path for f in scanned[0]} == regular
    skipped = {(s.path, s.kind) for s in scanned[3]}
    assert skipped == {
        (entries["fifo"], "not-regular"),
        (entries["dir"], "not-regular"),
        (entries["link_to_regular"], "unreadable"),
    }


def sensor_tick(logs: Path, pairs: list[Pair], cursor: str | None = None):
    """One evaluation of the real `new_results` sensor; its result and the cursor it left."""
    registry = write_registry(
        logs.parent / "experiments.yaml", {"name": "exp", "agent": "oracle", "model": "oracle"}
    )
    runner = CooperBenchRunner(
        dataset=BenchmarkDataset(dataset_dir=str(logs)),
        logs_dir=str(logs),
    )
    experiments = ExperimentRegistry(path=str(registry))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("pairs", [p.key for p in pairs])
        with dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"runner": runner, "experiments": experiments},
        ) as context:
            result = new_results(context)
            return result, context.cursor


def test_sensor_tick_reports_a_fifo_and_never_blocks_on_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    pair = Pair("dspy_task", 8394, 1, 2)
    d = write_result(logs, "exp-coop-comm", pair, "coop")
    fifo = fifo_at(d / "result.json")
    time.sleep(2.1)  # past the settle time
    result, _ = within(20, lambda: sensor_tick(logs, [pair]), fifos=(fifo,))
    assert isinstance(result, dg.SkipReason)
    assert "1 result.json entries that are not regular files skipped" in result.skip_message
    assert "is a FIFO" in result.skip_message


# 2. Numbers and strings DuckDB could not hold are bad input, named at once --------------


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


RAW = "__raw__"  # a value written into the JSON text as is


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("agents.agent1.steps", 10**30, "'agents.agent1.steps': 10000000000"),
        ("agents.agent1.steps", 2**63, "is over the int64 maximum"),
        ("agents.agent1.steps", 10.5, "'agents.agent1.steps': 10.5 is not whole"),
        ("features", [3, "x"], "key 'features' is [3, 'x']"),
        ("features", [3, 4, 4], "key 'features' is [3, 4, 4]"),
        ("agents.agent1.error", "boom \ud800", "'agents.agent1.error': not valid UTF-8"),
        ("model", "\udfff", "invalid key 'model': not valid UTF-8 text (lone surrogate"),
        ("run_name", "x\ud83d", "invalid key 'run_name': not valid UTF-8"),
        ("agents.agent1.cost", float("nan"), "'agents.agent1.cost': NaN is not a number"),
        ("duration_seconds", float("inf"), "'duration_seconds': Infinity is not a number"),
        ("total_cost", float("-inf"), "'total_cost': -Infinity is not a number"),
        ("agents.agent1.cost", f"{RAW}1e400", "'agents.agent1.cost': 1e400 is out of range"),
        ("agents.agent1.cost", -1000, "invalid key 'agents.agent1.cost': -1000 is negative"),
        ("agents.agent2.steps", -1, "invalid key 'agents.agent2.steps': -1 is negative"),
        ("agents.agent1.input_tokens", -5, "'agents.agent1.input_tokens': -5 is negative"),
        ("agents.agent1.output_tokens", -5, "'agents.agent1.output_tokens': -5 is negative"),
        ("agents.agent1.cache_read_tokens", -5, "'agents.agent1.cache_read_tokens': -5 is"),
        ("agents.agent1.patch_lines", -1, "'agents.agent1.patch_lines': -1 is negative"),
        ("duration_seconds", -1.5, "invalid key 'duration_seconds': -1.5 is negative"),
        ("total_cost", -1000, "invalid key 'total_cost': -1000 is negative"),
        ("messages_sent", -1, "invalid key 'messages_sent': -1 is negative"),
        ("agents.agent1.feature_id", "x", "'agents.agent1.feature_id': 'x' is not a number"),
        ("agents.agent1.feature_id", 2**64, "'agents.agent1.feature_id': 1844"),
        ("model", 5, "invalid key 'model': 5 is not a string"),
        ("started_at", ["2026"], "invalid key 'started_at': ['2026'] is not a string"),
        ("padding", f"{RAW}{'9' * 5000}", "invalid key 'padding': 999999999999… is an integer"),
        ("padding", f"{RAW}{'[' * 100_000}{']' * 100_000}", "invalid JSON (nested too deeply)"),
    ],
)
def test_values_no_row_may_hold_are_named_by_file_and_key(
    tmp_path: Path, key: str, value, expected: str
) -> None:
    d = coop(tmp_path)
    path = d / "result.json"
    data = json.loads(path.read_text())
    raw = isinstance(value, str) and value.startswith(RAW)
    _set(data, key, "__here__" if raw else value)
    text = json.dumps(data)  # NaN, Infinity as Python writes them; "\ud800" as an escape
    if raw:
        text = text.replace('"__here__"', value.removeprefix(RAW))
    path.write_text(text)
    with pytest.raises(results.ResultFileError) as err:
        rows(d, tmp_path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_lone_surrogate_in_a_key_is_named_escaped(tmp_path: Path) -> None:
    d = coop(tmp_path)
    path = d / "result.json"
    path.write_text(path.read_text().replace('"agent1"', '"agent\\ud800"', 1))
    with pytest.raises(results.ResultFileError) as err:
        rows(d, tmp_path)
    assert "invalid key 'agents.agent\\ud800': not valid UTF-8" in str(err.value)
    str(err.value).encode("utf-8")  # the message itself can be logged and stored


def test_extreme_but_valid_values_reach_duckdb(tmp_path: Path) -> None:
    d = coop(
        tmp_path,
        pair=PAIR,
    )
    path = d / "result.json"
    data = json.loads(path.read_text())
    data["agents"]["agent1"].update(steps=2**63 - 1, cost=0, error="\x1b[31mred\x00\x9b")
    data["agents"]["agent2"].update(status="Error", error="")
    data["duration_seconds"] = 0
    path.write_text(json.dumps(data))
    frame = results.rows_to_frame(rows(d, tmp_path))  # noqa: F841 — DuckDB reads it
    with duckdb.connect() as conn:
        conn.execute("create table run_results as select * from frame")
        got = conn.execute("select steps, error from run_results order by agent_id").fetchall()
    assert got == [(2**63 - 1, "\x1b[31mred\x00\x9b"), (10, "")]


def real_pair_dirs() -> list[Path]:
    return sorted(p.parent for p in REAL_LOGS.glob("*/*/*/*/*/result.json"))


def test_every_real_upstream_file_still_parses() -> None:
    """Real runs: fork-specific extra keys, Error agents, task 0, heavy-tailed durations."""
    require_real_logs()
    pair_dirs = real_pair_dirs()
    assert len(pair_dirs) == 141
    for d in pair_dirs:
        pair = result_scan.pair_of(d)
        assert pair is not None, d  # every real folder name is canonical (openai_tiktoken/0)
        arm = Arm("real", "solo" if d.parts[-4] == "solo" else "coop-comm")
        got = results.result_rows(d, pair, arm, ran=False, logs_root=REAL_LOGS)
        assert results.rows_to_frame(got)["cost"].min() >= 0
        if (d / "eval.json").exists():
            eval_row(d, pair, arm, ran=False, patterns=(), logs_root=REAL_LOGS)
    for other in ("config.json", "summary.json", "eval_summary.json"):
        for path in REAL_LOGS.glob(f"*/{other}"):
            results.read_json_file(path, root=REAL_LOGS)


def test_a_real_run_copied_in_after_the_cursor_is_found_whole(tmp_path: Path) -> None:
    """`cp -a` of a real run (files from July 2026) after the sensor already handled newer
    files: all 20 pairs are found, none is skipped."""
    require_real_logs()
    logs = tmp_path / "logs"
    write_result(logs, "exp-solo", PAIR, "solo")
    _, cursor, *_ = result_scan.scan(
        logs, {"exp"}, result_scan.Cursor(), limit=100, settle_seconds=2, now=later()
    )
    shutil.copytree(REAL_LOGS / "nano_msg_1", logs / "exp-coop-comm")  # copy2: old mtimes
    for folder, _, _ in os.walk(logs):
        os.chmod(folder, 0o755)
    scanned = result_scan.scan(logs, {"exp"}, cursor, limit=100, settle_seconds=2, now=later())
    assert len(scanned[0]) == 20 and scanned[2] == 0
    assert {f.arm for f in scanned[0]} == {Arm("exp", "coop-comm")}
    assert len(scanned) < 4 or scanned[3] == []  # (older scans returned no skipped list)


# 3. Only canonical folder names are pairs ----------------------------------------------


@pytest.mark.parametrize(
    ("task", "features"),
    [
        (" 8394", "f3_f4"),
        ("8394 ", "f3_f4"),
        ("08394", "f3_f4"),
        ("8394\n", "f3_f4"),
        ("+8394", "f3_f4"),
        ("٨٣٩٤", "f3_f4"),  # Arabic-Indic digits: int() reads them as 8394
        ("8_394", "f3_f4"),
        ("8394", "f03_f4"),
        ("8394", "f 3_f4"),
        ("8394", "ff3_f4"),
        ("8394", "f3_f4 "),
        ("8394", "f4_f3"),
        ("8394", "f3_f3"),
        ("8394", "f3_f4_f5"),
        ("99999999999999999999", "f3_f4"),
    ],
)
def test_non_canonical_folders_are_no_pair(task: str, features: str) -> None:
    assert result_scan.pair_of(Path("logs/run/coop/dspy_task") / task / features) is None


@pytest.mark.parametrize(
    ("folder", "pair"),
    [
        ("dspy_task/8394/f3_f4", PAIR),
        ("openai_tiktoken_task/0/f4_f7", Pair("openai_tiktoken_task", 0, 4, 7)),
        ("pallets_jinja_task/1465/f10_f12", Pair("pallets_jinja_task", 1465, 10, 12)),
    ],
)
def test_canonical_folders_are_their_pair(folder: str, pair: Pair) -> None:
    assert result_scan.pair_of(Path("logs/run/coop") / folder) == pair


def test_a_space_before_the_task_id_is_reported_never_requested(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    d = write_result(logs, "exp-solo", PAIR, "solo")
    d.parent.rename(d.parent.with_name(" 8394"))
    time.sleep(2.1)
    result, _ = sensor_tick(logs, [PAIR])
    assert isinstance(result, dg.SkipReason), "the real partition was requested"
    assert "1 pair folders with non-canonical names skipped" in result.skip_message
    assert "dspy_task/ 8394/f3_f4'" in result.skip_message


# 4. Files are found by content state, not by mtime alone -------------------------------


def test_a_copy_that_keeps_an_old_mtime_is_found(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_result(logs, "exp-solo", PAIR, "solo")
    found, cursor, *_ = result_scan.scan(
        logs, {"exp"}, result_scan.Cursor(), limit=10, settle_seconds=2, now=later()
    )
    assert [f.pair_key for f in found] == [PAIR.key]
    # a result from elsewhere, a day old, arrives by `cp -p` after the cursor moved on
    other = Pair("dspy_task", 8394, 1, 2)
    source = write_result(tmp_path / "elsewhere", "exp-solo", other, "solo") / "result.json"
    os.utime(source, (time.time() - 86400, time.time() - 86400))
    target = logs / source.relative_to(tmp_path / "elsewhere")
    target.parent.mkdir(parents=True)
    shutil.copy2(source, target)
    assert target.stat().st_mtime < time.time() - 86000
    found, *_ = result_scan.scan(logs, {"exp"}, cursor, limit=10, settle_seconds=2, now=later())
    assert [f.pair_key for f in found] == [other.key]


def test_a_future_mtime_neither_hides_a_file_nor_holds_the_scan(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = write_result(logs, "exp-solo", PAIR, "solo") / "result.json"
    year_2100 = 4102444800
    os.utime(path, (year_2100, year_2100))
    found, *_ = result_scan.scan(
        logs, {"exp"}, result_scan.Cursor(), limit=10, settle_seconds=2, now=later()
    )
    assert [f.pair_key for f in found] == [PAIR.key]


def test_a_file_delivered_again_is_requested_again_under_a_new_run_key(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    path = write_result(logs, "exp-solo", PAIR, "solo") / "result.json"
    kept = tmp_path / "kept.json"
    shutil.copy2(path, kept)
    time.sleep(2.1)
    first, cursor = sensor_tick(logs, [PAIR])
    [request] = first.run_requests
    assert request.partition_key == f"exp/solo|{PAIR.key}"
    again, _ = sensor_tick(logs, [PAIR], cursor)
    assert isinstance(again, dg.SkipReason)
    shutil.copy2(kept, path)  # rsync -a / cp -p of the same result again
    time.sleep(2.1)
    redelivered, _ = sensor_tick(logs, [PAIR], cursor)
    [request2] = redelivered.run_requests
    assert request2.partition_key == request.partition_key
    assert request2.run_key != request.run_key


# 5. Control characters reach no terminal ------------------------------------------------

HOSTILE = "red \x1b[31mALERT\x1b[0m nul\x00 csi\x9b del\x7f bell\x07 cr\r lf\n tab\t end"


def test_table_output_escapes_every_control_character() -> None:
    frame = pd.DataFrame({"error\x1b[2J": [HOSTILE, None], "n": [1, 2]})
    text = sql.render(frame)
    body = text.replace("\n", "")  # the table's own line breaks
    assert not any(c in body for c in CONTROL), repr(text)
    for shown in ("\\x1b[31mALERT", "nul\\x00", "csi\\x9b", "del\\x7f", "\\x07", "cr\\r"):
        assert shown in text
    assert "lf\\n tab\\t end" in text and "error\\x1b[2J" in text
    assert len(text.splitlines()) == 4  # header, rule, two rows: no line break from a value


def test_csv_output_keeps_newlines_and_tabs_quoted_and_escapes_the_rest() -> None:
    frame = pd.DataFrame({"error": [HOSTILE], "n": [1]})
    text = sql.render(frame, csv=True)
    assert not any(c in text for c in CONTROL if c not in "\n\t"), repr(text)
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["error"] == (
        "red \\x1b[31mALERT\\x1b[0m nul\\x00 csi\\x9b del\\x7f bell\\x07 cr\\r lf\n tab\t end"
    )


def test_cb_assets_sql_prints_stored_escapes_visibly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from cb_assets.cli.sql import sql

    db = tmp_path / "platform.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table run_results (error varchar, n integer)")
        conn.execute("insert into run_results values (?, 1)", [HOSTILE])
    monkeypatch.setenv("CB_DUCKDB_PATH", str(db))
    for as_csv in (False, True):
        assert sql(argparse.Namespace(query="select * from run_results", csv=as_csv)) == 0
        out, err = capsys.readouterr()
        assert "\\x1b[31mALERT" in out and "\x1b" not in out + err and "\x00" not in out
    query = "select (chr(27) || '[2J')::int"
    assert sql(argparse.Namespace(query=query, csv=False)) == 2
    out, err = capsys.readouterr()
    assert "\\x1b[2J" in err and "\x1b" not in err
