"""`cb-assets`: the project's command line.

`cb-assets materialize` is the main job: it materializes the whole asset graph on
the local persistent Dagster instance (DAGSTER_HOME = the project root, or
`<CB_DATA_DIR>/dagster-home` when CB_DATA_DIR is set) and the DuckDB file under `data/`.
Pair-run partitions go several to a Dagster run (a range of pairs of one setting), and
each keeps its own status, retries and backfill history.
`cb-assets backfill` reruns exactly the partitions that failed or are missing.
"""

import argparse
import contextlib
import os
import socket
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from cb_assets import config
from cb_assets.settings import SETTING_NAMES

_worker_state: dict = {}
# The event log keeps everything; the terminal shows one line per partition.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _use_project_instance() -> None:
    """DAGSTER_HOME as `config.dagster_home` decides: DAGSTER_HOME, else under CB_DATA_DIR
    when that is set, else the project root."""
    os.environ.setdefault("DAGSTER_HOME", str(config.prepare_dagster_home()))
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
    os.chdir(config.PROJECT_ROOT)  # the project's dagster.yaml's paths are relative to it


def _note(asset: str, metadata: dict) -> str:
    if asset == "eval_results":
        how = "ran" if metadata["ran"].value else "ingested"
        return f"{how}: {metadata['outcome'].value} (merge {metadata['merge'].value})"
    if asset == "task_images":
        return f"{'pulled' if metadata['pulled'].value else 'present'}: {metadata['probe'].value}"
    how = "ran" if metadata["ran"].value else "ingested"
    return f"{how}: {metadata['classification'].value}"


def _job_for(asset: str):
    """The job that materializes `asset`, built once per worker (building it from the
    definitions costs a few tenths of a second, a run's worth)."""
    import dagster as dg

    jobs = _worker_state.setdefault("jobs", {})
    if asset not in jobs:
        d = _worker_state["defs"]
        name = f"cb_assets_{asset}"
        jobs[asset] = dg.Definitions(
            assets=d.assets,
            resources=d.resources,
            jobs=[dg.define_asset_job(name, selection=[asset])],
        ).resolve_job_def(name)
    return jobs[asset]


def _materialize_batch(asset: str, keys: list[str]) -> tuple[list[str], dict[str, str]]:
    """In a worker process: one Dagster run for `keys` (one partition, or a range of them).
    Returns the keys and, for each that did not materialize, why."""
    import dagster as dg

    from cb_assets.backfill import materialized_by_run
    from cb_assets.batches import range_tags

    # The instance is opened with the first batch: only then has the main process created
    # its storage (workers creating a fresh SQLite storage at once race on its schema).
    if "instance" not in _worker_state:
        _worker_state["instance"] = dg.DagsterInstance.get()
    instance = _worker_state["instance"]
    result = _job_for(asset).execute_in_process(
        partition_key=keys[0] if len(keys) == 1 else None,
        instance=instance,
        raise_on_error=False,
        run_config=QUIET,
        tags={
            "cb_assets/launched_by": "cb-assets",
            "cb_assets/host": socket.gethostname(),
            **(range_tags(keys[0], keys[-1]) if len(keys) > 1 else {}),
        },
    )
    done = set(materialized_by_run(instance, result.run_id, dg.AssetKey(asset)))
    failed = [k for k in keys if k not in done]
    if not failed:
        return keys, {}
    failures = [e.event_specific_data for e in result.all_events if e.is_step_failure]
    if not failures:
        return keys, dict.fromkeys(failed, "failed")
    last = failures[-1]
    per_key = (
        last.user_failure_data.metadata.get("failed_partitions") if last.user_failure_data else None
    )
    first_line = last.error.message.strip().splitlines()[0]
    return keys, {k: (per_key.value.get(k, first_line) if per_key else first_line) for k in failed}


