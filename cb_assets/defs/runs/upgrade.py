"""Open an instance and a DuckDB file written by an earlier release, with nothing lost.

Earlier releases partitioned run_results and eval_results by pair × setting (`<pair>|<setting>`);
partitions are now arm × pair (`<arm>|<pair>`). The DuckDB tables are upgraded first (see
storage.schema), then every partition the instance holds as materialized under an old key
is recorded again under its new key — a runless materialization that says which key it came
from — so the partition grid shows the same results green. The old runs and their event
logs stay as they are. Idempotent: a key already carried over is not carried again.
"""

from pathlib import Path

import dagster as dg

from cb_assets.defs.runs.partitions import RUN_RESULTS, arm_partitions, register
from cb_assets.defs.storage import duckdb_access, schema
from cb_assets.shared.partition_keys import ArmKeyError, partition_key, split_partition_key
from cb_assets.shared.settings import UnknownSettingError

UPGRADED_ASSETS = (RUN_RESULTS, dg.AssetKey("eval_results"))
TABLE_OF = {"run_results": "run_results", "eval_results": "eval_results"}


def _old_keys(instance: dg.DagsterInstance, asset: dg.AssetKey) -> list[str]:
    old = []
    for key in instance.get_materialized_partitions(asset):
        try:
            split_partition_key(key)
        except (ArmKeyError, UnknownSettingError, ValueError):
            old.append(key)
    return sorted(old)


def _arm_by_old_key(db_path: Path, table: str) -> dict[str, str]:
    with duckdb_access.connect(db_path, read_only=True) as conn:
        if not duckdb_access.table_exists(conn, table):
            return {}
        rows = conn.execute(f"select distinct pair, setting, arm from {table}").fetchall()
    # an old key is `<pair>|<setting>`; several experiments in one old file (the destructive
    # case) map to the latest rows only: the old release kept one per pair and setting
    return {f"{pair}|{setting}": arm for pair, setting, arm in rows if arm}


CARRIED_OVER = "cb_assets/partitions_carried_over"  # instance key: the carry-over is done


def upgrade(instance: dg.DagsterInstance, db_path: Path) -> list[str]:
    """Upgrade the DuckDB file, then carry the instance's old partition keys over (once per
    instance); one line per thing done (empty: nothing was from an earlier release)."""
    done = schema.ensure_current(db_path)
    if instance.run_storage.get_cursor_values({CARRIED_OVER}).get(CARRIED_OVER):
        return done
    done += _carry_over(instance, db_path)
    instance.run_storage.set_cursor_values({CARRIED_OVER: "1"})
    return done


def _carry_over(instance: dg.DagsterInstance, db_path: Path) -> list[str]:
    done: list[str] = []
    for asset in UPGRADED_ASSETS:
        old = _old_keys(instance, asset)
        if not old:
            continue
        arms = _arm_by_old_key(db_path, TABLE_OF[asset.path[-1]]) if db_path.exists() else {}
        carried = [(key, arms[key]) for key in old if key in arms]
        register(instance, arm_partitions.name, [arm for _, arm in carried])
        already = set(instance.get_materialized_partitions(asset))
        added = 0
        for key, arm in carried:
            new_key = partition_key(arm, key.rpartition("|")[0])
            if new_key in already:
                continue
            added += 1
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset,
                    partition=new_key,
                    description=f"carried over from the earlier partition key {key}",
                    metadata={"upgraded_from": key},
                )
            )
        lost = len(old) - len(carried)
        if added:
            done.append(
                f"{asset.to_user_string()}: {added} partitions carried over to arm keys"
                + (f"; {lost} old keys have no DuckDB rows and stay as they were" if lost else "")
            )
    return done
