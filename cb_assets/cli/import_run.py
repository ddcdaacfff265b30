"""`cb-assets import RUN_DIR --experiment NAME --setting S [--repeat K]`: bring in a run
directory the upstream runner wrote elsewhere, then ingest it as that experiment's
partitions (never rerun): its results, its evaluations, its manifest and report."""

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cb_assets import config
from cb_assets.cli.launch import materialize_partitions
from cb_assets.cli.materialize import finish
from cb_assets.cli.project import open_project
from cb_assets.defs.experiments.importing import (
    ImportPlan,
    RunConfig,
    RunImportError,
    execute_import,
    experiment_from_config,
    plan_import,
    read_run_config,
)
from cb_assets.defs.runs.partitions import arm_partitions, pair_partitions, register
from cb_assets.shared.dataset import DatasetError, dataset_tasks
from cb_assets.shared.experiments import (
    Experiment,
    RegistryError,
    append_experiment,
    load_registry,
)
from cb_assets.shared.partition_keys import Arm, ArmKeyError, partition_key


def import_run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir).expanduser().resolve()
    try:
        arm = Arm(args.experiment, args.setting, args.repeat)
        registry = load_registry(config.experiments_file())
        run_config = read_run_config(run_dir)
        known = registry.find(arm.experiment)
        if registry.clash(arm.experiment):
            raise RegistryError(
                f"{registry.path}: experiment {registry.clash(arm.experiment)!r} differs from "
                f"{arm.experiment!r} only in case: pick another name, or that one"
            )
        if known is not None:
            check_imported_into(known, run_config, registry.path)
        dataset = dataset_tasks(config.dataset_dir())
        plan = plan_import(run_dir, arm, config.logs_dir(), dataset)
        outcome = execute_import(plan, replace=args.replace)  # refuses before writing
        if known is None:  # registered once its files are in: a refused import adds nothing
            experiment = experiment_from_config(arm.experiment, run_config, arm.setting)
            stamp = datetime.now(UTC).date().isoformat()
            append_experiment(
                registry.path, experiment, f"registered by cb-assets import from {run_dir} "
                f"on {stamp}"
            )  # fmt: skip
            print(
                f"cb-assets: registered experiment {arm.experiment} ({experiment.agent}, "
                f"{experiment.model}) in {registry.path}"
            )
    except (ArmKeyError, RegistryError, RunImportError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in outcome.problems:
        print(f"  skipped: {problem}", file=sys.stderr)
    print(
        f"cb-assets: {run_dir} → {plan.run_root}: {outcome.imported} pair folders imported, "
        f"{outcome.unchanged} unchanged, {outcome.skipped} skipped"
        + (
            f"; {len(outcome.out_of_dataset)} of tasks not in the dataset "
            f"(kept, flagged in_dataset = false): {', '.join(outcome.out_of_dataset)}"
            if outcome.out_of_dataset
            else ""
        )
    )
    pairs = [
        planned.pair.key
        for planned in plan.pairs
        if planned.destination in set(outcome.destinations)
    ]
    return _ingest(arm, pairs, plan, outcome.skipped)


def check_imported_into(experiment: Experiment, run: RunConfig, registry: Path) -> None:
    """An import goes into an imported experiment of the same agent and model: never into
    one the platform runs (its failed pair-runs would be rerun with its agent), never mixing
    models under one name."""
    where = f"{registry}: experiments.{experiment.name}"
    if not experiment.imported:
        raise RegistryError(
            f"{where}: source is {experiment.source!r}, so the platform runs it; import into "
            "an experiment of its own (a name not in the registry registers one)"
        )
    if (experiment.agent, experiment.model) != (run.agent_framework, run.model):
        raise RegistryError(
            f"{where} is {experiment.agent} / {experiment.model} but {run.path} says "
            f"{run.agent_framework} / {run.model}: import it under another name"
        )


def _ingest(arm: Arm, pairs: list[str], plan: ImportPlan, skipped: int) -> int:
    with open_project([], start_runners=False) as project:
        if project is None:
            return 2
        register(project.instance, pair_partitions.name, pairs)  # out-of-dataset ones too
        register(project.instance, arm_partitions.name, [arm.key])
        keys = [partition_key(arm.key, pair) for pair in pairs]
        tags = {"experiment": arm.experiment, "cb_assets/imported_from": str(plan.run_dir)}
        print(f"cb-assets: ingesting {len(keys)} pair-runs of {arm.key} (never rerun)")
        started = time.monotonic()
        failed = materialize_partitions(project.location, project.instance, keys, 4, tags=tags)
        evaluated = [
            partition_key(arm.key, p.pair.key)
            for p in plan.pairs
            if p.pair.key in pairs and "eval.json" in p.files
        ]
        evaluated = [k for k in evaluated if k not in failed]
        if evaluated:
            print(f"cb-assets: ingesting {len(evaluated)} evaluations (eval.json)")
            failed += materialize_partitions(
                project.location, project.instance, evaluated, 4, "eval_results", tags=tags
            )
        code = finish(project, arm.experiment, started, keys, failed, analysis=bool(evaluated))
        return code or (1 if skipped else 0)
