"""Concurrency efficiency: an agent that takes T seconds per pair, at concurrency C.

    uv run python -m bench.concurrency [--pairs 100] [--seconds 2] [--concurrency 4]

Measures the partition phase of `cb-assets materialize` (3 x pairs partitions) against the
ideal 3 * pairs * T / C. Target: within 1.15 x the ideal.
"""

import argparse
import tempfile
from pathlib import Path

from bench.common import partition_phase, run_main_job
from cb_assets import local_redis
from cb_assets.config import PROJECT_ROOT
from cb_assets.synthetic import make_subset_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--dataset", type=Path, default=PROJECT_ROOT.parent / "shared" / "cooperbench-dataset"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        dataset = make_subset_dataset(args.dataset, tmp / "dataset", args.pairs, name="bench")
        redis_url, redis_proc = local_redis.start(tmp)
        try:
            out, _ = run_main_job(
                tmp, dataset, redis_url, args.concurrency, CB_OFFLINE_AGENT_DELAY=str(args.seconds)
            )
        finally:
            redis_proc.terminate()
    ok, n, measured = partition_phase(out)
    ideal = n * args.seconds / args.concurrency
    print(
        f"concurrency efficiency, {n} pair-runs of {args.seconds} s at concurrency "
        f"{args.concurrency}:"
    )
    print(f"  ideal {ideal:.1f} s, measured {measured:.1f} s ({ok}/{n} partitions)")
    print(f"  ratio measured / ideal: {measured / ideal:.2f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
