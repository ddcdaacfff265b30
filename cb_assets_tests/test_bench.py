"""The benchmarks run in short mode, so they cannot rot (no timing is asserted here)."""

import subprocess
import sys

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.services import require, shared_dataset_dir


def test_benchmarks_run_in_short_mode(redis_url) -> None:
    require((shared_dataset_dir() / "subsets" / "lite.json").is_file(), "no dataset")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--short"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for figure in (
        "ratio platform / bare",
        "ratio measured / ideal",
        "speed ratio ingest / bare",
        "manifest:",
        "0 new files",
        "platform  committed",
        "ratio postgres / sqlite",
        "PartitionHealthQuery, median of",
        "experiment_comparison asset",
        "verification_report:",
        "tick, 0 new files",
    ):
        assert figure in proc.stdout, figure
