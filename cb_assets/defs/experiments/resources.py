from pathlib import Path

import dagster as dg

from cb_assets import config
from cb_assets.shared.experiments import Experiment, Registry, load_registry
from cb_assets.shared.partition_keys import Arm


class ExperimentRegistry(dg.ConfigurableResource):
    """The experiment registry file (experiments.yaml) and the experiment runs default to."""

    path: str
    default_experiment: str | None = None
    """The experiment a run without `--experiment` runs; the registry's first when unset."""

    def load(self) -> Registry:
        return load_registry(Path(self.path))

    def get(self, name: str) -> Experiment:
        return self.load().get(name)

    def experiment_of(self, arm: Arm) -> Experiment:
        """The experiment `arm` belongs to (see Registry.experiment_of); reads the file, so a
        caller with many arms loads the registry once and asks it instead."""
        return self.load().experiment_of(arm)


def default_registry() -> ExperimentRegistry:
    return ExperimentRegistry(
        path=str(config.experiments_file()), default_experiment=config.experiment()
    )