class _Progress:
    """Prints a line per partition as the instance records it: materializations as they land
    in the event log (a batch reports each of its partitions as it finishes), failures when
    their batch returns."""

    def __init__(self, instance, asset: str, keys: list[str]) -> None:
        import dagster as dg

        self._instance, self._asset_key = instance, dg.AssetKey(asset)
        self._asset, self._wanted, self._total = asset, set(keys), len(keys)
        self._seen: set[str] = set()
        self.failed: list[str] = []
        latest = instance.fetch_materializations(self._asset_key, limit=1, ascending=False)
        self._cursor = latest.records[0].storage_id if latest.records else None

    def _line(self, ok: bool, key: str, note: str) -> None:
        self._seen.add(key)
        done = len(self._seen)
        print(f"[{done}/{self._total}] {'ok  ' if ok else 'FAIL'} {key} {note}", flush=True)

    def poll(self) -> None:
        import dagster as dg

        while True:
            page = self._instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=self._asset_key, after_storage_id=self._cursor),
                limit=500,
                ascending=True,
            )
            for record in page.records:
                self._cursor = record.storage_id
                event = record.asset_materialization
                if event and event.partition in self._wanted and event.partition not in self._seen:
                    self._line(True, event.partition, _note(self._asset, event.metadata))
            if not page.has_more:
                return

    def batch_done(self, keys: list[str], failures: dict[str, str]) -> None:
        self.poll()
        for key in keys:
            if key in failures and key not in self._seen:
                self.failed.append(key)
                self._line(False, key, failures[key])


def _start_workers(concurrency: int) -> ProcessPoolExecutor:
    """The cooperbench fork server and the worker pool, started so their start-ups overlap.

    The fork server (an ~8 s import of cooperbench) starts first, in the background. The
    workers are forked from this process once it has imported the definitions, so they
    share that import instead of repeating it; nothing here has started a thread yet,
    which is what makes forking safe (a pool that forks starts all its workers before its
    own management thread).
    """
    _use_project_instance()
    if config.launcher() == "forkserver":
        from cb_assets.runner.forkserver import socket_path_for, start_server

        # a failure here is reported by the first pair-run, which tries again and waits
        with contextlib.suppress(Exception):
            start_server(socket_path_for(config.logs_dir()), config.logs_dir(), wait=False)
    from cb_assets.definitions import defs

    _worker_state["defs"] = defs()  # imports every asset module; the workers inherit both
    pool = ProcessPoolExecutor(max_workers=concurrency, mp_context=get_context("fork"))
    pool.submit(int)  # starts every worker (a forking pool starts them all at once)
    return pool


def _run_partitions(
    pool: ProcessPoolExecutor,
    instance,
    keys: list[str],
    concurrency: int,
    asset: str = "run_results",
) -> list[str]:
    """Materialize `keys` from a pool of worker processes; print a line each; return failures.

    run_results partitions go in batches (one Dagster run per range of pairs of one setting,
    see cb_assets.batches); the other assets' partitions go one per run."""
    from cb_assets.batches import BatchQueue, segments
    from cb_assets.failures import config_error_cause
    from cb_assets.settings import SETTING_NAMES

    if asset == "run_results":
        pairs = instance.get_dynamic_partitions("pairs")
        queue = BatchQueue(segments(keys, pairs, SETTING_NAMES), concurrency)
    else:
        queue = BatchQueue([[k] for k in keys], concurrency, cap=1)
    progress = _Progress(instance, asset, keys)
    running = set()
    stop: str | None = None  # a config error: every further pair-run would fail the same way
    while True:
        while stop is None and len(running) < concurrency and (batch := queue.next()):
            running.add(pool.submit(_materialize_batch, asset, batch))
        if not running:
            break
        finished, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
        progress.poll()
        for future in finished:
            done, failures = future.result()
            progress.batch_done(done, failures)
            stop = stop or next(filter(None, map(config_error_cause, failures.values())), None)
    if stop is not None:
        print(
            f"error: {stop} — stopped launching after it ({queue.remaining()} partitions not "
            "run); fix the configuration, then `cb-assets backfill --failed --missing --here`",
            file=sys.stderr,
        )
    return progress.failed


