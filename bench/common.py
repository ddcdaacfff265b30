"""Shared by the benchmark scripts: timing, and synthetic experiments in upstream's layout."""

import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cb_assets.dataset import Pair
from cb_assets.synthetic import agent_block, write_result

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


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen]:
    """A loopback redis-server of the benchmark's own."""
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}"
    for _ in range(100):
        try:
            redis.from_url(url).ping()
            return url, proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def instance_home(path: Path) -> Path:
    """A Dagster home like the project's (same queue and pools), storing under `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {path}/storage\n"
        "concurrency:\n  runs:\n    max_concurrent_runs: 8\n"
        "  pools:\n    default_limit: 4\n    granularity: op\n"
        "telemetry:\n  enabled: false\n"
    )
    return path
