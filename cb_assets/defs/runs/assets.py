import os
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from cb_assets import attempts, duckdb_access
from cb_assets.dataset import Pair, PairKeyError, parse_pair_key
from cb_assets.defs.benchmark.assets import benchmark_pairs
from cb_assets.defs.images.partitions import task_key
from cb_assets.defs.policies import (
    INFRA_RETRY,
    MAX_ATTEMPTS,
    give_up_or_retry,
    is_last_attempt,
)
from cb_assets.defs.runs.liveness import tag_current_process
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.defs.runs.resources import CooperBenchRunner, RedisUnavailableError
from cb_assets.failures import INFRA_ERROR, Verdict, classify
from cb_assets.results import (
    ResultFileError,
    agent_blocks,
    read_json_file,
    result_rows,
    rows_to_frame,
)
from cb_assets.secrets import scrub
from cb_assets.settings import Setting, UnknownSettingError, get_setting


class RunResultsConfig(dg.Config):
    force: bool = False
    """Rerun the pair even if a final result.json already exists for it."""


class InfrastructureFailure(Exception):
    """An attempt failed for reasons that are not the agent's; the RetryPolicy retries it."""


run_attempts = dg.AssetSpec(
    "run_attempts",
    group_name="runs",
    kinds={"duckdb"},
    description="Every attempt at every pair-run, retries included; append-only. Written by "
    "run_results: classification, the rule that decided it, exit code, cost, log excerpt.",
)


def image_digest(db_path: Path, pair: Pair) -> str | None:
    """The digest `task_images` last recorded for the pair's task: the image the run used."""
    with duckdb_access.connect(db_path) as conn:
        try:
            row = conn.execute(
                "select coalesce(repo_digest, image_id) from task_images where task = ?",
                [task_key(pair.repo, pair.task_id)],
            ).fetchone()
        except duckdb.CatalogException:
            return None
    return row[0] if row else None


def _read_existing(result_file: Path, logs_root: Path) -> dict | None:
    if not result_file.exists() and not result_file.is_symlink():
        return None
    data = read_json_file(result_file, root=logs_root)
    agent_blocks(data, result_file)
    return data


def _attempt(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    db_path: Path,
    pair: Pair,
    setting: Setting,
    force: bool,
) -> Verdict:
    """Run one attempt through upstream, keep the previous attempt's files, record a row."""
    partition = context.partition_key
    pair_dir = runner.pair_dir(pair, setting.name)
    logs_root = Path(runner.logs_dir)
    number = attempts.next_attempt(db_path, partition)
    attempts.move_aside(logs_root, pair_dir)
    started = attempts.now()
    process_log = attempts.process_log(logs_root, pair_dir, "process", number)
    exit_code, timed_out, log_text, result = None, False, "", None
    try:
        if setting.messaging:
            runner.check_redis()
        context.log.info(
            f"attempt {number}: running {pair.key} ({setting.name}) with {runner.agent}"
        )
        launched = runner.run_pair(pair, setting.name, force=force, log_path=process_log)
        exit_code, timed_out, log_text = launched.exit_code, launched.timed_out, launched.log_tail()
        try:
            result = _read_existing(pair_dir / "result.json", logs_root)
        except ResultFileError as exc:  # a half-written file from a crashed process
            log_text += f"\n{exc}"
        verdict = classify(
            exit_code=exit_code,
            timed_out=timed_out,
            log_text=log_text,
            result=result,
            patterns=runner.failure_patterns(),
        )
    except RedisUnavailableError as exc:
        log_text = str(exc)
        verdict = Verdict(INFRA_ERROR, "redis", str(exc))
    final = not verdict.retryable or is_last_attempt(context)
    cost, tokens_in, tokens_out = attempts.spend(result)
    detail = scrub(verdict.detail, os.environ)
    attempts.mark(pair_dir, number, context.run.run_id)
    attempts.append(
        db_path,
        {
            "partition": partition,
            "pair": pair.key,
            "setting": setting.name,
            "attempt": number,
            "dagster_run_id": context.run.run_id,
            "retry_number": context.retry_number,
            "started_at": started,
            "ended_at": attempts.now(),
            "classification": verdict.classification,
            "rule": verdict.rule,
            "detail": detail,
            "final": final,
            "exit_code": exit_code,
            "timed_out": timed_out,
            "cost": cost,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "log_dir": str(pair_dir),
            "log_excerpt": scrub(log_text[-2000:], os.environ),
        },
    )
    context.log_event(
        dg.AssetMaterialization(
            "run_attempts",
            partition=None,
            metadata={
                "partition": partition,
                "attempt": number,
                "classification": verdict.classification,
                "rule": verdict.rule,
            },
        )
    )
    if verdict.retryable:
        summary = f"infra_error on attempt {number} of {pair.key} ({setting.name}): " + (
            f"{verdict.rule}: {detail}"
        )
        if final:
            context.instance.add_run_tags(
                context.run.run_id, {"cb_assets/classification": INFRA_ERROR}
            )
        raise give_up_or_retry(
            context,
            InfrastructureFailure(summary),
            f"{summary}; giving up after {MAX_ATTEMPTS} attempts",
            metadata={
                "classification": INFRA_ERROR,
                "rule": verdict.rule,
                "process_log": dg.MetadataValue.path(str(process_log)),
            },
        )
    return verdict


