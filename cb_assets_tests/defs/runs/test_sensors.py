"""new_results: result files written outside Dagster become exactly their partitions."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.runs.sensors import new_results
from cb_assets.runner.command import RunSpec, run_argv, run_env
from cb_assets.runner.forkserver import run_via_forkserver
from cb_assets.runner.launch import child_env
from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.logs_layout import ATTEMPT_MARKER
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.daemon import daemon_env, start_daemon, stop_daemon, wait_for
from cb_assets_tests.support.platform import key as partition_of
from cb_assets_tests.support.synthetic import agent_block, write_result
from cb_assets_tests.support.timeouts import within


def run_outside_dagster(
    logs_dir: Path, dataset: Path, redis_url: str, fork_socket: Path, pair: str, settings: list[str]
) -> None:
    """What a researcher's own `cooperbench run` would leave behind, through the real runner."""
    spec = RunSpec(
        agent="oracle",
        model="oracle",
        dataset_dir=dataset,
        logs_dir=logs_dir,
        redis_url=redis_url,
    )
    env = child_env(os.environ, {"CB_DATASET_DIR": str(dataset), **run_env(spec)})
    for setting in settings:
        out = run_via_forkserver(
            fork_socket,
            run_argv(spec, parse_pair_key(pair), Arm("oracle", setting)),
            env,
            logs_dir / "_attempts" / f"external-{setting}.log",  # where the fork server allows
            120,
        )
        assert out.exit_code == 0, out.log_tail()


def test_sensor_requests_exactly_the_new_partitions(make_platform, redis_url, fork_socket):
    platform = make_platform(n_pairs=3)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    run_outside_dagster(
        platform.logs_dir,
        platform.dataset_dir,
        redis_url,
        fork_socket,
        pairs[1],
        ["solo", "coop-nocomm"],
    )
    time.sleep(2.1)  # past the settle time
    d = platform.defs()
    with dg.build_sensor_context(instance=platform.instance, resources=d.resources) as context:
        result = new_results(context)
        keys = sorted(r.partition_key for r in result.run_requests)
        assert keys == [f"oracle/coop-nocomm|{pairs[1]}", f"oracle/solo|{pairs[1]}"]
        cursor = context.cursor
    with dg.build_sensor_context(
        instance=platform.instance, resources=d.resources, cursor=cursor
    ) as context:
        assert isinstance(new_results(context), dg.SkipReason)
    # the requested partitions ingest what is on disk instead of rerunning it
    for key in keys:
        ran = platform.materialize(["run_results"], key, raise_on_error=True)
        meta = [
            m.metadata
            for m in ran.asset_materializations_for_node("run_results")
            if m.asset_key == dg.AssetKey("run_results")
        ][0]
        assert meta["ran"].value is False


def test_daemon_ingests_external_results_and_refreshes_reports(
    tmp_path, lite_dataset, redis_url, fork_socket
):
    env, home, dataset = daemon_env(
        tmp_path,
        lite_dataset,
        redis_url,
        fork_socket,
        n_pairs=2,
        CB_SENSOR_INTERVAL_SECONDS="5",
        CB_REPORT_REFRESH_SECONDS="10",
    )
    seed = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import dagster as dg; from cb_assets.definitions import defs; d = defs(); "
                "dg.materialize(list(d.assets), selection=['benchmark_pairs'], "
                "instance=dg.DagsterInstance.get(), resources=d.resources)"
            ),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seed.returncode == 0, seed.stderr[-2000:]
    instance = dg.DagsterInstance.from_config(str(home))
    pair = sorted(instance.get_dynamic_partitions("pairs"))[0]

    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        started = time.monotonic()
        run_outside_dagster(
            tmp_path / "data" / "logs",
            dataset,
            redis_url,
            fork_socket,
            pair,
            ["solo", "coop-comm", "coop-nocomm"],
        )
        expected = {partition_of(pair, s) for s in ("solo", "coop-comm", "coop-nocomm")}

        def sensor_runs_done():
            runs = instance.get_runs(
                filters=dg.RunsFilter(tags={"cb_assets/launched_by": "new_results"})
            )
            done = [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]
            return runs if len(done) == len(runs) == 3 else None

        runs = wait_for(sensor_runs_done, 240, "the sensor's three runs")
        assert {r.tags["dagster/partition"] for r in runs} == expected
        assert instance.get_materialized_partitions(dg.AssetKey("run_results")) == expected

        def report_after_runs():
            event = instance.get_latest_materialization_event(dg.AssetKey("verification_report"))
            last_run_end = max(instance.get_run_stats(r.run_id).end_time for r in runs)
            return event if event and event.timestamp > last_run_end else None

        wait_for(report_after_runs, 240, "the report to refresh")
        reports = tmp_path / "data" / "experiments" / "oracle"
        manifest = json.loads((reports / "results-manifest.json").read_text())
        assert {s: b["pairs"] for s, b in manifest["settings"].items()} == {
            "solo": 1,
            "coop-comm": 1,
            "coop-nocomm": 1,
        }
        report = (reports / "verification-report.md").read_text()
        assert "1/2 pair-runs with a final result on disk" in report  # says what is missing
        print(f"external results to refreshed report: {time.monotonic() - started:.0f}s")
    finally:
        stop_daemon(daemon)


