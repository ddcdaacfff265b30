"""`cb-assets materialize`: one whole experiment, then its manifest and its report."""

import argparse
import sys
import time

import dagster as dg

from cb_assets import config
from cb_assets.cli.launch import expected_durations, materialize_partitions, run_job
from cb_assets.cli.project import Project, open_project, stop_fork_server
from cb_assets.shared.experiments import Experiment, load_registry
from cb_assets.shared.partition_keys import partition_key


def chosen_experiment(args: argparse.Namespace) -> tuple[Experiment, list[str]]:
    """The experiment a command works on, and its settings the command narrows to."""
    registry = load_registry(config.experiments_file())
    experiment = registry.get(args.experiment or config.experiment() or registry.default.name)
    wanted = args.settings or list(experiment.settings)
    unknown = [s for s in wanted if s not in experiment.settings]
    if unknown:
        raise config.ConfigError(
            f"{registry.path}: experiment {experiment.name!r} has no setting "
            f"{', '.join(unknown)} (it has {', '.join(experiment.settings)})"
        )
    return experiment, wanted


def experiment_keys(experiment: Experiment, settings: list[str], pairs: list[str]) -> list[str]:
    """The run_results partitions of `experiment` in `settings` over `pairs`, arm by arm."""
    return [partition_key(arm.key, p) for arm in experiment.arms(settings) for p in pairs]


def materialize(args: argparse.Namespace) -> int:
    experiment, settings = chosen_experiment(args)
    if experiment.imported:
        print(
            f"cb-assets: experiment {experiment.name} is imported (source: import): nothing to "
            "run; its manifest and report are refreshed (bring in more with `cb-assets import`)"
        )
        with open_project([], start_runners=False) as project:
            return (
                2 if project is None else finish(project, experiment.name, time.monotonic(), [], [])
            )
    try:
        with open_project(settings, start_runners=True) as project:
            if project is None:
                return 2
            return _materialize(project, args, experiment, settings)
    finally:
        stop_fork_server()


def _materialize(
    project: Project, args: argparse.Namespace, experiment: Experiment, settings: list[str]
) -> int:
    pairs = project.pairs[: args.pairs] if args.pairs else project.pairs
    image_failures = _task_images(project, args)
    if image_failures is None:
        return 2
    keys = experiment_keys(experiment, settings, pairs)
    print(
        f"cb-assets: experiment {experiment.name} ({experiment.agent}, {experiment.model}): "
        f"{len(keys)} run_results partitions ({len(pairs)} pairs x {len(settings)} settings"
        f" x {experiment.repeats} repeats), {args.concurrency} at a time"
    )
    started = time.monotonic()
    tags = {"experiment": experiment.name}
    failed = materialize_partitions(
        project.location,
        project.instance,
        keys,
        args.concurrency,
        tags=tags,
        expected=expected_durations(project.instance, keys),
    )
    if args.evals:
        done = [k for k in keys if k not in failed]
        print(f"cb-assets: evaluating {len(done)} pair-runs with cooperbench eval")
        failed += materialize_partitions(
            project.location,
            project.instance,
            done,
            min(args.concurrency, 2),
            "eval_results",
            tags=tags,
        )
    return finish(
        project, experiment.name, started, keys, failed + image_failures, analysis=args.evals
    )


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
    project: Project,
    experiment: str,
    started: float,
    keys: list[str],
    failed: list[str],
    analysis: bool = False,
) -> int:
    """The experiment's manifest and report (and the analysis), then the summary lines."""
    instance = project.instance
    # the run tag narrows the refresh to this experiment: the others' files stay as they are
    final = run_job(project.location, instance, "refresh_reports", {"experiment": experiment})
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
    files = project.defs.resources["report_files"]
    print(f"cb-assets: manifest {files.manifest(experiment)}")
    print(f"cb-assets: report   {files.report(experiment)} (score {score})")
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
