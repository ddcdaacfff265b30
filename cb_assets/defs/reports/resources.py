from pathlib import Path

import dagster as dg

from cb_assets import config


class ReportFiles(dg.ConfigurableResource):
    """Where the human-readable outputs go (by default the data folder: `data/`, or
    CB_DATA_DIR): per experiment, `experiments/<name>/` holds its results manifest, its
    verification report and their figures; `comparison/` holds what compares them."""

    directory: str

    def experiment_dir(self, experiment: str) -> Path:
        return Path(self.directory) / "experiments" / experiment

    def manifest(self, experiment: str) -> Path:
        return self.experiment_dir(experiment) / "results-manifest.json"

    def report(self, experiment: str) -> Path:
        return self.experiment_dir(experiment) / "verification-report.md"

    def figures(self, experiment: str) -> Path:
        return self.experiment_dir(experiment) / "figures"

    @property
    def comparison(self) -> Path:
        return Path(self.directory) / "comparison"


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"report_files": ReportFiles(directory=str(config.data_dir()))})
