"""Submit the runs of one asset's partitions and follow them until every one has ended."""

import sys
import time
from collections.abc import Mapping

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from cb_assets import config
from cb_assets.cli.code_location import CodeLocationClient
from cb_assets.cli.follow import RunFollower
from cb_assets.defs.runs.batches import BatchQueue, segments
from cb_assets.defs.runs.expected import expected_seconds, recorded_durations
from cb_assets.shared.failures import config_error_cause
from cb_assets.shared.partition_keys import SEPARATOR

JOB_FOR_ASSET = {
    "run_results": "run_pairs",
    "eval_results": "evaluate_pairs",
    "task_images": "probe_task_images",
}
LAUNCHED_BY = {"cb_assets/launched_by": "cb-assets"}
POLL_SECONDS = 0.25


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make one Dagster run target the partitions `first` … `last`."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def partition_tags(key: str) -> dict[str, str]:
    return {"dagster/partition": key}


def expected_durations(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, float]:
    """Each run_results key's expected seconds from what DuckDB has recorded (see
    cb_assets.defs.runs.expected), with a line saying where the figures came from."""
    pairs = instance.get_dynamic_partitions("pairs")
    expectation = expected_seconds(recorded_durations(config.duckdb_path()), keys, pairs)
    if expectation.seconds:
        print(
            f"cb-assets: longest expected first; expected durations: "
            f"{expectation.summary(len(keys))}"
        )
    return expectation.seconds


def materialize_partitions(
    location: CodeLocationClient,
    instance: dg.DagsterInstance,
    keys: list[str],
    concurrency: int,
    asset: str = "run_results",
    tags: Mapping[str, str] | None = None,
    expected: Mapping[str, float] | None = None,
) -> list[str]:
    """Materialize `keys` of `asset` in runs of the code location, `concurrency` of them in
    flight; print a line per partition; return the failed keys.

    run_results partitions go several to a run (a range of pairs of one arm, sized by
    cb_assets.defs.runs.batches, by `expected` seconds per key when given, longest first);
    the other assets' partitions one per run. A config error stops further launches: every
    further pair-run would fail the same way."""
    if asset == "run_results":
        pairs = instance.get_dynamic_partitions("pairs")
        arms = list(dict.fromkeys(key.partition(SEPARATOR)[0] for key in keys))
        queue = BatchQueue(segments(keys, pairs, arms), concurrency, expected=expected)
    else:
        queue = BatchQueue([[k] for k in keys], concurrency, cap=1)
    follower = RunFollower(instance, asset, keys)
    stop: str | None = None
    try:
        while True:
            while stop is None and follower.active < concurrency and (batch := queue.next()):
                which = (
                    range_tags(batch[0], batch[-1]) if len(batch) > 1 else partition_tags(batch[0])
                )
                run_tags = {**LAUNCHED_BY, **(tags or {}), **which}
                follower.add(location.submit(JOB_FOR_ASSET[asset], run_tags), batch)
            if not follower.running:
                break
            time.sleep(POLL_SECONDS)
            for reason in follower.poll():
                stop = stop or config_error_cause(reason)
    except KeyboardInterrupt:
        cancel_runs(instance, follower.run_ids())
        raise
    if stop is not None:
        print(
            f"error: {stop} — stopped launching after it ({queue.remaining()} partitions not "
            "run); fix the configuration, then `cb-assets backfill --failed --missing --here`",
            file=sys.stderr,
        )
    return list(follower.failed)


def run_job(
    location: CodeLocationClient,
    instance: dg.DagsterInstance,
    job: str,
    tags: Mapping[str, str] | None = None,
) -> dg.DagsterRun:
    """Run an unpartitioned job of the code location to its end."""
    run_id = location.submit(job, {**LAUNCHED_BY, **(tags or {})})
    try:
        while True:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        cancel_runs(instance, [run_id])
        raise


def cancel_runs(instance: dg.DagsterInstance, run_ids: list[str]) -> None:
    """Ctrl-C: this command's queued runs are dropped, its running ones terminated."""
    for run in instance.get_runs(dg.RunsFilter(run_ids=run_ids)):
        if run.status == dg.DagsterRunStatus.QUEUED:
            instance.run_coordinator.cancel_run(run.run_id)
        elif not run.is_finished:
            instance.run_launcher.terminate(run.run_id)
    print(f"cb-assets: interrupted; cancelled {len(run_ids)} runs", file=sys.stderr)
