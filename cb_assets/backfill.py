"""Which run_results partitions need another go: failed, missing, or both."""

from collections.abc import Iterable

import dagster as dg

RUN_RESULTS = dg.AssetKey("run_results")
FAILED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def partitions_needing_runs(
    instance: dg.DagsterInstance, keys: Iterable[str], *, failed: bool, missing: bool
) -> dict[str, str]:
    """Partition key → why: `failed` when its latest run failed (infra_error included, since a
    final infra_error fails its run), `missing` when it was never materialized."""
    materialized = instance.get_materialized_partitions(RUN_RESULTS)
    pending = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(  # noqa: E501
        RUN_RESULTS
    )
    chosen: dict[str, str] = {}
    for key in keys:
        if key in pending:
            run = instance.get_run_by_id(pending[key][0])
            if failed and run is not None and run.status in FAILED_STATUSES:
                chosen[key] = "failed"
            elif missing and run is None and key not in materialized:
                chosen[key] = "missing"
        elif missing and key not in materialized:
            chosen[key] = "missing"
    return chosen


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


def materialized_by_run(
    instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey = RUN_RESULTS
) -> list[str]:
    """The partitions of `asset_key` that run `run_id` materialized, in order (one entry per
    materialization event, so a doubled one shows)."""
    from dagster._core.events import DagsterEventType

    records = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return [
        event.partition
        for record in records
        if (event := record.event_log_entry.dagster_event) is not None
        and event.asset_key == asset_key
    ]
