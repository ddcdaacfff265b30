import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from cb_assets.defs.benchmark.assets import benchmark_pairs
from cb_assets.defs.conversations import messages
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.images.partitions import task_key
from cb_assets.defs.policies import (
    INFRA_RETRY,
    MAX_ATTEMPTS,
    cancellation_ends_the_step,
    config_failure,
    give_up_or_retry,
    is_last_attempt,
)
from cb_assets.defs.runs import attempts, claims, preflight
from cb_assets.defs.runs.pair_view import pair_run_summary, run_tags
from cb_assets.defs.runs.partitions import RUN_RESULTS, materialized_by_run, run_partitions
from cb_assets.defs.runs.resources import CooperBenchRunner, RedisUnavailableError
from cb_assets.defs.runs.result_scan import QUARANTINE_DIR, quarantine_non_regular
from cb_assets.defs.runs.results import (
    ResultFileError,
    agent_blocks,
    read_json_file,
    result_rows,
    rows_to_frame,
)
from cb_assets.defs.storage import duckdb_access
from cb_assets.defs.storage.duckdb_access import replace_rows, table_exists
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.run_launcher.liveness import tag_current_process
from cb_assets.runner.outcome import LaunchError
from cb_assets.shared.dataset import Pair, PairKeyError, parse_pair_key, task_in_dataset
from cb_assets.shared.experiments import Experiment, Registry, RegistryError
from cb_assets.shared.failures import (
    CONFIG_ERROR_PREFIX,
    INFRA_ERROR,
    Pattern,
    Verdict,
    classify,
    classify_result,
    config_error_cause,
)
from cb_assets.shared.partition_keys import Arm, ArmKeyError, split_partition_key
from cb_assets.shared.secrets import scrub
from cb_assets.shared.settings import Setting, UnknownSettingError, get_setting


class RunResultsConfig(dg.Config):
    force: bool = False
    """Rerun the pair even if a final result.json already exists for it."""


PARTITIONS_PER_RUN = 25
NOT_IN_DATASET = "not in the configured dataset"


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


def _attempt_row(
    partition: str,
    pair: Pair,
    arm: Arm,
    number: int,
    verdict: Verdict,
    result: dict | None,
    **facts,
) -> dict:
    """A run_attempts row, its spend read from the attempt's `result`; every stored string
    scrubbed of secrets."""
    cost, tokens_in, tokens_out = attempts.spend(result)
    return {
        "partition": partition,
        "experiment": arm.experiment,
        "setting": arm.setting,
        "repeat": arm.repeat,
        "arm": arm.key,
        "pair": pair.key,
        "attempt": number,
        "classification": verdict.classification,
        "rule": verdict.rule,
        "cost": cost,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        **facts,
        "detail": scrub(verdict.detail, os.environ),
        # scrubbed before it is cut, so no cut leaves part of a secret behind
        "log_excerpt": scrub(facts.get("log_excerpt") or "", os.environ)[-2000:],
    }


def _interrupted_row(
    partition: str,
    pair: Pair,
    arm: Arm,
    running: dict,
    result: dict | None,
    patterns: tuple[Pattern, ...],
) -> dict:
    """The row of an attempt whose process died before recording it: its journal entry is
    what is left of it, with whatever result.json it wrote."""
    if result is None:
        verdict = Verdict(
            INFRA_ERROR,
            "attempt-interrupted",
            f"the process running attempt {running['attempt']} (pid {running.get('pid')}) "
            "ended before recording it",
        )
    else:
        verdict = classify_result(result, patterns)
    return _attempt_row(
        partition,
        pair,
        arm,
        int(running["attempt"]),
        verdict,
        result,
        dagster_run_id=running.get("dagster_run_id"),
        retry_number=running.get("retry_number"),
        started_at=attempts.parse_time(running.get("started_at")),
        ended_at=attempts.now(),
        final=not verdict.retryable,
        exit_code=None,
        timed_out=False,
        log_dir=running.get("log_dir"),
        log_excerpt="",
    )


