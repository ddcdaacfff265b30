import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from cb_assets import attempts, duckdb_access
from cb_assets.backfill import RUN_RESULTS, materialized_by_run
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
from cb_assets.duckdb_access import replace_rows
from cb_assets.failures import INFRA_ERROR, Pattern, Verdict, classify
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


PARTITIONS_PER_RUN = 25


class InfrastructureFailure(Exception):
    """An attempt failed for reasons that are not the agent's; the RetryPolicy retries it."""


run_attempts = dg.AssetSpec(
    "run_attempts",
    group_name="runs",
    kinds={"duckdb"},
    description="Every attempt at every pair-run, retries included; append-only. Written by "
    "run_results: classification, the rule that decided it, exit code, cost, log excerpt.",
)


def image_digests(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Task partition → the digest `task_images` last recorded: the image its runs use."""
    try:
        rows = conn.execute(
            "select task, coalesce(repo_digest, image_id) from task_images"
        ).fetchall()
    except duckdb.CatalogException:
        return {}
    return dict(rows)


def _read_existing(result_file: Path, logs_root: Path) -> dict | None:
    if not result_file.exists() and not result_file.is_symlink():
        return None
    data = read_json_file(result_file, root=logs_root)
    agent_blocks(data, result_file)
    return data


@dataclass
class _Attempt:
    """What one attempt left: its verdict, its run_attempts row, and (for an infrastructure
    failure) what to raise once the row is recorded."""

    verdict: Verdict
    row: dict
    failure: Exception | None


def _attempt(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    partition: str,
    number: int,
    pair: Pair,
    setting: Setting,
    force: bool,
    patterns: tuple[Pattern, ...],
) -> _Attempt:
    """Run one attempt through upstream, keeping the previous attempt's files aside."""
    pair_dir = runner.pair_dir(pair, setting.name)
    logs_root = Path(runner.logs_dir)
    attempts.move_aside(logs_root, pair_dir)
    started = attempts.now()
    process_log = attempts.process_log(logs_root, pair_dir, "process", number)
    exit_code, timed_out, log_text, result = None, False, "", None
    try:
        if setting.messaging:
            runner.check_redis()
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
            patterns=patterns,
        )
    except RedisUnavailableError as exc:
        log_text = str(exc)
        verdict = Verdict(INFRA_ERROR, "redis", str(exc))
    final = not verdict.retryable or is_last_attempt(context)
    cost, tokens_in, tokens_out = attempts.spend(result)
    detail = scrub(verdict.detail, os.environ)
    attempts.mark(pair_dir, number, context.run.run_id)
    row = {
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
    }
    failure = None
    if verdict.retryable:
        summary = f"infra_error on attempt {number} of {pair.key} ({setting.name}): " + (
            f"{verdict.rule}: {detail}"
        )
        if final:
            context.instance.add_run_tags(
                context.run.run_id, {"cb_assets/classification": INFRA_ERROR}
            )
        failure = give_up_or_retry(
            context,
            InfrastructureFailure(summary),
            f"{summary}; giving up after {MAX_ATTEMPTS} attempts",
            metadata={
                "classification": INFRA_ERROR,
                "rule": verdict.rule,
                "process_log": dg.MetadataValue.path(str(process_log)),
            },
        )
    return _Attempt(verdict, row, failure)


