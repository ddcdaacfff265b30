"""`cb-assets`: the project's command line.

`cb-assets materialize` is the main job: it materializes the whole asset graph on
the local persistent Dagster instance (DAGSTER_HOME = the project root) and the
DuckDB file under `data/`, with one Dagster run per pair-run partition so each
keeps its own status, retries and backfill history.
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

from cb_assets import config
from cb_assets.settings import SETTING_NAMES


def _use_project_instance() -> None:
    os.environ.setdefault("DAGSTER_HOME", str(config.PROJECT_ROOT))
    os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
    os.chdir(config.PROJECT_ROOT)  # dagster.yaml's storage paths are relative to it


_worker_state: dict = {}
# The event log keeps everything; the terminal shows one line per partition.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _materialize_partition(key: str) -> tuple[str, bool, str]:
    """In a worker process: one Dagster run for one `pair|setting` partition."""
    import dagster as dg

    from cb_assets.definitions import defs

    if not _worker_state:
        _worker_state["defs"] = defs()
        _worker_state["instance"] = dg.DagsterInstance.get()
    d, instance = _worker_state["defs"], _worker_state["instance"]
    result = dg.materialize(
        list(d.assets),
        selection=["run_results"],
        partition_key=key,
        instance=instance,
        resources=d.resources,
        raise_on_error=False,
        run_config=QUIET,
        tags={"cb_assets/launched_by": "cb-assets"},
    )
    if result.success:
        meta = result.asset_materializations_for_node("run_results")[0].metadata
        return key, True, "ran" if meta["ran"].value else "ingested"
    failures = [
        e.event_specific_data.error.message.strip().splitlines()[0]
        for e in result.all_events
        if e.is_step_failure
    ]
    return key, False, failures[-1] if failures else "failed"


def materialize(args: argparse.Namespace) -> int:
    _use_project_instance()
    import dagster as dg

    from cb_assets.dataset import DatasetError
    from cb_assets.definitions import defs
    from cb_assets.defs.runs.resources import RedisUnavailableError
    from cb_assets.runner.forkserver import stop_server

    d = defs()
    instance = dg.DagsterInstance.get()
    assets, resources = list(d.assets), d.resources
    runner = resources["runner"]
    print(f"cb-assets: instance {instance.root_directory}, DuckDB {config.duckdb_path()}")
    settings = args.settings or list(SETTING_NAMES)
    try:  # the two mistakes a user makes first, each reported in one line
        pairs = [p.key for p in runner.dataset.pairs()]
        if "coop-comm" in settings:
            runner.check_redis()
    except (DatasetError, RedisUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    first = dg.materialize(
        assets,
        selection=["benchmark_pairs"],
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET,
    )
    if not first.success:
        for event in first.all_events:
            if event.is_step_failure:
                print(f"error: {event.event_specific_data.error.message.strip()}", file=sys.stderr)
        return 2
    if args.pairs:
        pairs = pairs[: args.pairs]
    keys = [str(dg.MultiPartitionKey({"pair": p, "setting": s})) for p in pairs for s in settings]
    print(
        f"cb-assets: {len(keys)} run_results partitions ({len(pairs)} pairs x "
        f"{len(settings)} settings), agent {runner.agent}, {args.concurrency} at a time"
    )

    started, failed = time.monotonic(), []
    with ProcessPoolExecutor(max_workers=args.concurrency, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_materialize_partition, key) for key in keys]
        for done, future in enumerate(as_completed(futures), 1):
            key, ok, note = future.result()
            if not ok:
                failed.append(key)
            print(f"[{done}/{len(keys)}] {'ok  ' if ok else 'FAIL'} {key} {note}", flush=True)
    elapsed = time.monotonic() - started
    stop_server(runner.fork_socket())

    final = dg.materialize(
        assets,
        selection=["cost_manifest", "verification_report"],
        instance=instance,
        resources=resources,
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
        f"{elapsed:.1f}s; {len(failed)} failed"
    )
    print(f"cb-assets: manifest {config.data_dir() / 'results-manifest.json'}")
    print(f"cb-assets: report   {config.data_dir() / 'verification-report.md'} (score {score})")
    for key in failed[:20]:
        print(f"  failed: {key}", file=sys.stderr)
    return 0 if final.success and not failed else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cb-assets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "materialize", help="run the whole experiment, then manifest and report"
    )
    run.add_argument(
        "--settings",
        nargs="+",
        choices=SETTING_NAMES,
        help="only these settings (default: all three)",
    )
    run.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="only the first N pairs of the subset (a smoke run); default: all",
    )
    run.add_argument(
        "--concurrency", type=int, default=4, help="partitions materialized at once (default: 4)"
    )
    args = parser.parse_args(argv)
    sys.exit(materialize(args))


if __name__ == "__main__":
    main()
