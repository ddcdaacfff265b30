import time
from pathlib import Path

import dagster as dg

from cb_assets import config
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.runs.partitions import arm_partitions, pair_partitions, register, run_partition
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.defs.runs.result_scan import Cursor, Found, scan, skipped_note
from cb_assets.run_launcher.liveness import fail_dead_runs
from cb_assets.shared.experiments import RegistryError

MAX_REQUESTS_PER_TICK = 100
SETTLE_SECONDS = 2.0  # a result.json younger than this may still be being written


def recorded_since(instance: dg.DagsterInstance, found: list[Found]) -> list[Found]:
    """The files among `found` whose partition was materialized after the file last changed."""
    keys = [str(run_partition(f.arm, f.pair_key)) for f in found]
    if not keys:
        return []
    latest: dict[str, float] = {}
    cursor = None
    while len(latest) < len(set(keys)):  # newest first: a partition's first record is its latest
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=run_results.key, asset_partitions=keys),
            limit=500,
            cursor=cursor,
            ascending=False,
        )
        for record in page.records:
            latest.setdefault(record.partition_key, record.timestamp)
        if not page.has_more:
            break
        cursor = page.cursor
    return [
        f
        for f, key in zip(found, keys, strict=True)
        if key in latest and latest[key] * 1e9 > f.changed_ns
    ]


@dg.sensor(
    target=[run_results],
    minimum_interval_seconds=config.sensor_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_results(
    context: dg.SensorEvaluationContext, runner: CooperBenchRunner, experiments: ExperimentRegistry
):
    """Turns result.json files that appear under the logs root from outside Dagster (a
    `cooperbench run` elsewhere, copied in, `cb-assets import`), for every experiment of
    the registry, into materializations of exactly their
    partitions, which ingest them without rerunning. Incremental: a cursor over the files'
    change times (content state, so copies that keep an old mtime count); at most 100
    requests per tick, the rest at the next. Entries that are not regular files and folders
    whose names are not canonical are reported in the tick's note and never requested."""
    cursor = Cursor.loads(context.cursor)
    registry = experiments.load()
    scanned = scan(
        Path(runner.logs_dir),
        set(registry.names),
        cursor,
        limit=MAX_REQUESTS_PER_TICK,
        settle_seconds=SETTLE_SECONDS,
        now=time.time(),
    )
    known = set(context.instance.get_dynamic_partitions(pair_partitions.name))
    wanted, refused = [], {}
    for found in scanned.found:
        if found.pair_key not in known:
            continue
        try:  # a folder of a repeat or setting the experiment does not have: said, not run
            registry.experiment_of(found.arm)
        except RegistryError as exc:
            refused.setdefault(found.arm.key, str(exc))
            continue
        wanted.append(found)
    # a file the platform materialized after it last changed is in DuckDB already: its own
    # pair-runs' results and imported ones. Requesting them again would put an ingest run per
    # file into the queue in front of the experiment's own runs.
    recorded = recorded_since(context.instance, wanted)
    wanted = [f for f in wanted if f not in recorded]
    # an arm of a registered experiment (an imported repeat, say) gets its partition row
    register(context.instance, arm_partitions.name, [f.arm.key for f in wanted])
    requests = [
        dg.RunRequest(
            # the file's content state: a file delivered again is requested again
            run_key=f"{f.arm.key}|{f.pair_key}@{f.state}",
            partition_key=run_partition(f.arm, f.pair_key),
            tags={"cb_assets/launched_by": "new_results", "cb_assets/result_file": str(f.path)},
        )
        for f in wanted
    ]
    unknown = sum(f.pair_key not in known for f in scanned.found)
    note = (
        f"{len(requests)} new result files"
        + (f", {len(recorded)} already recorded" if recorded else "")
        + (f", {unknown} of pairs outside the subset" if unknown else "")
        + "".join(f"; {arm} left alone: {why}" for arm, why in refused.items())
        + (f", {scanned.deferred} left for the next tick" if scanned.deferred else "")
        + skipped_note(scanned.skipped)
    )
    context.update_cursor(scanned.cursor.dumps())
    if scanned.skipped or refused:
        context.log.warning(note)
    if not requests:
        return dg.SkipReason(note)
    if not (scanned.skipped or refused):
        context.log.info(note)
    return dg.SensorResult(run_requests=requests)


@dg.sensor(
    minimum_interval_seconds=config.reaper_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def dead_run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Marks failed the runs whose run worker was killed outright (SIGKILL, OOM), so their
    partitions read as failed and `cb-assets backfill --failed` picks them up. A live run
    is never reaped: its worker lives through every step and retry of the run."""
    reaped = fail_dead_runs(context.instance)
    return dg.SkipReason(
        f"marked {len(reaped)} dead runs failed: {', '.join(reaped)}" if reaped else "no dead runs"
    )