def _setup(settings: list[str]):
    """Definitions, instance and the subset's pairs — or one line saying what is wrong."""
    _use_project_instance()
    import dagster as dg

    from cb_assets.dataset import DatasetError
    from cb_assets.definitions import defs
    from cb_assets.defs.runs.liveness import fail_dead_runs
    from cb_assets.defs.runs.resources import RedisUnavailableError

    d = defs()
    instance = dg.DagsterInstance.get()
    runner = d.resources["runner"]
    print(f"cb-assets: instance {instance.root_directory}, DuckDB {config.duckdb_path()}")
    for run_id in fail_dead_runs(instance):
        print(f"cb-assets: run {run_id} had died without reporting; marked it failed")
    try:  # the two mistakes a user makes first, each reported in one line
        pairs = [p.key for p in runner.dataset.pairs()]
        if "coop-comm" in settings:
            runner.check_redis()
    except (DatasetError, RedisUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    first = dg.materialize(
        list(d.assets),
        selection=["benchmark_pairs"],
        instance=instance,
        resources=d.resources,
        raise_on_error=False,
        run_config=QUIET,
    )
    if not first.success:
        for event in first.all_events:
            if event.is_step_failure:
                print(f"error: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
        return None
    return d, instance, pairs


def _finish(
    d, instance, started: float, keys: list[str], failed: list[str], analysis: bool = False
) -> int:
    import dagster as dg

    from cb_assets.defs.reports.assets import REPORT_SELECTION

    final = dg.materialize(
        [*d.assets, *(d.asset_checks or [])],
        selection=REPORT_SELECTION
        | (
            dg.AssetSelection.assets("coordination_deficit")
            if analysis
            else dg.AssetSelection.assets()
        ),
        instance=instance,
        resources=d.resources,
        raise_on_error=False,
        run_config=QUIET,
    )
    score = "unavailable"
    if final.success:
        score = (
            final.asset_materializations_for_node("verification_report")[0].metadata["score"].value
        )
    print(
        f"cb-assets: {len(keys) - len(failed)}/{len(keys)} partitions materialized in "
        f"{time.monotonic() - started:.1f}s; {len(failed)} failed"
    )
    print(f"cb-assets: manifest {config.data_dir() / 'results-manifest.json'}")
    print(f"cb-assets: report   {config.data_dir() / 'verification-report.md'} (score {score})")
    if failed:
        print(
            "cb-assets: rerun the failures with `cb-assets backfill --failed --here`",
            file=sys.stderr,
        )
    return 0 if final.success and not failed else 1


def materialize(args: argparse.Namespace) -> int:
    with _start_workers(args.concurrency) as pool:
        try:
            return _materialize(pool, args)
        finally:
            _stop_fork_server()


def _stop_fork_server() -> None:
    from cb_assets.runner.forkserver import socket_path_for, stop_server

    stop_server(socket_path_for(config.logs_dir()))


def _materialize(pool: ProcessPoolExecutor, args: argparse.Namespace) -> int:
    settings = args.settings or list(SETTING_NAMES)
    setup = _setup(settings)
    if setup is None:
        return 2
    d, instance, pairs = setup

    if args.pairs:
        pairs = pairs[: args.pairs]
    image_failures = _task_images(pool, d, instance, args)
    if image_failures is None:
        return 2
    from cb_assets.batches import partition_key

    keys = [partition_key(p, s) for p in pairs for s in settings]
    print(
        f"cb-assets: {len(keys)} run_results partitions ({len(pairs)} pairs x "
        f"{len(settings)} settings), agent {d.resources['runner'].agent}, "
        f"{args.concurrency} at a time"
    )
    started = time.monotonic()
    failed = _run_partitions(pool, instance, keys, args.concurrency)
    if args.evals:
        done = [k for k in keys if k not in failed]
        print(f"cb-assets: evaluating {len(done)} pair-runs with cooperbench eval")
        failed += _run_partitions(
            pool, instance, done, min(args.concurrency, 2), asset="eval_results"
        )
    return _finish(d, instance, started, keys, failed + image_failures, analysis=args.evals)


def _task_images(
    pool: ProcessPoolExecutor, d, instance, args: argparse.Namespace
) -> list[str] | None:
    """Pull and probe the subset's images when an engine answers (or when asked to)."""
    from cb_assets.images import EngineError

    engine = d.resources["docker_engine"]
    if args.images == "no":
        return []
    try:
        engine.client()
    except EngineError as exc:
        if args.images == "yes":
            print(f"error: {exc}", file=sys.stderr)
            return None
        print(f"cb-assets: task images skipped ({exc}); the report will say NOT CHECKED")
        return []
    tasks = sorted(instance.get_dynamic_partitions("tasks"))
    print(f"cb-assets: {len(tasks)} task_images partitions on {engine.endpoint}")
    return _run_partitions(pool, instance, tasks, min(args.concurrency, 2), asset="task_images")


def backfill(args: argparse.Namespace) -> int:
    from cb_assets.backfill import partitions_needing_runs, submit_backfill

    failed_too, missing_too = args.failed, args.missing
    if not (failed_too or missing_too):
        failed_too = missing_too = True
    settings = args.settings or list(SETTING_NAMES)
    setup = _setup(settings)
    if setup is None:
        return 2
    d, instance, pairs = setup

    from cb_assets.batches import partition_key

    keys = [partition_key(p, s) for p in pairs for s in settings]
    chosen = partitions_needing_runs(instance, keys, failed=failed_too, missing=missing_too)
    what = " and ".join(w for w, on in (("failed", failed_too), ("missing", missing_too)) if on)
    if not chosen:
        print(f"cb-assets: no {what} partitions among {len(keys)}; nothing to backfill")
        return 0
    for key, why in chosen.items():
        print(f"  {why:7} {key}")
    if args.dry_run:
        print(f"cb-assets: {len(chosen)} {what} partitions (dry run: nothing launched)")
        return 0
    if args.here:
        print(
            f"cb-assets: running {len(chosen)} {what} partitions here, {args.concurrency} at a time"
        )
        started = time.monotonic()
        with _start_workers(args.concurrency) as pool:
            try:
                failed = _run_partitions(pool, instance, list(chosen), args.concurrency)
            finally:
                _stop_fork_server()
        return _finish(d, instance, started, list(chosen), failed)
    backfill_id = submit_backfill(
        instance, d, list(chosen), title=f"cb-assets backfill: {what} partitions"
    )
    print(
        f"cb-assets: launched backfill {backfill_id} of {len(chosen)} {what} partitions; "
        "the Dagster daemon runs it (scripts/dev), see Overview > Backfills in the UI"
    )
    return 0


def sql(args: argparse.Namespace) -> int:
    import duckdb

    from cb_assets.duckdb_access import StorageLockTimeout
    from cb_assets.sql import escape_controls, query, render

    try:
        frame = query(config.duckdb_path(), args.query)
    except (FileNotFoundError, duckdb.Error, StorageLockTimeout) as exc:
        # DuckDB's messages quote values and span lines: escape all but the line breaks
        print(f"error: {escape_controls(str(exc), keep=chr(10))}", file=sys.stderr)
        return 2
    if args.csv:
        sys.stdout.write(render(frame, csv=True))
    else:
        print(render(frame))
        print(f"({len(frame)} rows from {config.duckdb_path()})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cb-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("materialize", help="run the experiment, then manifest and report")
    run.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="only the first N pairs of the subset (a smoke run); default: all",
    )
    run.add_argument(
        "--images",
        choices=("auto", "yes", "no"),
        default="auto",
        help="pull and probe the task images: auto (when a Docker engine answers; the "
        "default), yes (fail without one) or no",
    )
    run.add_argument(
        "--evals",
        action="store_true",
        help="also evaluate every pair-run (cooperbench eval, in the task images) and "
        "compute the coordination deficit",
    )

    again = commands.add_parser("backfill", help="rerun failed and/or missing partitions")
    again.add_argument(
        "--failed",
        action="store_true",
        help="partitions whose latest run failed (infra_error included)",
    )
    again.add_argument(
        "--missing", action="store_true", help="partitions never materialized (default: both kinds)"
    )
    again.add_argument(
        "--here",
        action="store_true",
        help="run them now from this process instead of through the daemon",
    )
    again.add_argument("--dry-run", action="store_true", help="only list the partitions")
    for sub in (run, again):
        sub.add_argument(
            "--settings",
            "--setting",
            nargs="+",
            choices=SETTING_NAMES,
            help="only these settings (default: all three)",
        )
        sub.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help="partitions materialized at once (default: 4)",
        )
    ask = commands.add_parser("sql", help="query the DuckDB file, safely while runs write")
    ask.add_argument("query", help='SQL, e.g. "select * from pass_rate_by_setting"')
    ask.add_argument("--csv", action="store_true", help="CSV instead of a table")
    args = parser.parse_args(argv)
    commands_by_name = {"materialize": materialize, "backfill": backfill, "sql": sql}
    if args.command != "sql" and not _preflight():
        sys.exit(2)
    try:
        code = commands_by_name[args.command](args)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _preflight() -> bool:
    """The configuration checked before anything starts: a line per problem; False if any."""
    from cb_assets.preflight import problems

    found = problems()
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return not found


if __name__ == "__main__":
    main()