def test_daemon_backfill_runs_ranges_of_partitions(tmp_path, lite_dataset, redis_url, fork_socket):
    """`cb-assets backfill` submits a Dagster backfill; the real daemon cuts it into runs of
    several partitions (the asset's backfill policy), and every partition materializes."""
    env, home, _ = daemon_env(tmp_path, lite_dataset, redis_url, fork_socket, n_pairs=4)
    submitted = run_cli(["backfill", "--missing", "--setting", "solo"], env, timeout=300)
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    assert "launched backfill" in submitted.stdout
    instance = dg.DagsterInstance.from_config(str(home))
    expected = {partition_of(p, "solo") for p in instance.get_dynamic_partitions("pairs")}
    assert len(expected) == 4
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:

        def all_materialized():
            done = instance.get_materialized_partitions(dg.AssetKey("run_results"))
            return done if done >= expected else None

        wait_for(all_materialized, 300, "the backfill's partitions")
        runs = [
            r
            for r in instance.get_runs()
            if "dagster/backfill" in r.tags and r.asset_selection == {dg.AssetKey("run_results")}
        ]
        # fewer runs than partitions: the daemon sent ranges, not one run per partition
        assert runs and len(runs) < len(expected), [r.tags for r in runs]
        assert any("dagster/asset_partition_range_start" in r.tags for r in runs)
    finally:
        stop_daemon(daemon)


def _failed_once_without_retry(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.event_specific_data.error.message


def test_hostile_result_files_fail_once_and_never_stall_the_sensor(make_platform):
    """A FIFO named result.json, values DuckDB cannot hold and a non-canonical folder, through
    the real sensor and run_results: the tick returns at once and requests only the readable
    file; each bad file fails its partition once (no retry), naming the file and key."""
    platform = make_platform(n_pairs=2)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [
        parse_pair_key(r[0]) for r in platform.query("select pair from benchmark_pairs order by 1")
    ]
    logs = platform.logs_dir
    fifo = write_result(logs, "oracle-solo", pairs[0], "solo") / "result.json"
    fifo.unlink()
    os.mkfifo(fifo)
    bad = write_result(logs, "oracle-solo", pairs[1], "solo", agents=[agent_block(steps=10**30)])
    # a copy of a readable file under " <task id>": int() would read it as the real partition
    odd = bad.parent.with_name(f" {pairs[1].task_id}") / bad.name
    odd.parent.mkdir()
    shutil.copytree(bad, odd)
    time.sleep(2.1)  # past the settle time
    d = platform.defs()
    with dg.build_sensor_context(instance=platform.instance, resources=d.resources) as context:
        result = within(30, lambda: new_results(context), fifos=(fifo,))
    assert [r.partition_key for r in result.run_requests] == [partition_of(pairs[1].key, "solo")]

    data = json.loads((bad / "result.json").read_text())
    cases = {
        "'agent.steps': 1000000000000000000000000000000 is over the int64 maximum": {
            "steps": 10**30
        },
        "'agent.error': not valid UTF-8 text": {"status": "Error", "error": "boom \ud800"},
        "'agent.cost': -1000 is negative": {"cost": -1000},
    }
    for expected, change in cases.items():
        (bad / "result.json").write_text(
            json.dumps({**data, "agent": {**data["agent"], "steps": 3, **change}})
        )
        message = _failed_once_without_retry(
            platform.materialize(["run_results"], partition_of(pairs[1].key, "solo"))
        )
        assert str(bad / "result.json") in message and expected in message
    message = _failed_once_without_retry(
        within(
            120, lambda: platform.materialize(["run_results"], partition_of(pairs[0].key, "solo"))
        )
    )
    assert f"{fifo}: is a FIFO, not a regular file" in message
    tables = "select 1 from information_schema.tables where table_name = 'run_results'"
    assert not platform.query(tables) or platform.query("select count(*) from run_results") == [
        (0,)
    ]


def test_sensor_leaves_alone_the_arms_the_registry_does_not_have(make_platform):
    """A folder of a repeat or a setting the experiment lacks (oracle runs once, never team)
    is said in the tick's note, neither registered as a grid row nor run (it would fail)."""
    platform = make_platform(n_pairs=2)
    assert platform.materialize(["benchmark_pairs"]).success
    pair = parse_pair_key(platform.query("select pair from benchmark_pairs order by pair")[0][0])
    write_result(platform.logs_dir, "oracle-solo-r2", pair, "solo")
    write_result(platform.logs_dir, "oracle-solo", pair, "solo")
    time.sleep(2.1)  # past the settle time
    d = platform.defs()
    with dg.build_sensor_context(instance=platform.instance, resources=d.resources) as context:
        result = new_results(context)
    assert [r.partition_key for r in result.run_requests] == [f"oracle/solo|{pair.key}"]
    arms = platform.instance.get_dynamic_partitions("arms")
    assert "oracle/solo" in arms and "oracle/solo/r2" not in arms


def test_results_the_platform_already_recorded_are_not_requested_again(make_platform):
    """A daemon started after an import finds the imported result files newer than its
    (empty) cursor: they are in DuckDB already and must not queue an ingest run each; a file
    changed after its materialization still is requested."""
    platform = make_platform(n_pairs=2)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    keys = [f"oracle/solo|{p}" for p in pairs]
    for key in keys:
        platform.materialize(["run_results"], key, raise_on_error=True)
    # as `cb-assets import` leaves them: ingested, with no marker of a platform attempt
    for marker in platform.logs_dir.rglob(ATTEMPT_MARKER):
        marker.unlink()
    time.sleep(2.1)  # past the settle time
    d = platform.defs()
    with dg.build_sensor_context(instance=platform.instance, resources=d.resources) as context:
        skipped = new_results(context)
        assert isinstance(skipped, dg.SkipReason)
        assert "2 already recorded" in skipped.skip_message
    result = next(platform.logs_dir.glob(f"oracle-solo/solo/*/*/{pairs[0][-5:]}/result.json"))
    result.write_text(result.read_text())  # delivered again, after its materialization
    time.sleep(2.1)
    with dg.build_sensor_context(instance=platform.instance, resources=d.resources) as context:
        requested = new_results(context)
        assert [r.partition_key for r in requested.run_requests] == [keys[0]]
