import dagster as dg
import pandas as pd

from cb_assets.defs.benchmark.resources import BenchmarkDataset
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.images.partitions import task_key, task_partitions
from cb_assets.defs.runs.partitions import arm_partitions, pair_partitions, register
from cb_assets.shared.dataset import DatasetError
from cb_assets.shared.experiments import RegistryError


@dg.asset(group_name="benchmark", kinds={"duckdb"})
def benchmark_pairs(
    context: dg.AssetExecutionContext, dataset: BenchmarkDataset, experiments: ExperimentRegistry
) -> pd.DataFrame:
    """The feature pairs of the configured subset (lite: 100 pairs over 26 tasks).

    Registers every pair as a partition of `run_results`, every arm (experiment, setting,
    repeat) of the experiment registry as the other dimension, and every task as a
    partition of `task_images`, so the partition grids always match the dataset on disk.
    """
    try:
        pairs = dataset.pairs()
        registry = experiments.load()
    except (DatasetError, RegistryError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    frame = pd.DataFrame(
        {
            "pair": [p.key for p in pairs],
            "repo": [p.repo for p in pairs],
            "task_id": [p.task_id for p in pairs],
            "feature_a": [p.feature_a for p in pairs],
            "feature_b": [p.feature_b for p in pairs],
            "image": [p.image(dataset.image_namespace) for p in pairs],
            "subset": dataset.subset,
        }
    )
    new_keys = register(context.instance, pair_partitions.name, list(frame["pair"]))
    arms = [arm.key for experiment in registry.experiments for arm in experiment.arms()]
    new_arms = register(context.instance, arm_partitions.name, arms)
    register(
        context.instance, task_partitions.name, sorted({task_key(p.repo, p.task_id) for p in pairs})
    )
    context.add_output_metadata(
        {
            "subset": dataset.subset,
            "dataset_dir": dg.MetadataValue.path(str(dataset.root)),
            "pairs": len(frame),
            "tasks": int(frame[["repo", "task_id"]].drop_duplicates().shape[0]),
            "repos": int(frame["repo"].nunique()),
            "new_partitions": len(new_keys),
            "experiments": ", ".join(registry.names),
            "new_arms": len(new_arms),
        }
    )
    return frame
