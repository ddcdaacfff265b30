"""Killed runs, hostile inputs and secrets: nothing recorded is lost or leaked."""

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time

import dagster as dg
import duckdb
import pytest

from cb_assets.defs.runs.partitions import partitions_needing_runs
from cb_assets.run_launcher.liveness import PID_TAG, fail_dead_runs
from cb_assets_tests.support.platform import key, pair_dir, run_results_meta
from cb_assets_tests.support.services import require


@pytest.fixture
def platform(make_platform):
    platform = make_platform(n_pairs=2)
    assert platform.materialize(["benchmark_pairs"]).success
    return platform


def pairs_of(platform) -> list[str]:
    return [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]


MATERIALIZE_ONE = """
import sys, dagster as dg
from cb_assets.definitions import defs
d = defs()
dg.materialize(list(d.assets), selection=["run_results"], partition_key=sys.argv[1],
               instance=dg.DagsterInstance.get(), resources=d.resources,
               run_config={"ops": {"run_results": {"config": {"force": True}}}})
"""


def test_sigkilled_run_reads_failed_keeps_its_rows_and_reruns(platform, tmp_path) -> None:
    pair = pairs_of(platform)[0]
    k = key(pair, "solo")
    platform.materialize(["run_results"], k, raise_on_error=True)
    before = platform.query("select * from run_results")

    env = {
        **os.environ,
        "DAGSTER_HOME": str(platform.root / "dagster"),
        "CB_OFFLINE_AGENT_DELAY": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", MATERIALIZE_ONE, k],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline and run is None:
        for r in platform.instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        ):
            if r.tags.get(PID_TAG) == str(proc.pid):
                run = r
        time.sleep(0.2)
    assert run is not None, "the run never started"
    time.sleep(2)  # well inside the agent's 60 s
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert fail_dead_runs(platform.instance) == [run.run_id]
    assert platform.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert partitions_needing_runs(platform.instance, [k], failed=True, missing=False) == {
        k: "failed"
    }
    assert platform.query("select * from run_results") == before  # old rows, no partial ones
    time.sleep(1)
    assert not (pair_dir(platform, pair, "solo") / "result.json").exists(), (
        "the killed run's cooperbench child kept running"
    )

    rerun = platform.materialize(["run_results"], k, raise_on_error=True)
    assert run_results_meta(rerun)["ran"] is True
    assert platform.query("select count(*) from run_results") == [(1,)]
    assert partitions_needing_runs(platform.instance, [k], failed=True, missing=True) == {}
    # the killed attempt is recorded too, from the partition's claim journal
    assert platform.query(
        "select attempt, classification, rule from run_attempts order by attempt"
    ) == [
        (1, "submitted", "agent-status-submitted"),
        (2, "infra_error", "attempt-interrupted"),
        (3, "submitted", "agent-status-submitted"),
    ]
    assert platform.query("select dagster_run_id from run_attempts where attempt > 1") == [
        (run.run_id,),
        (rerun.run_id,),
    ]


