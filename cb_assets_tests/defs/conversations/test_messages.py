"""conversation.json as rows: every real conversation checked against a plain-json count,
hostile files refused with the file and key named, and the SQL views over real runs."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.conversations.messages import (
    CONVERSATION_DTYPES,
    CONVERSATION_VIEWS,
    EARLY_PLAN_SECONDS,
    conversation_rows,
    rows_to_frame,
)
from cb_assets.defs.runs.results import ResultFileError
from cb_assets_tests.support.services import require

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"
ARM = {"experiment": "e", "setting": "coop-comm", "repeat": 1, "arm": "e/coop-comm", "pair": "p"}


def real_logs() -> Path:
    require(REAL_LOGS.is_dir(), f"the real logs are not at {REAL_LOGS}")
    return REAL_LOGS


def pair_key(pair_dir: Path) -> str:
    repo, task, features = pair_dir.parts[-3:]
    return f"{repo}-{task}-{features}"


def test_every_real_conversation_matches_a_plain_json_count() -> None:
    files = sorted(real_logs().glob("*/*/*/*/*/conversation.json"))
    assert len(files) == 121
    total = 0
    for path in files:
        messages = json.loads(path.read_text(encoding="utf-8"))
        rows = conversation_rows(path, **ARM, root=REAL_LOGS)
        assert len(rows) == len(messages), path
        # and upstream's own count in result.json agrees
        assert len(rows) == json.loads((path.parent / "result.json").read_text())["messages_sent"]
        assert [r["message_index"] for r in rows] == list(range(len(messages)))
        assert {r["sender"] for r in rows} == {m["from"] for m in messages}
        for row, message in zip(rows, messages, strict=True):
            assert (row["sender"], row["recipient"]) == (message["from"], message["to"])
            assert row["feature_id"] == message["feature_id"]
            assert row["text"] == message["message"]
            assert row["kind"] == message.get("kind")
            assert row["sent_at"].tzinfo is not None and row["sent_at"].utcoffset().seconds == 0
            assert row["sent_at"].timestamp() == pytest.approx(message["timestamp"], abs=1e-6)
            assert row["sent_at"] == pd.Timestamp(
                dt.datetime.fromtimestamp(message["timestamp"], dt.UTC)
            )
        total += len(rows)
    assert total == 389
    frame = rows_to_frame(conversation_rows(files[0], **ARM))
    assert frame.dtypes.astype(str).to_dict() == CONVERSATION_DTYPES


def test_the_structured_fork_keeps_its_message_kinds() -> None:
    [path] = real_logs().glob("smoke_ca_1/coop/*/*/*/conversation.json")
    kinds = [r["kind"] for r in conversation_rows(path, **ARM)]
    plain = [
        m["message"].split("\n")[0].removeprefix("type: ") for m in json.loads(path.read_text())
    ]
    assert kinds == plain and {"SURVEY", "DRAFT", "AGREE"} <= set(kinds)


def write(tmp_path: Path, data: object, raw: str | None = None) -> Path:
    path = tmp_path / "conversation.json"
    path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
    return path


GOOD = {"from": "agent1", "to": "agent2", "message": "hi", "timestamp": 1.5e9, "feature_id": 1}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"messages": []}, "expected a JSON list of messages, got dict"),
        ([GOOD, "hello"], "invalid key '[1]': expected an object, got str"),
        ([GOOD, {**GOOD, "timestamp": "2026-07-02T23:50:45"}], "'[1].timestamp'"),
        ([GOOD, GOOD, GOOD, {**GOOD, "timestamp": True}], "'[3].timestamp'"),
        ([{**GOOD, "timestamp": 1e300}], "'[0].timestamp': 1e+300 is out of range"),
        ([{**GOOD, "from": 1}], "'[0].from'"),
        ([{**GOOD, "to": ["agent2"]}], "'[0].to'"),
        ([{**GOOD, "feature_id": "1"}], "'[0].feature_id'"),
        ([{**GOOD, "message": 7}], "'[0].message'"),
        ([{**GOOD, "kind": {"a": 1}}], "'[0].kind'"),
        ([{**GOOD, "message": {"type": 3}}], "'[0].message.type'"),
    ],
)
def test_hostile_files_name_the_file_and_the_key(tmp_path: Path, data: object, key: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ResultFileError) as caught:
        conversation_rows(path, **ARM)
    assert str(caught.value).startswith(f"{path}: ") and key in str(caught.value)


def test_invalid_json_and_a_directory_are_result_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="invalid JSON"):
        conversation_rows(write(tmp_path, None, raw="[{"), **ARM)
    (tmp_path / "dir" / "conversation.json").mkdir(parents=True)
    with pytest.raises(ResultFileError, match="a directory"):
        conversation_rows(tmp_path / "dir" / "conversation.json", **ARM)


def test_missing_file_is_no_messages_and_nulls_stay_null(tmp_path: Path) -> None:
    assert conversation_rows(tmp_path / "conversation.json", **ARM) == []
    [row] = conversation_rows(write(tmp_path, [{"message": "x"}]), **ARM)
    assert row["sent_at"] is None and row["sender"] is None and row["kind"] is None
    frame = rows_to_frame([row])
    assert frame["sent_at"].isna().all() and str(frame["sent_at"].dtype) == "datetime64[ns, UTC]"
    assert rows_to_frame([]).dtypes.astype(str).to_dict() == CONVERSATION_DTYPES


def test_stored_text_is_valid_utf8_and_scrubbed(tmp_path: Path) -> None:
    # a lone surrogate is valid JSON but not UTF-8: replaced, the other messages kept
    raw = json.dumps(
        [
            {**GOOD, "message": "bad \ud800 half", "kind": "NOTE"},
            {**GOOD, "message": "use OPENAI key sk-abcdefghijklmnop1234"},
            {**GOOD, "message": {"type": "PLAN", "files": ["a.py"]}},
        ]
    )
    assert "\\ud800" in raw
    rows = conversation_rows(write(tmp_path, None, raw=raw), **ARM)
    assert rows[0]["text"] == "bad \ufffd half" and rows[0]["kind"] == "NOTE"
    assert "abcdefghijklmnop" not in rows[1]["text"]
    assert json.loads(rows[2]["text"]) == {"type": "PLAN", "files": ["a.py"]}
    assert rows[2]["kind"] == "PLAN"
    conn = duckdb.connect()
    conn.register("conversations", rows_to_frame(rows))  # DuckDB refuses invalid UTF-8
    assert conn.execute("select count(*) from conversations").fetchone() == (3,)


# --- the views over real runs ----------------------------------------------------------

RUNS = {  # run folder → (experiment, setting, repeat)
    "nano_msg_1": ("nano", "coop-comm", 1),
    "nano_msg_2": ("nano", "coop-comm", 2),
    "nano_control_1": ("control", "coop-comm", 1),  # messaging on, no message ever sent
    "nano_solo_1": ("nano", "solo", 1),
}


@pytest.fixture(scope="module")
def real_tables() -> dict[str, pd.DataFrame]:
    runs, evals, conversations = [], [], []
    for run, (experiment, setting, repeat) in RUNS.items():
        for result_file in sorted((real_logs() / run).glob("*/*/*/*/result.json")):
            result = json.loads(result_file.read_text())
            key = {
                "experiment": experiment, "setting": setting, "repeat": repeat,
                "pair": pair_key(result_file.parent),
            }  # fmt: skip
            agents = result.get("agents") or {"solo": result["agent"]}
            for agent_id, block in agents.items():
                runs.append(
                    {**key, "agent_id": agent_id, "cost": block["cost"],
                     "started_at": result["started_at"], "messaging_enabled": setting != "solo",
                     "messages_sent": result.get("messages_sent")}
                )  # fmt: skip
            evaluation = json.loads((result_file.parent / "eval.json").read_text())
            evals.append({**key, "outcome": "pass" if evaluation["both_passed"] else "fail"})
            conversations += conversation_rows(
                result_file.parent / "conversation.json", **key, arm=f"{experiment}/{setting}"
            )
    return {
        "run_results": pd.DataFrame(runs),
        "eval_results": pd.DataFrame(evals),
        "conversations": rows_to_frame(conversations),
    }


@pytest.fixture(scope="module")
def views(real_tables) -> dict[str, pd.DataFrame]:
    conn = duckdb.connect()
    conn.execute("set TimeZone = 'America/Los_Angeles'")  # the delays must not depend on it
    for name, frame in real_tables.items():
        conn.register(f"{name}_frame", frame)
        conn.execute(f"create table {name} as select * from {name}_frame")
    for name, sql in CONVERSATION_VIEWS.items():
        conn.execute(f"create view {name} as {sql}")
    return {name: conn.sql(f"select * from {name}").df() for name in CONVERSATION_VIEWS}


def plain_conversations(run: str) -> dict[str, tuple[str, list[dict]]]:
    """pair key → (started_at, messages), read with plain json."""
    out = {}
    for path in (REAL_LOGS / run).glob("*/*/*/*/conversation.json"):
        started = json.loads((path.parent / "result.json").read_text())["started_at"]
        out[pair_key(path.parent)] = (started, json.loads(path.read_text()))
    return out


def test_messages_per_pair_and_per_agent(views) -> None:
    per_pair = views["messages_per_pair"].set_index(["experiment", "setting", "repeat", "pair"])
    assert len(per_pair) == 60  # every messaging pair-run, none of solo's
    for run, (experiment, setting, repeat) in list(RUNS.items())[:3]:
        for pair, (_, messages) in plain_conversations(run).items():
            row = per_pair.loc[(experiment, setting, repeat, pair)]
            assert row["messages"] == len(messages)
            assert row["senders"] == len({m["from"] for m in messages})
    per_agent = views["messages_per_agent"]
    assert per_agent["messages"].sum() == per_pair["messages"].sum()
    control = per_pair.loc["control"]
    assert (control["messages"] == 0).all() and len(control) == 20


def test_first_message_delay_is_seconds_from_the_start(views) -> None:
    delays = views["first_message_delay"].set_index(["experiment", "repeat", "pair"]).sort_index()
    checked = 0
    for run, repeat in (("nano_msg_1", 1), ("nano_msg_2", 2)):
        for pair, (started, messages) in plain_conversations(run).items():
            start = dt.datetime.fromisoformat(started).replace(tzinfo=dt.UTC).timestamp()
            want = min(m["timestamp"] for m in messages) - start
            got = delays.loc[("nano", repeat, pair), "delay_seconds"]
            assert got == pytest.approx(want, abs=1e-3)
            checked += 1
    assert checked == 40
    assert delays.loc["control", "delay_seconds"].isna().all()


def test_pass_rate_by_early_plan(views, real_tables) -> None:
    table = views["pass_rate_by_early_plan"].set_index(["experiment", "setting", "plan"])
    assert table.loc[("control", "coop-comm", "no messages"), "pair_runs"] == 20
    delays = views["first_message_delay"]
    nano = delays[delays["experiment"] == "nano"]
    early = nano[nano["delay_seconds"] <= EARLY_PLAN_SECONDS]
    evals = real_tables["eval_results"].set_index(["experiment", "setting", "repeat", "pair"])
    outcomes = [
        evals.loc[("nano", "coop-comm", r.repeat, r.pair), "outcome"] for r in early.itertuples()
    ]
    row = table.loc[("nano", "coop-comm", "early")]
    assert row["pair_runs"] == len(early) > 0
    assert row["passed"] == outcomes.count("pass")
    assert table.loc[("nano", "coop-comm", "later"), "pair_runs"] == 40 - len(early)
    assert not any(s == "solo" for _, s, _ in table.index)
