"""Shared by the benchmark scripts: timing, and synthetic experiments in upstream's layout."""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cb_assets.bottle.services import start_redis
from cb_assets.config import PROJECT_ROOT, instance_yaml
from cb_assets.shared.dataset import Pair
from cb_assets_tests.support.synthetic import agent_block, make_subset_dataset, write_result

SETTINGS = (("solo", "solo"), ("coop-comm", "coop"), ("coop-nocomm", "coop"))


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_pairs(n: int, offset: int = 0) -> list[Pair]:
    """n distinct pairs spread over repos and tasks like the real benchmark."""
    return [
        Pair(
            f"repo{(i + offset) % 12}_task",
            1000 + (i + offset) // 40,
            1 + (i + offset) % 40,
            41 + (i + offset) % 7,
        )
        for i in range(n)
    ]


def write_experiment(logs: Path, experiment: str, pairs: list[Pair]) -> int:
    """Three settings of every pair; returns the number of result trees written."""
    for pair in pairs:
        for setting, upstream in SETTINGS:
            agents = [agent_block(cost=0.1 * (pair.feature_a % 5))] * (
                1 if upstream == "solo" else 2
            )
            write_result(
                logs,
                f"{experiment}-{setting}",
                pair,
                upstream,
                agents=agents,
                messages=2 if setting == "coop-comm" else 0,
            )
    return len(pairs) * len(SETTINGS)


def private_dir(path: Path) -> Path:
    """A folder only this user can use (the fork server's socket must live in one)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def platform_env(tmp: Path, dataset: Path, redis_url: str, **extra_env: str) -> dict[str, str]:
    """The environment of a platform on a fresh instance and data folder under `tmp`."""
    return {
        **os.environ,
        "CB_DATASET_DIR": str(dataset),
        "CB_SUBSET": "bench",
        "CB_DATA_DIR": str(tmp / "platform"),
        "CB_REDIS_URL": redis_url,
        "CB_FORKSERVER_SOCKET": str(private_dir(tmp / "fork") / "fork.sock"),
        "DAGSTER_HOME": extra_env.get("DAGSTER_HOME") or str(instance_home(tmp / "dagster")),
        **extra_env,
    }


def run_main_job(
    tmp: Path,
    dataset: Path,
    redis_url: str,
    concurrency: int,
    cwd: Path | None = None,
    **extra_env: str,
) -> tuple[str, float]:
    """`cb-assets materialize` (run from `cwd`) on a fresh instance and data folder under
    `tmp`: its output and its wall time."""
    env = platform_env(tmp, dataset, redis_url, **extra_env)
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cb_assets.cli",
            "materialize",
            "--images",
            "no",
            "--concurrency",
            str(concurrency),
        ],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout, time.perf_counter() - start


def partition_phase(stdout: str) -> tuple[int, int, float]:
    """(materialized, total, seconds) from the main job's summary line."""
    done = re.search(r"(\d+)/(\d+) partitions materialized in ([\d.]+)s", stdout)
    return int(done.group(1)), int(done.group(2)), float(done.group(3))


def instance_home(path: Path) -> Path:
    """A Dagster home like the project's (its run launcher, queue and pools), storing under
    `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(instance_yaml(path))
    return path


def add_platform_args(parser: argparse.ArgumentParser, pairs: int = 100) -> None:
    parser.add_argument("--pairs", type=int, default=pairs)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--dataset", type=Path, default=PROJECT_ROOT.parent / "shared" / "cooperbench-dataset"
    )


@contextmanager
def bench_platform(args: argparse.Namespace) -> Iterator[tuple[Path, Path, str]]:
    """A temp folder, a `bench` subset of the first `--pairs` pairs, and a Redis URL."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = make_subset_dataset(args.dataset, tmp / "dataset", args.pairs, name="bench")
        redis = start_redis(tmp)
        redis_url = redis.address
        try:
            yield tmp, dataset, redis_url
        finally:
            redis.stop()
