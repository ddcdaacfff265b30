"""`cb-assets materialize`: the whole experiment, then the manifest and the report."""

import argparse
import sys
import time

import dagster as dg

from cb_assets import config
from cb_assets.cli.launch import materialize_partitions, run_job
from cb_assets.cli.project import Project, open_project, stop_fork_server
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES


def materialize(args: argparse.Namespace) -> int:
    settings = args.settings or list(SETTING_NAMES)
    try:
        with open_project(settings, start_runners=True) as project:
            if project is None:
                return 2
            return _materialize(project, args, settings)
    finally:
        stop_fork_server()


def _materialize(project: Project, args: argparse.Namespace, settings: list[str]) -> int:
    pairs = project.pairs[: args.pairs] if args.pairs else project.pairs
    image_failures = _task_images(project, args)
    if image_failures is None:
        return 2
    keys = [partition_key(p, s) for p in pairs for s in settings]
    print(
        f"cb-assets: {len(keys)} run_results partitions ({len(pairs)} pairs x "
        f"{len(settings)} settings), agent {project.defs.resources['runner'].agent}, "
        f"{args.concurrency} at a time"
    )
    started = time.monotonic()
    failed = materialize_partitions(project.location, project.instance, keys, args.concurrency)
    if args.evals:
        done = [k for k in keys if k not in failed]
        print(f"cb-assets: evaluating {len(done)} pair-runs with cooperbench eval")
        failed += materialize_partitions(
            project.location, project.instance, done, min(args.concurrency, 2), "eval_results"
        )
    return finish(project, started, keys, failed + image_failures, analysis=args.evals)


def _task_images(project: Project, args: argparse.Namespace) -> list[str] | None:
    """Pull and probe the subset's images when an engine answers (or when asked to)."""
    from cb_assets.defs.images.engine import EngineError

    engine = project.defs.resources["docker_engine"]
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
    tasks = sorted(project.instance.get_dynamic_partitions("tasks"))
    print(f"cb-assets: {len(tasks)} task_images partitions on {engine.endpoint}")
    return materialize_partitions(
        project.location, project.instance, tasks, min(args.concurrency, 2), "task_images"
    )


def finish(
    project: Project, started: float, keys: list[str], failed: list[str], analysis: bool = False
) -> int:
    """The manifest and the report (and the analysis), then the summary lines."""
    instance = project.instance
    final = run_job(project.location, instance, "refresh_reports")
    ok = final.status == dg.DagsterRunStatus.SUCCESS
    if analysis:
        ok = (
            run_job(project.location, instance, "analyze_coordination").status
            == (dg.DagsterRunStatus.SUCCESS)
            and ok
        )
    score = "unavailable"
    event = instance.get_latest_materialization_event(dg.AssetKey("verification_report"))
    if event is not None and event.run_id == final.run_id:
        score = event.asset_materialization.metadata["score"].value
    print(
        f"cb-assets: {len(keys) - len(failed)}/{len(keys)} partitions materialized in "
        f"{time.monotonic() - started:.1f}s; {len(failed)} failed"
    )
    print(f"cb-assets: manifest {config.data_dir() / 'results-manifest.json'}")
    print(f"cb-assets: report   {config.data_dir() / 'verification-report.md'} (score {score})")
    if not ok:
        print(
            f"cb-assets: the report run {final.run_id} did not succeed; see it in the UI",
            file=sys.stderr,
        )
    if failed:
        print(
            "cb-assets: rerun the failures with `cb-assets backfill --failed --here`",
            file=sys.stderr,
        )
    return 0 if ok and not failed else 1
