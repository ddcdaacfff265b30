"""Orchestration overhead: the platform against the bare upstream CLI, same pair-runs.

    uv run python -m bench.overhead [--pairs 100] [--concurrency 4]

Bare: `cooperbench run -s <subset>` once per setting with the `oracle` agent (through the
wrapper that registers it). Platform: `cb-assets materialize` of the same pairs (several
partitions per Dagster run, each reporting its own status), on a fresh instance and DuckDB
file. Target: platform <= 1.5 x bare.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import add_platform_args, bench_platform, partition_phase, run_main_job

SETTING_FLAGS = {
    "solo": ["--setting", "solo"],
    "coop-comm": ["--setting", "coop"],
    "coop-nocomm": ["--setting", "coop", "--no-messaging"],
}


def bare_upstream(tmp: Path, dataset: Path, redis_url: str, concurrency: int) -> float:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "CB_DATASET_DIR": str(dataset)}
    start = time.perf_counter()
    for setting, flags in SETTING_FLAGS.items():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cb_assets.agents.cli",
                "run",
                "-n",
                f"bare-{setting}",
                "-s",
                "bench",
                *flags,
                "-a",
                "oracle",
                "-m",
                "oracle",
                "--no-auto-eval",
                "-c",
                str(concurrency),
                "--log-dir",
                str(tmp / "bare"),
                "--dataset-dir",
                str(dataset),
                "--redis",
                redis_url,
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    add_platform_args(parser)
    args = parser.parse_args()
    with bench_platform(args) as (tmp, dataset, redis_url):
        bare = bare_upstream(tmp, dataset, redis_url, args.concurrency)
        out, platform = run_main_job(tmp, dataset, redis_url, args.concurrency)
    ok, total, phase = partition_phase(out)
    print(
        f"orchestration overhead, {args.pairs} pairs x 3 settings = {3 * args.pairs} "
        f"pair-runs, oracle agent, concurrency {args.concurrency}:"
    )
    print(f"  bare upstream CLI (3 invocations): {bare:7.1f} s")
    print(
        f"  platform main job (whole command): {platform:7.1f} s "
        f"({ok}/{total} partitions; partition phase {phase:.1f} s)"
    )
    print(f"  ratio platform / bare: {platform / bare:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
