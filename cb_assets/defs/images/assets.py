import dagster as dg
import pandas as pd

from cb_assets.defs.images.engine import EngineError, ensure_image, probe_workspace
from cb_assets.defs.images.partitions import parse_task_key, task_partitions
from cb_assets.defs.images.resources import DockerEngine
from cb_assets.defs.policies import (
    INFRA_RETRY,
    MAX_ATTEMPTS,
    cancellation_ends_the_step,
    give_up_or_retry,
)
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_table


@dg.asset(
    partitions_def=task_partitions,
    group_name="images",
    kinds={"docker", "duckdb"},
    retry_policy=INFRA_RETRY,
    pool="docker",
    metadata={"partition_expr": "task"},
)
def task_images(context: dg.AssetExecutionContext, docker_engine: DockerEngine) -> pd.DataFrame:
    """The task's Docker image: present on the engine (pulled when missing, under upstream's
    `akhatua/cooperbench-<repo>:task<id>` name), and a `/workspace` probe in a throw-away
    container. Engine and registry failures are retried (3 attempts, backoff with jitter)."""
    with cancellation_ends_the_step(context):
        repo, task_id = parse_task_key(context.partition_key)
        ref = docker_engine.ref(repo, task_id)
        try:
            client = docker_engine.client()
            row = ensure_image(client, ref)
            probe_ok, probe_message = probe_workspace(
                client, ref.local_name, docker_engine.probe_timeout_seconds
            )
        except EngineError as exc:
            raise give_up_or_retry(
                context, exc, f"{exc} (gave up after {MAX_ATTEMPTS} attempts)"
            ) from None
        context.add_output_metadata(
            {
                "image": row["image"],
                "pulled": row["pulled"],
                "repo_digest": row["repo_digest"] or "",
                "probe": probe_message,
                "engine": docker_engine.endpoint,
            }
        )
        if not probe_ok:
            context.log.error(probe_message)
        return pd.DataFrame(
            [
                {
                    "task": context.partition_key,
                    "repo": repo,
                    "task_id": task_id,
                    **row,
                    "probe_ok": probe_ok,
                    "probe_message": probe_message,
                    "engine": docker_engine.endpoint,
                }
            ]
        ).astype({"repo_digest": "string", "pulled_at": "string", "created": "string"})


@dg.asset_check(asset=task_images, description="every materialized image passed its probe")
def workspace_probes(duckdb: PlatformDuckDB) -> dg.AssetCheckResult:
    images = read_table(duckdb.path, "task_images")
    if images is None or images.empty:  # nothing to check yet: a warning, not an error
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "verdict": "NOT CHECKED",
                "note": "not checked: no task_images recorded yet: materialize task_images",
            },
        )
    failed = images[~images["probe_ok"].astype(bool)]
    return dg.AssetCheckResult(
        passed=failed.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "verdict": "VERIFIED" if failed.empty else "FAILED",
            "probed": len(images),
            "failed": ", ".join(failed["task"]) or "none",
            "messages": "; ".join(failed["probe_message"])[:2000],
        },
    )