MATERIALIZE_RANGE = """
import sys, dagster as dg
from cb_assets.cli.launch import range_tags
from cb_assets.definitions import defs
d = defs()
result = dg.materialize(list(d.assets), selection=["run_results"],
                        instance=dg.DagsterInstance.get(), resources=d.resources,
                        tags=range_tags(sys.argv[1], sys.argv[2]), raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def test_two_commands_at_once_run_each_pair_once(make_platform) -> None:
    """Two materializations of the same partitions at once: each pair-run happens once, the
    other process waits for its claim and ingests the result; attempt numbers stay unique."""
    platform = make_platform(n_pairs=3)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = platform.instance.get_dynamic_partitions("pairs")
    first, last = key(pairs[0], "coop-comm"), key(pairs[-1], "coop-comm")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(platform.root / "dagster"),
        "CB_OFFLINE_AGENT_DELAY": "2",
    }
    procs = [
        subprocess.Popen([sys.executable, "-c", MATERIALIZE_RANGE, first, last], env=env)
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    attempts = platform.query(
        "select partition, attempt, count(*) from run_attempts group by all order by all"
    )
    assert [(partition, attempt) for partition, attempt, _ in attempts] == [
        (key(p, "coop-comm"), 1) for p in sorted(pairs)
    ]
    assert all(n == 1 for *_, n in attempts)
    assert platform.query(
        "select count(distinct pair), count(*) from run_results where setting = 'coop-comm'"
    ) == [(3, 6)]
    # no attempt folder was moved aside: nobody overwrote another's files
    archived = platform.logs_dir / "_attempts" / "oracle-coop-comm"
    assert not archived.exists() or not any(archived.rglob("result.json"))


def test_a_full_disk_records_nothing_half_and_loses_nothing(
    make_platform, tmp_path, monkeypatch
) -> None:
    """DuckDB on a tmpfs that fills up: the partition fails naming the disk error, neither its
    attempt row nor its rows are written, and once there is room the next run records the
    attempt and ingests its result without running the agent again."""
    require(os.geteuid() == 0, "mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        monkeypatch.setenv("CB_DUCKDB_PATH", str(mount / "cooperbench.duckdb"))
        platform = make_platform(n_pairs=1)
        assert platform.materialize(["benchmark_pairs"]).success
        [pair] = platform.instance.get_dynamic_partitions("pairs")
        k = key(pair, "solo")
        filler = mount / "filler"
        with open(filler, "wb") as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        result = platform.materialize(["run_results"], k)
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.event_specific_data.error.message
        assert "No space left on device" in message and str(mount) in message, message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
        filler.unlink()
        db = mount / "cooperbench.duckdb"
        with duckdb.connect(str(db), read_only=True) as conn:
            tables = {t for (t,) in conn.execute("show tables").fetchall()}
            assert "run_results" not in tables and "run_attempts" not in tables

        again = platform.materialize(["run_results"], k, raise_on_error=True)
        assert run_results_meta(again)["ran"] is False  # ingested, not run a second time
        with duckdb.connect(str(db), read_only=True) as conn:
            assert conn.execute(
                "select attempt, classification, dagster_run_id from run_attempts"
            ).fetchall() == [(1, "submitted", result.run_id)]
            assert conn.execute("select count(*) from run_results").fetchone() == (1,)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize(
    "damage", ["truncated", "wrong_types", "no_agent_block", "not_utf8", "huge", "symlink_outside"]
)
def test_malformed_result_names_the_path_and_touches_nothing_else(
    platform, tmp_path, damage
) -> None:
    pairs = pairs_of(platform)
    for pair in pairs:
        platform.materialize(["run_results"], key(pair, "solo"), raise_on_error=True)
    before = platform.query("select * from run_results order by pair")
    path = pair_dir(platform, pairs[0], "solo") / "result.json"
    data = json.loads(path.read_text())
    if damage == "truncated":
        path.write_text(path.read_text()[:57])
    elif damage == "wrong_types":
        data["agent"]["steps"] = "many"
        path.write_text(json.dumps(data))
    elif damage == "no_agent_block":
        del data["agent"]
        path.write_text(json.dumps(data))
    elif damage == "not_utf8":
        path.write_bytes(path.read_bytes().replace(b'"Submitted"', b'"Sub\xffmitted"'))
    elif damage == "huge":
        data["padding"] = "x" * 50_000_000
        path.write_text(json.dumps(data))
    elif damage == "symlink_outside":
        outside = tmp_path / "elsewhere.json"
        outside.write_text(json.dumps(data))
        path.unlink()
        path.symlink_to(outside)
    snapshot = path.read_bytes() if not path.is_symlink() else None

    result = platform.materialize(["run_results"], key(pairs[0], "solo"))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert str(path) in failure.event_specific_data.error.message
    assert platform.query("select * from run_results order by pair") == before
    if snapshot is not None:
        assert path.read_bytes() == snapshot  # the evidence is left as found
    assert (
        platform.query(
            "select count(*) from run_attempts where pair = ?".replace("?", f"'{pairs[0]}'")
        )[0][0]
        == 1
    )  # bad input is not retried or rerun
    assert platform.materialize(["run_results"], key(pairs[1], "solo")).success


def test_unknown_pair_key_is_a_clear_error(platform) -> None:
    platform.instance.add_dynamic_partitions("pairs", ["not-a-pair"])
    result = platform.materialize(["run_results"], key("not-a-pair", "solo"))
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "invalid pair key 'not-a-pair'" in failure.event_specific_data.error.message


def test_canary_api_key_is_recorded_nowhere(platform, monkeypatch) -> None:
    canary = "sk-canary-7f3a9c1e5b2d4680"
    monkeypatch.setenv("COHERE_API_KEY", canary)
    monkeypatch.setenv("CB_FLAKY_RATES", "transient=0.5,agent=0.5")
    for pair in pairs_of(platform):
        for setting in ("solo", "coop-comm", "coop-nocomm"):
            platform.materialize(["run_results"], key(pair, setting, "flaky"))
    assert platform.materialize(["cost_manifest", "verification_report"]).success
    assert platform.query("select count(*) from run_attempts")[0][0] >= 6
    leaks = [
        str(p)
        for p in platform.root.rglob("*")
        if p.is_file() and not p.is_symlink() and canary.encode() in p.read_bytes()
    ]
    assert leaks == []
    for run in platform.instance.get_runs():
        assert canary not in json.dumps(run.run_config) + json.dumps(dict(run.tags))
        for record in platform.instance.all_logs(run.run_id):
            assert canary not in str(record)


def test_a_refused_api_key_stops_the_batch_is_scrubbed_and_reruns_once_fixed(
    platform, monkeypatch
) -> None:
    """A 401 quoting the key: the first partition is a config_error (not an agent_error, not
    retried), the rest of the batch is not run, the key is stored nowhere, and once the
    key is fixed the same partition runs again instead of ingesting the refused result."""
    canary = "sk-canary-41c0ffee99887766"
    monkeypatch.setenv("COHERE_API_KEY", canary)
    monkeypatch.setenv("CB_FLAKY_RATES", "auth=1")
    pairs = pairs_of(platform)
    first, last = key(pairs[0], "solo", "flaky"), key(pairs[-1], "solo", "flaky")
    result = platform.materialize(["run_results"], partition_range=(first, last))
    assert not result.success
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    [failure] = [e for e in result.all_events if e.is_step_failure]
    reasons = failure.event_specific_data.user_failure_data.metadata["failed_partitions"].value
    assert reasons[first].startswith("config_error: llm-auth")
    assert reasons[last].endswith(f"(not run: stopped after {first})")
    assert platform.query("select partition, classification, rule, final from run_attempts") == [
        (first, "config_error", "llm-auth", True)
    ]
    assert canary not in str(platform.query("select * from run_attempts"))
    [(detail,)] = platform.query("select detail from run_attempts")
    assert "Incorrect API key provided: ***" in detail

    monkeypatch.setenv("CB_FLAKY_RATES", "")
    again = platform.materialize(["run_results"], first, raise_on_error=True)
    assert run_results_meta(again)["ran"] is True
    assert platform.query("select classification from run_results") == [("submitted",)]


def test_a_fifo_result_elsewhere_in_the_run_is_moved_aside_not_hung_on(platform) -> None:
    """Upstream totals a run by reading every result.json in it: a FIFO among them would
    hang every pair-run of that run name. It is moved to `_quarantine` before the launch."""
    pairs = pairs_of(platform)
    hostile = pair_dir(platform, pairs[1], "solo") / "result.json"
    hostile.parent.mkdir(parents=True)
    os.mkfifo(hostile)
    result = platform.materialize(["run_results"], key(pairs[0], "solo"), raise_on_error=True)
    assert run_results_meta(result)["outcome"] == "submitted"
    assert not os.path.lexists(hostile)
    [moved] = [p for p in (platform.logs_dir / "_quarantine").rglob("result.json*")]
    assert stat.S_ISFIFO(moved.lstat().st_mode)


def test_an_attempt_that_died_mid_write_is_recorded_and_its_torn_file_rerun(platform) -> None:
    """What a worker killed while upstream wrote result.json leaves: the claim journal naming
    its attempt, and a truncated file. The next run records that attempt (no result, so
    attempt-interrupted) and runs the pair again instead of failing on the torn file."""
    from cb_assets.defs.runs import claims

    pair = pairs_of(platform)[0]
    k = key(pair, "solo")
    torn = pair_dir(platform, pair, "solo") / "result.json"
    torn.parent.mkdir(parents=True)
    torn.write_text('{"repo": "x", "agent": {"status": "Subm')
    with claims.claim(platform.logs_dir, k, wait_seconds=1) as held:
        held.start(1, pid=999999, dagster_run_id="gone", log_dir=str(torn.parent))
    result = platform.materialize(["run_results"], k, raise_on_error=True)
    assert run_results_meta(result)["ran"] is True
    assert platform.query(
        "select attempt, classification, rule, dagster_run_id from run_attempts order by attempt"
    ) == [
        (1, "infra_error", "attempt-interrupted", "gone"),
        (2, "submitted", "agent-status-submitted", result.run_id),
    ]
    [kept] = (platform.logs_dir / "_attempts").rglob("1/result.json")
    assert kept.read_text().endswith('"Subm')  # the torn file is kept as evidence


def test_a_fresh_process_launch_keeps_the_claim_after_its_worker_is_killed(
    make_platform, monkeypatch
) -> None:
    """With CB_LAUNCHER=subprocess the cooperbench process has its own session and outlives a
    SIGKILLed worker; it inherits the partition's claim, so nobody starts the pair again while
    it runs, and its result is then recorded as that attempt's and ingested."""
    from cb_assets.defs.runs import claims

    platform = make_platform(n_pairs=1, launcher="subprocess")
    assert platform.materialize(["benchmark_pairs"]).success
    [pair] = platform.instance.get_dynamic_partitions("pairs")
    k = key(pair, "solo")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(platform.root / "dagster"),
        "CB_OFFLINE_AGENT_DELAY": "8",
    }
    proc = subprocess.Popen([sys.executable, "-c", MATERIALIZE_ONE, k], env=env)
    logs = platform.logs_dir / "_attempts" / "process-logs"
    deadline = time.monotonic() + 120
    while not list(logs.rglob("*.1.log")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(logs.rglob("*.1.log")), "the pair-run never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(claims.PartitionBusyError):
        with claims.claim(platform.logs_dir, k, wait_seconds=1):
            pass  # the orphaned cooperbench process still holds it

    again = platform.materialize(["run_results"], k, raise_on_error=True)  # waits for it
    assert run_results_meta(again)["ran"] is False  # its result, ingested
    assert platform.query("select attempt, classification, final from run_attempts") == [
        (1, "submitted", True)
    ]
