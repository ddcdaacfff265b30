"""Orchestration overhead: the platform against the bare upstream CLI, same pair-runs.

    uv run python -m bench.overhead [--pairs 100] [--concurrency 4]

Bare: `cooperbench run -s <subset>` once per setting with the `oracle` agent (through the
wrapper that registers it). Platform: `cb-assets materialize` of the same pairs, one Dagster
run per partition, on a fresh instance and DuckDB file. Target: platform <= 1.5 x bare.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import instance_home, start_redis
from cb_assets.config import PROJECT_ROOT
from cb_assets.synthetic import make_subset_dataset

SETTING_FLAGS = {
    "solo": ["--setting", "solo"],
    "coop-comm": ["--setting", "coop"],
    "coop-nocomm": ["--setting", "coop", "--no-messaging"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--dataset", type=Path, default=PROJECT_ROOT.parent / "shared" / "cooperbench-dataset"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = make_subset_dataset(args.dataset, tmp / "dataset", args.pairs, name="bench")
        redis_url, redis_proc = start_redis(tmp)
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "CB_DATASET_DIR": str(dataset)}
        try:
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
                        str(args.concurrency),
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
            bare = time.perf_counter() - start

            platform_env = {
                **env,
                "CB_DATA_DIR": str(tmp / "platform"),
                "CB_SUBSET": "bench",
                "CB_REDIS_URL": redis_url,
                "CB_FORKSERVER_SOCKET": str(tmp / "fork.sock"),
                "DAGSTER_HOME": str(instance_home(tmp / "dagster")),
            }
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
                    str(args.concurrency),
                ],
                env=platform_env,
                check=True,
                capture_output=True,
                text=True,
            )
            platform = time.perf_counter() - start
        finally:
            redis_proc.terminate()
    done = re.search(r"(\d+)/(\d+) partitions materialized in ([\d.]+)s", out.stdout)
    print(
        f"orchestration overhead, {args.pairs} pairs x 3 settings = {3 * args.pairs} "
        f"pair-runs, oracle agent, concurrency {args.concurrency}:"
    )
    print(f"  bare upstream CLI (3 invocations): {bare:7.1f} s")
    print(
        f"  platform main job (whole command): {platform:7.1f} s "
        f"({done.group(1)}/{done.group(2)} partitions; partition phase {done.group(3)} s)"
    )
    print(f"  ratio platform / bare: {platform / bare:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