def _materialize_partition(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    db_path: Path,
    partition: str,
    force: bool,
    patterns: tuple[Pattern, ...],
    known: "_Known",
) -> "_Recorded":
    """Run (or ingest) one pair-run and replace its rows; return its materialization metadata.

    Raises InfrastructureFailure (retryable) or dg.Failure; the attempt's row is recorded
    first either way, in the one DuckDB write of the partition (a single writer at a time
    across all runs, so each partition holds the file once, briefly).
    """
    logs_root = Path(runner.logs_dir)
    try:
        keys = run_partitions.get_partition_key_from_str(partition).keys_by_dimension
        pair = parse_pair_key(keys["pair"])
        setting = get_setting(keys["setting"])
        pair_dir = runner.pair_dir(pair, setting.name)
        result_file = pair_dir / "result.json"
        existing = _read_existing(result_file, logs_root)
    except (ResultFileError, PairKeyError, UnknownSettingError) as exc:
        # Bad input is not retried: retrying cannot fix a file or a key.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    verdict = (
        None
        if existing is None
        else classify(
            exit_code=None, timed_out=False, log_text="", result=existing, patterns=patterns
        )
    )
    ran = force or verdict is None or verdict.retryable
    digest = known.digests.get(task_key(pair.repo, pair.task_id))
    number = known.last_attempts.get(partition, 0) + 1
    attempt = (
        _attempt(context, runner, partition, number, pair, setting, force, patterns)
        if ran
        else None
    )
    failure, frame = attempt.failure if attempt else None, None
    if failure is None:
        verdict = attempt.verdict if attempt else verdict
        try:
            rows = result_rows(
                pair_dir, pair, setting, ran=ran, logs_root=logs_root, image_digest=digest
            )
            frame = rows_to_frame(
                [
                    {
                        **r,
                        "classification": verdict.classification,
                        "classification_rule": verdict.rule,
                    }
                    for r in rows
                ]
            )
        except ResultFileError as exc:
            failure = dg.Failure(description=str(exc), allow_retries=False)
    where = {"pair": pair.key, "setting": setting.name}
    with duckdb_access.connect(db_path) as conn:
        _write(conn, attempt.row if attempt else None, where, frame)
    if failure is not None:
        raise failure
    metadata = {
        "ran": ran,
        "attempt": number if ran else None,
        "classification": verdict.classification,
        "statuses": ", ".join(sorted(frame["status"].astype(str))),
        "cost": float(frame["cost"].sum()),
        "messages_sent": None
        if pd.isna(frame["messages_sent"].iloc[0])
        else int(frame["messages_sent"].iloc[0]),
        "row_count": len(frame),
        "result_file": dg.MetadataValue.path(str(result_file)),
    }
    return _Recorded(metadata, where, frame, attempt.row if attempt else None)


def _write(
    conn: duckdb.DuckDBPyConnection,
    attempt_row: dict | None,
    where: dict[str, str],
    frame: pd.DataFrame | None,
) -> None:
    """A partition's DuckDB write: its attempt row, then its rows in place of earlier ones."""
    if attempt_row is not None:
        attempts.append(conn, attempt_row)
    if frame is not None:
        replace_rows(conn, "run_results", where, frame)


@dataclass(frozen=True)
class _Recorded:
    """What one partition wrote, kept until the step has checked it reads back."""

    metadata: dict
    where: dict[str, str]  # the partition's pair and setting
    frame: pd.DataFrame
    attempt_row: dict | None


def _check_recorded(
    context: dg.AssetExecutionContext, db_path: Path, recorded: dict[str, _Recorded]
) -> None:
    """Read back what the step wrote and write again whatever is not there.

    Many processes take turns writing one DuckDB file; once (1 partition in ~1,500
    under load, never reproduced since) a write that had committed was not in the file
    afterwards. One read per step finds that before the step reports success.
    """
    with duckdb_access.connect(db_path) as conn:
        present = set(
            conn.execute(
                "select distinct pair, setting from run_results "
                "where pair in (select unnest(?::varchar[]))",
                [sorted({written.where["pair"] for written in recorded.values()})],
            ).fetchall()
        )
        attempted = set(
            conn.execute(
                "select partition, attempt from run_attempts "
                "where partition in (select unnest(?::varchar[]))",
                [list(recorded)],
            ).fetchall()
        )
        for key, written in recorded.items():
            row, lost_row = written.attempt_row, None
            if row is not None and (key, row["attempt"]) not in attempted:
                context.log.warning(
                    f"{key}: attempt {row['attempt']} was not in DuckDB; wrote it again"
                )
                lost_row = row
            lost_frame = None
            if (written.where["pair"], written.where["setting"]) not in present:
                context.log.warning(f"{key}: its rows were not in DuckDB; wrote them again")
                lost_frame = written.frame
            _write(conn, lost_row, written.where, lost_frame)


