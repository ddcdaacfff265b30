from pathlib import Path

import dagster as dg

from cb_assets import config
from cb_assets.shared.experiments import Experiment, Registry, RegistryError, load_registry
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

    def default(self) -> Experiment:
        registry = self.load()
        return (
            registry.get(self.default_experiment) if self.default_experiment else (registry.default)
        )

    def experiment_of(self, arm: Arm) -> Experiment:
        """The experiment `arm` belongs to; an error naming the registry when it has no such
        experiment, setting or repeat (a partition left over from an edited registry)."""
        experiment = self.get(arm.experiment)
        if arm.setting not in experiment.settings and not experiment.imported:
            raise RegistryError(
                f"{self.path}: experiment {experiment.name!r} has no setting {arm.setting!r} "
                f"(it has {', '.join(experiment.settings)})"
            )
        if arm.repeat > experiment.repeats and not experiment.imported:
            raise RegistryError(
                f"{self.path}: experiment {experiment.name!r} has {experiment.repeats} "
                f"repeat(s), not {arm.repeat}"
            )
        return experiment


def default_registry() -> ExperimentRegistry:
    return ExperimentRegistry(
        path=str(config.experiments_file()), default_experiment=config.experiment()
    )
