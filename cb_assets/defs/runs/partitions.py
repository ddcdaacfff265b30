from collections.abc import Iterable

import dagster as dg

from cb_assets.shared.settings import SETTING_NAMES

# Pairs come from the configured dataset and subset, registered by `benchmark_pairs`,
# so the definitions load even before a dataset exists.
pair_partitions = dg.DynamicPartitionsDefinition(name="pairs")
setting_partitions = dg.StaticPartitionsDefinition(list(SETTING_NAMES))

# Dimension names sort, so keys read `pair|setting`.
run_partitions = dg.MultiPartitionsDefinition(
    {"pair": pair_partitions, "setting": setting_partitions}
)

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
