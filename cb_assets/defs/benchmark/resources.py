from pathlib import Path

import dagster as dg

from cb_assets import config
from cb_assets.shared.dataset import DEFAULT_IMAGE_NAMESPACE, Pair, load_pairs


class BenchmarkDataset(dg.ConfigurableResource):
    """Where the CooperBench dataset lives and which subset the experiment runs."""

    dataset_dir: str
    subset: str = "lite"
    image_namespace: str = DEFAULT_IMAGE_NAMESPACE

    @property
    def root(self) -> Path:
        return Path(self.dataset_dir)

    def pairs(self) -> list[Pair]:
        return load_pairs(self.root, self.subset)


def default_dataset() -> BenchmarkDataset:
    return BenchmarkDataset(dataset_dir=str(config.dataset_dir()), subset=config.subset())
