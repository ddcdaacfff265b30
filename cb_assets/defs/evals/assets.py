from pathlib import Path

import dagster as dg
import pandas as pd

from cb_assets import attempts
from cb_assets.dataset import PairKeyError, parse_pair_key
from cb_assets.defs.policies import INFRA_RETRY, MAX_ATTEMPTS, give_up_or_retry
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.evals import eval_row, rows_to_frame
from cb_assets.failures import INFRA_ERROR, classify_text
from cb_assets.results import ResultFileError
from cb_assets.secrets import scrub
from cb_assets.settings import UnknownSettingError, get_setting


class EvalResultsConfig(dg.Config):
    force: bool = False
    """Evaluate again even if an eval.json exists."""


@dg.asset(
    partitions_def=run_partitions,
    deps=[run_results],
    group_name="evals",
    kinds={"duckdb"},
    retry_policy=INFRA_RETRY,
    pool="docker",
    metadata={"partition_expr": {"pair": "pair", "setting": "setting"}},
)
def eval_results(
    context: dg.AssetExecutionContext, config: EvalResultsConfig, runner: CooperBenchRunner
) -> pd.DataFrame:
    """Merge and test outcome of one pair-run: `cooperbench eval` for exactly that pair (in the
    task's Docker image), or an existing eval.json ingested. Evaluation failures are classified
    like run failures: infrastructure ones are retried and never counted in pass rates."""
    keys = context.partition_key.keys_by_dimension
    try:
        pair, setting = parse_pair_key(keys["pair"]), get_setting(keys["setting"])
        pair_dir = runner.pair_dir(pair, setting.name)
        logs_root, patterns = Path(runner.logs_dir), runner.failure_patterns()
        if not (pair_dir / "result.json").exists():
            raise dg.Failure(
                description=f"no run to evaluate: {pair_dir / 'result.json'} is "
                "missing; materialize run_results first",
                allow_retries=False,
            )
        ran = config.force or not (pair_dir / "eval.json").exists()
        if ran:
            log = attempts.process_log(logs_root, pair_dir, "eval", context.retry_number + 1)
            launched = runner.eval_pair(pair, setting.name, force=config.force, log_path=log)
            if launched.exit_code != 0 or not (pair_dir / "eval.json").exists():
                tail = launched.log_tail(20_000)
                hit = classify_text(tail, patterns)
                last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
                rule = hit.name if hit else "runner-crash"
                raise _infra(
                    context,
                    f"cooperbench eval exited with {launched.exit_code} for {pair.key} "
                    f"({setting.name}) [{rule}]: {scrub(last)[-400:]}; log: {log}",
                )
        row = eval_row(pair_dir, pair, setting, ran=ran, patterns=patterns, logs_root=logs_root)
    except (ResultFileError, PairKeyError, UnknownSettingError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if row["classification"] == INFRA_ERROR:
        (pair_dir / "eval.json").rename(pair_dir / f"eval.infra-{context.retry_number + 1}.json")
        raise _infra(
            context,
            f"evaluation of {pair.key} ({setting.name}) hit an "
            f"infrastructure error ({row['rule']}): {row['error'][:300]}",
        )
    context.add_output_metadata(
        {"ran": ran, "outcome": row["outcome"], "merge": row["merge_status"] or "n/a"}
    )
    return rows_to_frame([row])


def _infra(context: dg.AssetExecutionContext, message: str) -> Exception:
    return give_up_or_retry(
        context,
        RuntimeError(f"infra_error: {message}"),
        f"infra_error: {message}; giving up after {MAX_ATTEMPTS} attempts",
    )
