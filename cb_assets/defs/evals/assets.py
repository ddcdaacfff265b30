import os
from pathlib import Path

import dagster as dg
import pandas as pd

from cb_assets.defs.evals.outcomes import eval_row, rows_to_frame
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.policies import (
    INFRA_RETRY,
    MAX_ATTEMPTS,
    cancellation_ends_the_step,
    config_failure,
    give_up_or_retry,
)
from cb_assets.defs.runs import attempts, claims
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.defs.runs.results import ResultFileError
from cb_assets.shared.dataset import Pair, PairKeyError, parse_pair_key
from cb_assets.shared.experiments import Experiment, RegistryError
from cb_assets.shared.failures import (
    CONFIG_ERROR,
    INFRA_ERROR,
    EvalRefusal,
    Pattern,
    Verdict,
    classify_text,
    eval_refusal,
)
from cb_assets.shared.partition_keys import Arm, ArmKeyError, split_partition_key
from cb_assets.shared.secrets import scrub
from cb_assets.shared.settings import UnknownSettingError


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
    metadata={"partition_expr": {"arm": "arm", "pair": "pair"}},
)
def eval_results(
    context: dg.AssetExecutionContext,
    config: EvalResultsConfig,
    runner: CooperBenchRunner,
    experiments: ExperimentRegistry,
) -> pd.DataFrame:
    """Merge and test outcome of one pair-run: `cooperbench eval` for exactly that pair (in the
    task's Docker image), or an existing eval.json ingested (always, for an imported
    experiment). Evaluation failures are classified like run failures: infrastructure ones
    are retried and never counted in pass rates."""
    with cancellation_ends_the_step(context):
        try:
            arm, pair_key = split_partition_key(str(context.partition_key))
            pair = parse_pair_key(pair_key)
            experiment = experiments.experiment_of(arm)
            pair_dir = runner.pair_dir(pair, arm)
            logs_root, patterns = Path(runner.logs_dir), runner.failure_patterns()
            if not (pair_dir / "result.json").exists():
                raise dg.Failure(
                    description=f"no run to evaluate: {pair_dir / 'result.json'} is "
                    "missing; materialize run_results first",
                    allow_retries=False,
                )
            # one evaluation of a pair at a time, numbered across processes (its logs and set-
            # aside eval.json files are named by that number, so none overwrites another)
            with claims.claim(
                logs_root,
                f"{context.partition_key}|eval",
                wait_seconds=runner.timeout_seconds + 60,
                on_wait=context.log.info,
            ) as held:
                number = held.last_attempt + 1
                ran = config.force or not (pair_dir / "eval.json").exists()
                if ran and experiment.imported:
                    raise dg.Failure(
                        description=f"{pair_dir / 'eval.json'} is missing and experiment "
                        f"{experiment.name!r} is imported: its evaluations come from files",
                        allow_retries=False,
                    )
                if ran:
                    held.start(number, pid=os.getpid(), dagster_run_id=context.run.run_id)
                    _run_eval(
                        context, runner, pair, arm, experiment, config.force, patterns, number
                    )
                row = eval_row(pair_dir, pair, arm, ran=ran, patterns=patterns, logs_root=logs_root)
                if row["classification"] == INFRA_ERROR:
                    (pair_dir / "eval.json").rename(pair_dir / f"eval.infra-{number}.json")
                if held.running is not None:
                    held.finish()
        except (
            ResultFileError,
            PairKeyError,
            ArmKeyError,
            RegistryError,
            UnknownSettingError,
            claims.PartitionBusyError,
        ) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        if row["classification"] == INFRA_ERROR:
            raise _infra(
                context,
                f"evaluation of {pair.key} ({arm.key}) hit an "
                f"infrastructure error ({row['rule']}): {row['error'][:300]}",
            )
        context.add_output_metadata(
            {"ran": ran, "outcome": row["outcome"], "merge": row["merge_status"] or "n/a"}
        )
        return rows_to_frame([row])


def _run_eval(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    pair: Pair,
    arm: Arm,
    experiment: Experiment,
    force: bool,
    patterns: tuple[Pattern, ...],
    number: int,
) -> None:
    """`cooperbench eval` for the pair; an exit without eval.json raises: an infra error,
    unless upstream said why and another attempt would hear the same."""
    pair_dir = runner.pair_dir(pair, arm)
    log = attempts.process_log(Path(runner.logs_dir), pair_dir, "eval", number)
    launched = runner.eval_pair(pair, arm, experiment, force=force, log_path=log)
    if launched.exit_code != 0 or not (pair_dir / "eval.json").exists():
        tail = launched.log_tail(20_000)
        refused = None if launched.timed_out else eval_refusal(tail)
        if refused is not None:
            raise _refused(pair, arm, *refused, log)
        hit = classify_text(tail, patterns)
        last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
        rule = hit.name if hit else "runner-crash"
        raise _infra(
            context,
            f"cooperbench eval exited with {launched.exit_code} for {pair.key} "
            f"({arm.key}) [{rule}]: {scrub(last)[-400:]}; log: {log}",
        )


def _refused(pair: Pair, arm: Arm, refusal: EvalRefusal, said: str, log: Path) -> dg.Failure:
    """Not retried: upstream refused for a reason a retry meets again. A refusal that is
    the experiment's configuration fails as a config error, which stops the experiment."""
    detail = f"cooperbench eval wrote no eval.json for {pair.key} ({arm.key}): {scrub(said)}"
    metadata = {"rule": refusal.name, "process_log": dg.MetadataValue.path(str(log))}
    if refusal.config:
        return config_failure(Verdict(CONFIG_ERROR, refusal.name, detail), metadata=metadata)
    return dg.Failure(
        description=f"{detail} [{refusal.name}]; retrying cannot change that; log: {log}",
        allow_retries=False,
        metadata=metadata,
    )


def _infra(context: dg.AssetExecutionContext, message: str) -> Exception:
    return give_up_or_retry(
        context,
        RuntimeError(f"infra_error: {message}"),
        f"infra_error: {message}; giving up after {MAX_ATTEMPTS} attempts",
    )
