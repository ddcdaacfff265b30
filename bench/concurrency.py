"""Concurrency efficiency: an agent that takes T seconds per pair, at concurrency C.

    uv run python -m bench.concurrency [--pairs 100] [--seconds 2] [--concurrency 4]

Measures the partition phase of `cb-assets materialize` (3 x pairs partitions) against the
ideal 3 * pairs * T / C. Target: within 1.15 x the ideal.
"""

import argparse

from bench.common import add_platform_args, bench_platform, partition_phase, run_main_job


def main() -> None:
    parser = argparse.ArgumentParser()
    add_platform_args(parser)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with bench_platform(args) as (tmp, dataset, redis_url):
        out, _ = run_main_job(
            tmp, dataset, redis_url, args.concurrency, CB_OFFLINE_AGENT_DELAY=str(args.seconds)
        )
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
