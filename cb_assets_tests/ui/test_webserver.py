"""The Dagster UI as a person sees it: a real dagster-webserver, headless Chromium."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.platform import key
from cb_assets_tests.support.services import require
from cb_assets_tests.support.webserver import graphql
from cb_assets_tests.support.webserver import webserver as webserver_at

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
    "--window-size=1600,1000",
]


def chromium(url: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"chromium-{time.monotonic_ns()}"
    out = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


@pytest.fixture
def webserver(make_platform, tmp_path):
    require(
        shutil.which("chromium") is not None, "chromium is not installed (apt-get install chromium)"
    )
    platform = make_platform(n_pairs=3)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    for setting in ("solo", "coop-comm", "coop-nocomm"):
        platform.materialize(["run_results"], key(pairs[0], setting), raise_on_error=True)
    env = {**os.environ, "DAGSTER_HOME": str(platform.root / "dagster")}
    with webserver_at(env, tmp_path / "webserver.log", 120) as base:
        graphql(base, "mutation { setNuxSeen }")  # the first-visit community dialog
        yield base, pairs


def test_ui_shows_the_assets_and_the_partition_grid(webserver, tmp_path) -> None:
    base, pairs = webserver
    catalog = chromium(f"{base}/assets", tmp_path, "--dump-dom")
    for asset in (
        "benchmark_pairs",
        "run_results",
        "run_attempts",
        "cost_manifest",
        "verification_report",
        "experiment_comparison",
    ):
        assert asset in catalog, f"{asset} missing from the asset catalog"

    grid_url = f"{base}/assets/run_results?view=partitions"
    grid = chromium(grid_url, tmp_path, "--dump-dom")
    # the arm dimension lists every arm of the shipped registry: 3 experiments x 3 settings
    for experiment in ("oracle", "noop", "flaky"):
        for setting in ("solo", "coop-comm", "coop-nocomm"):
            assert f"{experiment}/{setting}" in grid, f"{experiment}/{setting}"
    assert pairs[0].split("-")[-1] in grid  # the pair dimension lists the pairs
    assert "Materialized (3)" in grid and "Missing (24)" in grid  # 9 arms x 3 pairs

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "run_results-partitions.png"
    shot.unlink(missing_ok=True)
    chromium(grid_url, tmp_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
