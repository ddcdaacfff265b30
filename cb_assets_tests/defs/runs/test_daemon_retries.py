"""The UI path under faults: a real daemon runs a backfill of flaky partitions whose
retries wait longer than the reaper's interval; the reaper fails no live run, and still
fails a run whose worker was SIGKILLed."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg

from cb_assets.agents.faults import fault_for, parse_rates
from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.runs.partitions import partitions_needing_runs
from cb_assets.shared.experiments import load_registry
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.daemon import (
    busy_runs,
    daemon_env,
    kill_run_workers,
    start_daemon,
    stop_daemon,
    wait_for,
)
from cb_assets_tests.support.faults import RATES, run_key, seed_with_every_fault
from cb_assets_tests.support.platform import key as partition_of

REAPED = "died without reporting"


def reaped_runs(instance: dg.DagsterInstance) -> list[str]:
    found = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        if any(REAPED in r.event_log_entry.message for r in records):
            found.append(run.run_id)
    return found


def test_backfill_with_slow_retries_reaps_only_the_killed_run(
    tmp_path, lite_dataset, redis_url, fork_socket
):
    env, home, _ = daemon_env(
        tmp_path,
        lite_dataset,
        redis_url,
        fork_socket,
        n_pairs=10,
        CB_EXPERIMENT="flaky",
        CB_FLAKY_RATES=RATES,
        CB_RETRY_DELAY_SECONDS="4",  # first retry after ~4 s, the second after ~8 s
        CB_REAPER_INTERVAL_SECONDS="1",  # the reaper looks many times during every wait
        CB_SENSOR_INTERVAL_SECONDS="5",
    )
    # registers the pairs
    listed = run_cli(["backfill", "--missing", "--dry-run"], env, timeout=600)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    instance = dg.DagsterInstance.from_config(str(home))
    pairs = instance.get_dynamic_partitions("pairs")
    settings = load_registry(PROJECT_ROOT / "experiments.yaml").get("flaky").settings
    keys = [(p, s) for p in pairs for s in settings]
    assert len(keys) == 30
    rates = parse_rates(RATES)
    seed = seed_with_every_fault(keys, rates)
    env["CB_FLAKY_SEED"] = seed
    schedule = {partition_of(p, s, "flaky"): fault_for(seed, run_key(p, s), rates) for p, s in keys}

    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        # what the UI's backfill dialog does
        submitted = run_cli(["backfill", "--missing"], env, timeout=600)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "launched backfill" in submitted.stdout

        def all_ended():
            ended = set(instance.get_materialized_partitions(dg.AssetKey("run_results")))
            ended |= set(partitions_needing_runs(instance, schedule, failed=True, missing=False))
            busy = instance.get_runs(
                dg.RunsFilter(
                    statuses=[
                        dg.DagsterRunStatus.QUEUED,
                        dg.DagsterRunStatus.STARTING,
                        dg.DagsterRunStatus.STARTED,
                    ]
                )
            )
            return ended >= set(schedule) and not busy

        wait_for(all_ended, 600, "every partition of the backfill to end")
        failed = partitions_needing_runs(instance, schedule, failed=True, missing=True)
        assert set(failed) == {k for k, f in schedule.items() if f == "permanent"}
        assert all(why == "failed" for why in failed.values())
        retried = instance.get_records_for_run
        assert any(  # retries happened, each waiting longer than the reaper's interval
            retried(r.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
            for r in instance.get_runs()
        )
        assert reaped_runs(instance) == [], "the reaper failed a live run"
    finally:
        stop_daemon(daemon)

    # a run whose worker is SIGKILLed mid-run is marked failed by the reaper
    env["CB_OFFLINE_AGENT_DELAY"] = "120"
    env["CB_FLAKY_RATES"] = ""
    daemon = start_daemon(env, tmp_path / "daemon2.log")
    try:
        victim = next(k for k, f in schedule.items() if f == "permanent")
        again = subprocess.Popen(
            [sys.executable, "-m", "cb_assets.cli", "backfill", "--failed", "--here"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def started_worker():
            for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                if run.job_name == "run_pairs" and "cb_assets/pid" in run.tags:
                    return run
            return None

        run = wait_for(started_worker, 180, f"a run of the failed partitions ({victim}…)")
        time.sleep(2)  # inside the agent's 120 s
        os.kill(int(run.tags["cb_assets/pid"]), signal.SIGKILL)

        def reaped():
            latest = instance.get_run_by_id(run.run_id)
            return latest.status == dg.DagsterRunStatus.FAILURE and run.run_id in reaped_runs(
                instance
            )

        wait_for(reaped, 120, "the reaper to mark the killed run failed")
        again.send_signal(signal.SIGINT)  # Ctrl-C: its other runs are cancelled
        assert again.wait(timeout=120) != 0
        wait_for(lambda: not busy_runs(instance), 120, "the command's runs to be cancelled")
    finally:
        if again.poll() is None:
            again.kill()
        stop_daemon(daemon)
        kill_run_workers(instance)