@dg.asset(
    partitions_def=run_partitions,
    deps=[benchmark_pairs],
    group_name="runs",
    kinds={"duckdb"},
    retry_policy=INFRA_RETRY,
    pool="cooperbench_runs",
    metadata={"partition_expr": {"pair": "pair", "setting": "setting"}},
)
def run_results(
    context: dg.AssetExecutionContext,
    config: RunResultsConfig,
    runner: CooperBenchRunner,
    duckdb: DuckDBResource,
) -> pd.DataFrame:
    """One row per agent of one pair in one setting, from upstream's result.json.

    Runs the pair through the real `cooperbench run` unless a final result exists:
    a result is final unless an agent hit an infrastructure error. Infrastructure
    failures are retried (3 attempts, exponential backoff with jitter); each attempt
    is a row of `run_attempts` and its files are kept under `<logs>/_attempts/`.
    """
    tag_current_process(context)
    keys = context.partition_key.keys_by_dimension
    try:
        pair = parse_pair_key(keys["pair"])
        setting = get_setting(keys["setting"])
        pair_dir = runner.pair_dir(pair, setting.name)
        result_file = pair_dir / "result.json"
        existing = _read_existing(result_file, Path(runner.logs_dir))
        verdict = (
            None
            if existing is None
            else classify(
                exit_code=None,
                timed_out=False,
                log_text="",
                result=existing,
                patterns=runner.failure_patterns(),
            )
        )
        ran = config.force or verdict is None or verdict.retryable
        if ran:
            verdict = _attempt(context, runner, Path(duckdb.database), pair, setting, config.force)
        rows = result_rows(
            pair_dir,
            pair,
            setting,
            ran=ran,
            logs_root=Path(runner.logs_dir),
            image_digest=image_digest(Path(duckdb.database), pair),
        )
    except (ResultFileError, PairKeyError, UnknownSettingError) as exc:
        # Bad input is not retried: retrying cannot fix a file or a key.
        raise dg.Failure(description=str(exc), allow_retries=False) from None

    frame = rows_to_frame(
        [
            {**r, "classification": verdict.classification, "classification_rule": verdict.rule}
            for r in rows
        ]
    )
    context.add_output_metadata(
        {
            "ran": ran,
            "classification": verdict.classification,
            "statuses": ", ".join(sorted(frame["status"].astype(str))),
            "cost": float(frame["cost"].sum()),
            "messages_sent": None
            if pd.isna(frame["messages_sent"].iloc[0])
            else int(frame["messages_sent"].iloc[0]),
            "result_file": dg.MetadataValue.path(str(result_file)),
        }
    )
    return frame
