from collections.abc import Iterable

import dagster as dg

from cb_assets.shared.partition_keys import Arm

# Pairs come from the configured dataset and subset, registered by `benchmark_pairs`,
# so the definitions load even before a dataset exists.
pair_partitions = dg.DynamicPartitionsDefinition(name="pairs")
# Arms (experiment/setting[/r<k>]) come from the experiment registry and from imports: one
# dynamic dimension rather than three static ones keeps the UI's partition grid two-
# dimensional (pairs × arms) and lets an experiment add settings or repeats without a new
# definition (see docs/experiments.md).
arm_partitions = dg.DynamicPartitionsDefinition(name="arms")

# Dimension names sort, so keys read `arm|pair`.
run_partitions = dg.MultiPartitionsDefinition({"arm": arm_partitions, "pair": pair_partitions})

RUN_RESULTS = dg.AssetKey("run_results")
FAILED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def run_partition(arm: Arm, pair: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"arm": arm.key, "pair": pair})


def register(instance: dg.DagsterInstance, name: str, keys: list[str]) -> list[str]:
    """Add the keys `instance` does not know yet to dynamic partitions `name`; the new ones."""
    known = set(instance.get_dynamic_partitions(name))
    new_keys = list(dict.fromkeys(key for key in keys if key not in known))
    if new_keys:
        instance.add_dynamic_partitions(name, new_keys)
    return new_keys


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
