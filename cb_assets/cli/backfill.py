"""`cb-assets backfill`: rerun exactly the partitions that failed or are missing."""

import argparse
import time

import dagster as dg

from cb_assets.cli.launch import expected_durations, materialize_partitions
from cb_assets.cli.materialize import chosen_experiment, experiment_keys, finish
from cb_assets.cli.project import open_project, stop_fork_server
from cb_assets.defs.runs.partitions import RUN_RESULTS, partitions_needing_runs


def backfill(args: argparse.Namespace) -> int:
    failed_too, missing_too = args.failed, args.missing
    if not (failed_too or missing_too):
        failed_too = missing_too = True
    experiment, settings = chosen_experiment(args)
    if experiment.imported:
        print(
            f"cb-assets: experiment {experiment.name} is imported: its pair-runs are never "
            "run; bring a run in again with `cb-assets import … --replace`"
        )
        return 0
    try:
        with open_project(settings, start_runners=args.here) as project:
            if project is None:
                return 2
            keys = experiment_keys(experiment, settings, project.pairs)
            chosen = partitions_needing_runs(
                project.instance, keys, failed=failed_too, missing=missing_too
            )
            what = " and ".join(
                w for w, on in (("failed", failed_too), ("missing", missing_too)) if on
            )
            if not chosen:
                print(f"cb-assets: no {what} partitions among {len(keys)}; nothing to backfill")
                return 0
            for key, why in chosen.items():
                print(f"  {why:7} {key}")
            if args.dry_run:
                print(f"cb-assets: {len(chosen)} {what} partitions (dry run: nothing launched)")
                return 0
            if args.here:
                print(
                    f"cb-assets: running {len(chosen)} {what} partitions, "
                    f"{args.concurrency} at a time"
                )
                started = time.monotonic()
                failed = materialize_partitions(
                    project.location,
                    project.instance,
                    list(chosen),
                    args.concurrency,
                    tags={"experiment": experiment.name},
                    expected=expected_durations(project.instance, list(chosen)),
                )
                return finish(project, experiment.name, started, list(chosen), failed)
            backfill_id = submit_backfill(
                project.instance,
                project.defs,
                list(chosen),
                title=f"cb-assets backfill: {what} partitions of {experiment.name}",
            )
            print(
                f"cb-assets: launched backfill {backfill_id} of {len(chosen)} {what} partitions;"
                " the Dagster daemon runs it (scripts/dev), see Overview > Backfills in the UI"
            )
            return 0
    finally:
        if args.here:
            stop_fork_server()


def submit_backfill(
    instance: dg.DagsterInstance, defs: dg.Definitions, keys: list[str], title: str
) -> str:
    """Register a Dagster backfill of exactly `keys`; the daemon executes it."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id
    from dagster._time import get_current_timestamp

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=keys,
        asset_selection=[RUN_RESULTS],
        backfill_timestamp=get_current_timestamp(),
        tags={"cb_assets/launched_by": "cb-assets backfill"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=f"{len(keys)} run_results partitions",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id