def _attempt(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    partition: "_Partition",
    number: int,
    force: bool,
    patterns: tuple[Pattern, ...],
    claim_fd: int,
) -> _Attempt:
    """Run one attempt through upstream (the previous attempt's files already moved aside),
    the partition's claim (`claim_fd`) held for as long as the cooperbench process lives."""
    pair, setting, pair_dir = partition.pair, partition.setting, partition.pair_dir
    logs_root = Path(runner.logs_dir)
    started = attempts.now()
    process_log = attempts.process_log(logs_root, pair_dir, "process", number)
    exit_code, timed_out, log_text, result = None, False, "", None
    try:
        if setting.messaging:
            runner.check_redis()
        launched = runner.run_pair(
            pair,
            partition.arm,
            partition.experiment,
            force=force,
            log_path=process_log,
            hold_fds=(claim_fd,),
        )
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
    except LaunchError as exc:  # the fork server died or refused: not the agent's doing
        log_text = str(exc)
        verdict = Verdict(INFRA_ERROR, "runner-lost", str(exc))
    final = not verdict.retryable or is_last_attempt(context)
    attempts.mark(pair_dir, number, context.run.run_id)
    row = _attempt_row(
        partition.key,
        pair,
        partition.arm,
        number,
        verdict,
        result,
        dagster_run_id=context.run.run_id,
        retry_number=context.retry_number,
        started_at=started,
        ended_at=attempts.now(),
        final=final,
        exit_code=exit_code,
        timed_out=timed_out,
        log_dir=str(pair_dir),
        log_excerpt=log_text,
    )
    failure = None
    if verdict.stops_experiment:
        failure = config_failure(
            verdict, metadata={"process_log": dg.MetadataValue.path(str(process_log))}
        )
    elif verdict.retryable:
        summary = f"infra_error on attempt {number} of {partition.key}: " + (
            f"{verdict.rule}: {row['detail']}"
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


@dataclass(frozen=True)
class _Partition:
    """One run_results partition as a step sees it."""

    key: str
    arm: Arm
    experiment: Experiment
    pair: Pair
    setting: Setting
    pair_dir: Path
    in_dataset: bool


def _materialize_partition(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    registry: Registry | RegistryError,
    db_path: Path,
    key: str,
    force: bool,
    patterns: tuple[Pattern, ...],
    known: "_Known",
) -> dict:
    """Run (or ingest) one pair-run and replace its rows; return its materialization metadata.

    The partition is claimed first, so no other process runs it at the same time (a second
    claimant waits, then finds the result and ingests it). Raises InfrastructureFailure
    (retryable) or dg.Failure; the attempt's row and the partition's rows are one DuckDB
    transaction, recorded before either is raised.
    """
    partition = _partition(runner, registry, key)
    try:
        with claims.claim(
            Path(runner.logs_dir),
            key,
            # the holder's pair-run, then its wait for the DuckDB lock
            wait_seconds=runner.timeout_seconds + duckdb_access.LOCK_WAIT_SECONDS + 60,
            on_wait=context.log.info,
        ) as held:
            return _claimed(context, runner, db_path, partition, force, patterns, known, held)
    except claims.PartitionBusyError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


def _claimed(
    context: dg.AssetExecutionContext,
    runner: CooperBenchRunner,
    db_path: Path,
    partition: _Partition,
    force: bool,
    patterns: tuple[Pattern, ...],
    known: "_Known",
    held: claims.Claim,
) -> dict:
    logs_root = Path(runner.logs_dir)
    key, pair, pair_dir = partition.key, partition.pair, partition.pair_dir
    result_file = pair_dir / "result.json"
    torn = False
    interrupted = None
    if held.running is not None:  # its process died: record that attempt first, on its own
        try:
            left = _read_existing(result_file, logs_root)
        except ResultFileError:
            left, torn = None, True  # half-written by the dying attempt: no result
        row = _interrupted_row(key, pair, partition.arm, held.running, left, patterns)
        _record(db_path, partition, [row], None, if_absent=True)
        interrupted = held.running["attempt"]
        held.finish()
    try:
        existing = None if torn else _read_existing(result_file, logs_root)
    except ResultFileError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    verdict = None if existing is None else classify_result(existing, patterns)
    # an earlier infrastructure or configuration failure is no result: run it (again)
    ran = force or verdict is None or not verdict.is_result
    if ran and partition.experiment.imported:  # its results come from files, never a run
        if existing is not None:
            ran = False
        else:
            raise dg.Failure(
                description=f"{key}: experiment {partition.experiment.name!r} is imported "
                f"(source: import) and {result_file} is missing: bring it in with "
                "`cb-assets import`; imported pair-runs are never run",
                allow_retries=False,
            )
    problem = known.problem_of(partition.experiment) if ran else None
    if problem:  # every pair-run of it would fail the same way: the step stops here
        raise dg.Failure(description=f"{CONFIG_ERROR_PREFIX} {problem}", allow_retries=False)
    if ran and not partition.in_dataset:
        raise dg.Failure(
            description=f"{key}: {pair.key} is {NOT_IN_DATASET}; only its files can be "
            "ingested, and there are none",
            allow_retries=False,
        )
    attempt = None
    number = max(held.last_attempt, known.last_attempts.get(key, 0)) + 1
    if ran:
        _quarantine(context, logs_root, pair_dir)
        attempts.move_aside(logs_root, pair_dir, default_name=interrupted)
        held.start(
            number,
            pid=os.getpid(),
            dagster_run_id=context.run.run_id,
            retry_number=context.retry_number,
            started_at=attempts.now().isoformat(),
            log_dir=str(pair_dir),
        )
        attempt = _attempt(context, runner, partition, number, force, patterns, held.fd)
    failure, frame, said = attempt.failure if attempt else None, None, None
    if failure is None:
        verdict = attempt.verdict if attempt else verdict
        digest = known.digests.get(task_key(pair.repo, pair.task_id))
        try:
            rows = result_rows(
                pair_dir,
                pair,
                partition.arm,
                ran=ran,
                logs_root=logs_root,
                image_digest=digest,
                in_dataset=partition.in_dataset,
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
            said = messages.rows_to_frame(
                messages.conversation_rows(
                    pair_dir / "conversation.json",
                    experiment=partition.arm.experiment,
                    setting=partition.arm.setting,
                    repeat=partition.arm.repeat,
                    arm=partition.arm.key,
                    pair=pair.key,
                    root=logs_root,
                )
            )
        except ResultFileError as exc:
            failure, frame = dg.Failure(description=str(exc), allow_retries=False), None
    _record(db_path, partition, [attempt.row] if attempt else [], frame, said)
    if held.running is not None:
        held.finish()
    if failure is not None:
        raise failure
    return _metadata(
        pair_run_summary(
            frame,
            verdict,
            ran=ran,
            attempt=number if ran else None,
            failed_attempts_cost=known.failed_cost.get(key, 0.0),
            pair_dir=pair_dir,
            # the rows just stored: the file is read once (solo has none)
            conversation=said if os.path.lexists(pair_dir / "conversation.json") else None,
        )
    )


def _metadata(summary: dict) -> dict:
    """A pair-run summary as materialization metadata: markdown shown as markdown, the
    result file as a path."""
    return {
        key.removesuffix("_md"): dg.MetadataValue.md(value)
        if key.endswith("_md")
        else dg.MetadataValue.path(value)
        if key == "result_file"
        else value
        for key, value in summary.items()
    }


def _quarantine(context: dg.AssetExecutionContext, logs_root: Path, pair_dir: Path) -> None:
    """Upstream reads every result.json of a run when it totals it: a FIFO there would hang
    the run, a directory break it. Move such entries of this pair's run aside first."""
    aside = logs_root / QUARANTINE_DIR
    try:
        for moved in quarantine_non_regular(pair_dir.parents[3], aside):
            context.log.warning(f"moved {moved}, not a regular file, to {aside}")
    except (ResultFileError, OSError) as exc:
        context.log.warning(f"could not check {pair_dir.parents[3]} for non-regular files: {exc}")


def _record(
    db_path: Path,
    partition: _Partition,
    attempt_rows: list[dict],
    frame: pd.DataFrame | None,
    said: pd.DataFrame | None = None,
    *,
    if_absent: bool = False,
) -> None:
    """A partition's one DuckDB transaction: its attempt rows, then its rows (and its
    conversation's, one per message) in place of earlier ones. A failed write (a full
    disk, a lock held too long) commits nothing and leaves the attempt in the claim
    journal, so the next run of the partition records it.
    `if_absent`: skip an attempt row already recorded (its process died after committing)."""
    where = {
        "experiment": partition.arm.experiment,
        "setting": partition.arm.setting,
        "repeat": partition.arm.repeat,
        "pair": partition.pair.key,
    }
    try:
        with duckdb_access.connect(db_path) as conn, duckdb_access.transaction(conn):
            for row in attempt_rows:
                attempts.append(conn, row, if_absent=if_absent)
            if frame is not None:
                replace_rows(conn, "run_results", where, frame)
                if said is not None and (not said.empty or table_exists(conn, "conversations")):
                    replace_rows(conn, "conversations", where, said)
    except (duckdb.Error, OSError) as exc:
        raise dg.Failure(
            description=f"could not record {partition.key} in {db_path}: {exc}. Nothing of it "
            f"was written; its files stay in {partition.pair_dir} and the partition's next run "
            "records them",
            allow_retries=False,
        ) from None


@dataclass(frozen=True)
class _Known:
    """What a step reads from DuckDB once for all its partitions."""

    digests: dict[str, str]
    last_attempts: dict[str, int]
    failed_cost: dict[str, float]  # partition → what its infra_error attempts cost
    registry_path: Path
    problems: dict[str, str | None] = field(default_factory=dict)  # experiment → problem

    def problem_of(self, experiment: Experiment) -> str | None:
        """What stops `experiment` from running here (an unknown agent, a secret not set),
        checked once per step and only when a pair-run of it must run: ingesting results
        made elsewhere needs neither its agent nor its keys."""
        if experiment.name not in self.problems:
            found = preflight.experiment_problems(experiment, self.registry_path)
            self.problems[experiment.name] = "; ".join(found) or None
        return self.problems[experiment.name]

    @classmethod
    def read(cls, db_path: Path, partitions: list[str], registry_path: str) -> "_Known":
        with duckdb_access.connect(db_path) as conn:
            return cls(
                image_digests(conn),
                attempts.last_attempts(conn, partitions),
                attempts.failed_cost(conn, partitions),
                Path(registry_path),
            )


def _partition(
    runner: CooperBenchRunner, registry: Registry | RegistryError, key: str
) -> _Partition:
    """The partition `key` names; a Failure (never retried: retrying cannot fix a key or the
    registry) when it names no pair, no arm or an experiment the registry does not hold,
    or the registry (loaded once per step) did not load."""
    try:
        arm, pair_key = split_partition_key(key)
        pair = parse_pair_key(pair_key)
        if isinstance(registry, RegistryError):
            raise registry
        experiment = registry.experiment_of(arm)
    except (PairKeyError, ArmKeyError, UnknownSettingError, RegistryError) as exc:
        raise dg.Failure(description=f"{key}: {exc}", allow_retries=False) from None
    # an imported pair-run may be of a task the configured dataset lacks: kept, flagged
    in_dataset = task_in_dataset(runner.dataset.root, pair)
    return _Partition(
        key,
        arm,
        experiment,
        pair,
        get_setting(arm.setting),
        runner.pair_dir(pair, arm),
        in_dataset,
    )


def _batch_failure(failures: dict[str, Exception], total: int) -> Exception:
    """One exception for a batch: retryable while any partition failed on infrastructure
    with attempts left, else a Failure listing every failed partition and why."""
    if len(failures) == 1 and total == 1:
        return next(iter(failures.values()))
    reasons = {key: str(getattr(exc, "description", None) or exc) for key, exc in failures.items()}
    lines = "\n".join(f"{key}: {reason}" for key, reason in reasons.items())
    summary = f"{len(failures)} of {total} partitions failed"
    stops = any(config_error_cause(reason) for reason in reasons.values())
    if not stops and any(isinstance(exc, InfrastructureFailure) for exc in failures.values()):
        return InfrastructureFailure(f"{summary}; retrying those:\n{lines}")
    return dg.Failure(
        description=f"{summary}:\n{lines}",
        allow_retries=False,
        metadata={"failed_partitions": dg.MetadataValue.json(reasons)},
    )


def _arms(keys: list[str]) -> list[Arm]:
    arms = []
    for key in keys:
        try:
            arms.append(split_partition_key(key)[0])
        except (ArmKeyError, UnknownSettingError):
            continue  # reported when the partition itself runs
    return sorted(set(arms))


def _tag_run(
    context: dg.AssetExecutionContext, registry: Registry | RegistryError, keys: list[str]
) -> None:
    """Tag the run with what it runs (experiment, agent, model, setting, repeat), so the Runs
    page tells experiments apart whichever way the run was launched."""
    arms = _arms(keys)
    if not arms or isinstance(registry, RegistryError):
        return
    found = [registry.find(name) for name in dict.fromkeys(a.experiment for a in arms)]
    tags = run_tags(arms, [e for e in found if e is not None])
    if any(context.run.tags.get(k) != v for k, v in tags.items()):
        context.instance.add_run_tags(context.run.run_id, tags)


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
    experiments: ExperimentRegistry,
    duckdb: PlatformDuckDB,
) -> Iterator[dg.MaterializeResult]:
    """One row per agent of one pair in one setting, from upstream's result.json.

    Runs the pair through the real `cooperbench run` unless a final result exists:
    a result is final unless an agent hit an infrastructure error. Infrastructure
    failures are retried (3 attempts, exponential backoff with jitter); each attempt
    is a row of `run_attempts` and its files are kept under `<logs>/_attempts/`.

    Partitions are arm × pair: an arm is one experiment in one setting at one repeat
    (`oracle/solo`, `nano/coop-comm/r2`); the experiment's agent and model come from the
    registry (experiments.yaml). Imported experiments are only ingested, never run.

    A run may carry a range of partitions (backfills take up to 25 per run, one arm
    at a time): they run one after another, each is recorded and materialized as soon as
    it finishes, a retry reruns only those that failed, and the ones that never succeed
    end up failed on their own.
    """
    tag_current_process(context)
    with cancellation_ends_the_step(context):
        db_path = duckdb.path
        keys = list(context.partition_keys)
        try:  # once per step, not per partition: every partition asks it
            registry: Registry | RegistryError = experiments.load()
        except RegistryError as exc:
            registry = exc  # each partition fails with it, as its own bad input
        _tag_run(context, registry, keys)
        problem = preflight.patterns_problem(runner.failure_patterns_file)
        if problem:  # every pair-run would fail the same way: run none
            raise dg.Failure(description=f"{CONFIG_ERROR_PREFIX} {problem}", allow_retries=False)
        patterns = runner.failure_patterns()
        # a retry of the step reruns only what the earlier attempts did not record
        done = (
            set(materialized_by_run(context.instance, context.run.run_id))
            if context.retry_number
            else set()
        )
        todo = [key for key in keys if key not in done]
        known = _Known.read(db_path, todo, experiments.path)
        # One line per step, not per pair: every event costs the SQLite event log ~10 ms.
        if todo:
            span = todo[0] if len(todo) == 1 else f"{todo[0]} … {todo[-1]}"
            context.log.info(f"{len(todo)} pair-run(s), one after another: {span}")
        failures: dict[str, Exception] = {}
        recorded: dict[str, dict] = {}
        for i, key in enumerate(todo):
            try:
                recorded[key] = _materialize_partition(
                    context, runner, registry, db_path, key, config.force, patterns, known
                )
            except (InfrastructureFailure, dg.Failure) as exc:
                failures[key] = exc
                cause = config_error_cause(str(getattr(exc, "description", None) or exc))
                if cause:  # the rest would fail the same way: stop here
                    for rest in todo[i + 1 :]:
                        failures[rest] = dg.Failure(f"{cause} (not run: stopped after {key})")
                    break
                continue
            if len(keys) > 1:
                context.log_event(
                    dg.AssetMaterialization(RUN_RESULTS, partition=key, metadata=recorded[key])
                )
        attempted = len(failures) + sum(bool(metadata["ran"]) for metadata in recorded.values())
        if attempted:
            context.log_event(
                dg.AssetMaterialization("run_attempts", metadata={"attempts_recorded": attempted})
            )
        if failures:
            raise _batch_failure(failures, len(keys))
        if len(keys) == 1 and recorded:
            yield dg.MaterializeResult(metadata=recorded[keys[0]])
