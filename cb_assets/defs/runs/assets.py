import dagster as dg
import pandas as pd

from cb_assets.dataset import parse_pair_key
from cb_assets.defs.benchmark.assets import benchmark_pairs
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.defs.runs.resources import CooperBenchRunner, RedisUnavailableError
from cb_assets.results import (
    ResultFileError,
    needs_rerun,
    read_json_file,
    result_rows,
    rows_to_frame,
)
from cb_assets.settings import get_setting


class RunResultsConfig(dg.Config):
    force: bool = False
    """Rerun the pair even if upstream already wrote a final result.json for it."""


# Only exceptions are retried: an agent that fails on its own merits is a result,
# while a crashed or timed-out runner is the infrastructure's fault.
INFRA_RETRY = dg.RetryPolicy(
    max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.asset(
    partitions_def=run_partitions,
    deps=[benchmark_pairs],
    group_name="runs",
    kinds={"duckdb"},
    retry_policy=INFRA_RETRY,
    metadata={"partition_expr": {"pair": "pair", "setting": "setting"}},
)
def run_results(
    context: dg.AssetExecutionContext, config: RunResultsConfig, runner: CooperBenchRunner
) -> pd.DataFrame:
    """One row per agent of one pair in one setting, from upstream's result.json.

    Runs the pair through the real `cooperbench run` unless a final result already
    exists (upstream's own rule: rerun only when an agent ended in `Error`).
    """
    keys = context.partition_key.keys_by_dimension
    pair = parse_pair_key(keys["pair"])
    setting = get_setting(keys["setting"])
    pair_dir = runner.pair_dir(pair, setting.name)
    result_file = pair_dir / "result.json"

    try:
        must_run = (
            config.force
            or not result_file.exists()
            or needs_rerun(read_json_file(result_file), result_file)
        )
        ran = False
        if must_run:
            if setting.messaging:
                runner.check_redis()
            process_log = pair_dir.parent / f"{pair_dir.name}.cb_assets.log"
            context.log.info(f"running {pair.key} ({setting.name}) with {runner.agent}")
            launched = runner.run_pair(pair, setting.name, force=config.force, log_path=process_log)
            if launched.timed_out or launched.exit_code != 0 or not result_file.exists():
                what = "timed out" if launched.timed_out else f"exited with {launched.exit_code}"
                raise dg.Failure(
                    description=f"cooperbench {what} for {pair.key} ({setting.name}); "
                    f"log: {process_log}",
                    metadata={"log_tail": dg.MetadataValue.text(launched.log_tail())},
                )
            ran = True
        rows = result_rows(pair_dir, pair, setting, ran=ran)
    except (ResultFileError, RedisUnavailableError) as exc:
        # Bad input is not retried: retrying cannot fix a file or a missing server.
        raise dg.Failure(description=str(exc), allow_retries=False) from None

    frame = rows_to_frame(rows)
    context.add_output_metadata(
        {
            "ran": ran,
            "statuses": ", ".join(sorted(frame["status"].astype(str))),
            "cost": float(frame["cost"].sum()),
            "messages_sent": None
            if pd.isna(frame["messages_sent"].iloc[0])
            else int(frame["messages_sent"].iloc[0]),
            "result_file": dg.MetadataValue.path(str(result_file)),
        }
    )
    return frame
