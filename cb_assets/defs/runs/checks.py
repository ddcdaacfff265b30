import dagster as dg

from cb_assets.defs.reports.tables import read_table
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.storage.resources import PlatformDuckDB


@dg.asset_check(asset=run_results, description="results were produced on the current images")
def results_match_images(duckdb: PlatformDuckDB) -> dg.AssetCheckResult:
    """Flags the partitions whose recorded image digest differs from the digest `task_images`
    holds now: the task's image changed after those results were produced."""
    results, images = read_table(duckdb, "run_results"), read_table(duckdb, "task_images")
    if results is None or images is None:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"note": "no results or no images recorded yet"},
        )
    current = dict(
        zip(images["task"], images["repo_digest"].fillna(images["image_id"]), strict=True)
    )
    runs = results.drop_duplicates(["pair", "setting"])
    tasks = runs["repo"] + "-" + runs["task_id"].astype(str)
    stale = runs[
        runs["image_digest"].notna()
        & tasks.isin(current)
        & (runs["image_digest"] != tasks.map(current))
    ]
    keys = sorted(stale["pair"] + "|" + stale["setting"])
    return dg.AssetCheckResult(
        passed=not keys,
        metadata={"stale_partitions": len(keys), "partitions": ", ".join(keys[:50]) or "none"},
    )
