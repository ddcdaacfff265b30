import dagster as dg

from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_table
from cb_assets.shared.partition_keys import partition_key


def not_checked(reason: str) -> dg.AssetCheckResult:
    """A check with nothing to check yet: not passed, but a warning, never an error."""
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"verdict": "NOT CHECKED", "note": f"not checked: {reason}"},
    )


@dg.asset_check(asset=run_results, description="results were produced on the current images")
def results_match_images(duckdb: PlatformDuckDB) -> dg.AssetCheckResult:
    """Flags the partitions whose recorded image digest differs from the digest `task_images`
    holds now: the task's image changed after those results were produced."""
    results, images = read_table(duckdb.path, "run_results"), read_table(duckdb.path, "task_images")
    if results is None or results.empty:
        return not_checked("no run_results recorded yet")
    if images is None or images.empty:
        return not_checked("no task_images recorded yet: materialize task_images")
    current = dict(
        zip(images["task"], images["repo_digest"].fillna(images["image_id"]), strict=True)
    )
    runs = results.drop_duplicates(["arm", "pair"])
    tasks = runs["repo"] + "-" + runs["task_id"].astype(str)
    comparable = runs["image_digest"].notna() & tasks.isin(current)
    if not comparable.any():
        return not_checked(
            f"none of {len(runs)} pair-runs has both a recorded image digest and a current "
            "task image to compare it with"
        )
    stale = runs[comparable & (runs["image_digest"] != tasks.map(current))]
    keys = sorted(partition_key(stale["arm"], stale["pair"]))
    return dg.AssetCheckResult(
        passed=not keys,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "verdict": "FAILED" if keys else "VERIFIED",
            "compared": int(comparable.sum()),
            "stale_partitions": len(keys),
            "partitions": ", ".join(keys[:50]) or "none",
        },
    )


@dg.asset_check(asset=run_results, description="which pair-runs ended with an agent in Error")
def agent_outcomes(duckdb: PlatformDuckDB) -> dg.AssetCheckResult:
    """A partition is green once its result is recorded, whatever the agents did: this check
    lists, per experiment, the pair-runs whose agents ended in Error or over their limits,
    so they stand out in the UI (a warning: an agent's failure is a result, not a fault)."""
    results = read_table(duckdb.path, "run_results")
    if results is None or results.empty:
        return not_checked("no run_results recorded yet")
    bad = results[results["status"].astype(str) != "Submitted"]
    runs = bad.drop_duplicates(["arm", "pair"])
    keys = sorted(partition_key(runs["arm"], runs["pair"]))
    per_experiment = {
        str(name): int(count) for name, count in runs.groupby("experiment").size().items()
    }
    return dg.AssetCheckResult(
        passed=not keys,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "pair_runs": int(results.drop_duplicates(["arm", "pair"]).shape[0]),
            "not_submitted": len(keys),
            "per_experiment": dg.MetadataValue.json(per_experiment),
            "statuses": dg.MetadataValue.json(
                {str(k): int(v) for k, v in bad["status"].astype(str).value_counts().items()}
            ),
            "partitions": ", ".join(keys[:50])
            + (f" … and {len(keys) - 50} more" if len(keys) > 50 else "")
            or "none",
        },
    )