@dataclass(frozen=True)
class _Known:
    """What a step reads from DuckDB once for all its partitions."""

    digests: dict[str, str]
    last_attempts: dict[str, int]

    @classmethod
    def read(cls, db_path: Path, partitions: list[str]) -> "_Known":
        with duckdb_access.connect(db_path) as conn:
            return cls(image_digests(conn), attempts.last_attempts(conn, partitions))


def _batch_failure(failures: dict[str, Exception], total: int) -> Exception:
    """One exception for a batch: retryable while any partition failed on infrastructure
    with attempts left, else a Failure listing every failed partition and why."""
    if len(failures) == 1 and total == 1:
        return next(iter(failures.values()))
    reasons = {key: str(getattr(exc, "description", None) or exc) for key, exc in failures.items()}
    lines = "\n".join(f"{key}: {reason}" for key, reason in reasons.items())
    summary = f"{len(failures)} of {total} partitions failed"
    if any(isinstance(exc, InfrastructureFailure) for exc in failures.values()):
        return InfrastructureFailure(f"{summary}; retrying those:\n{lines}")
    return dg.Failure(
        description=f"{summary}:\n{lines}",
        allow_retries=False,
        metadata={"failed_partitions": dg.MetadataValue.json(reasons)},
    )


@dg.asset(
    partitions_def=run_partitions,
    deps=[benchmark_pairs],
    group_name="runs",
    kinds={"duckdb"},
    retry_policy=INFRA_RETRY,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
    pool="cooperbench_runs",
    output_required=False,
)
def run_results(
    context: dg.AssetExecutionContext,
    config: RunResultsConfig,
    runner: CooperBenchRunner,
    duckdb: DuckDBResource,
) -> Iterator[dg.MaterializeResult]:
    """One row per agent of one pair in one setting, from upstream's result.json.

    Runs the pair through the real `cooperbench run` unless a final result exists:
    a result is final unless an agent hit an infrastructure error. Infrastructure
    failures are retried (3 attempts, exponential backoff with jitter); each attempt
    is a row of `run_attempts` and its files are kept under `<logs>/_attempts/`.

    A run may carry a range of partitions (backfills take up to 25 per run, one setting
    at a time): they run one after another, each is recorded and materialized as soon as
    it finishes, a retry reruns only those that failed, and the ones that never succeed
    end up failed on their own.
    """
    tag_current_process(context)
    db_path = Path(duckdb.database)
    patterns = runner.failure_patterns()
    keys = list(context.partition_keys)
    # a retry of the step reruns only what the earlier attempts did not record
    done = (
        set(materialized_by_run(context.instance, context.run.run_id))
        if context.retry_number
        else set()
    )
    todo = [key for key in keys if key not in done]
    known = _Known.read(db_path, todo)
    # One line per step, not per pair: every event costs the SQLite event log ~10 ms.
    if todo:
        span = todo[0] if len(todo) == 1 else f"{todo[0]} … {todo[-1]}"
        context.log.info(f"{len(todo)} pair-run(s) with {runner.agent}, one after another: {span}")
    failures: dict[str, Exception] = {}
    recorded: dict[str, _Recorded] = {}
    for key in todo:
        try:
            recorded[key] = _materialize_partition(
                context, runner, db_path, key, config.force, patterns, known
            )
        except (InfrastructureFailure, dg.Failure) as exc:
            failures[key] = exc
            continue
        if len(keys) > 1:
            context.log_event(
                dg.AssetMaterialization(RUN_RESULTS, partition=key, metadata=recorded[key].metadata)
            )
    if recorded:
        _check_recorded(context, db_path, recorded)
    attempted = len(failures) + sum(bool(r.metadata["ran"]) for r in recorded.values())
    if attempted:
        context.log_event(
            dg.AssetMaterialization("run_attempts", metadata={"attempts_recorded": attempted})
        )
    if failures:
        raise _batch_failure(failures, len(keys))
    if len(keys) == 1 and recorded:
        yield dg.MaterializeResult(metadata=recorded[keys[0]].metadata)
