from pathlib import Path

import dagster as dg

from cb_assets import config


class ReportFiles(dg.ConfigurableResource):
    """Where the human-readable outputs go: the results manifest, the verification report
    and their figures (by default the data folder: `data/`, or CB_DATA_DIR)."""

    directory: str

    @property
    def manifest(self) -> Path:
        return Path(self.directory) / "results-manifest.json"

    @property
    def report(self) -> Path:
        return Path(self.directory) / "verification-report.md"

    @property
    def figures(self) -> Path:
        return Path(self.directory) / "figures"


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"report_files": ReportFiles(directory=str(config.data_dir()))})
