"""Tick time of the `new_results` sensor over a large logs tree.

    uv run python -m bench.sensor_tick [--trees 30000] [--repeat 7]

Builds N result trees in upstream's layout, then times real sensor evaluations
(build_sensor_context on an ephemeral instance) with 0 and with 100 new files.
`bench.scale` times the same ticks over its 20 imported experiments (`tick_times`).
"""

import argparse
import tempfile
import time
from pathlib import Path

import dagster as dg

from bench.common import median_seconds, synthetic_pairs, write_experiment
from cb_assets.defs.benchmark.resources import BenchmarkDataset
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.defs.runs.sensors import new_results


def tick_times(
    logs: Path, registry: Path, pair_keys: list[str], experiment: str, repeat: int, offset: int
) -> tuple[float, float, float]:
    """(first tick, median tick with 0 new files, median tick with 100 new files) of
    `new_results` over `logs`, for the experiments of `registry`; the new files are pairs of
    `experiment` numbered from `offset` (the caller removes them if it wants)."""
    runner = CooperBenchRunner(dataset=BenchmarkDataset(dataset_dir=str(logs)), logs_dir=str(logs))
    experiments = ExperimentRegistry(path=str(registry))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("pairs", pair_keys)
        state = {"cursor": None}

        def tick():
            with dg.build_sensor_context(
                instance=instance,
                cursor=state["cursor"],
                resources={"runner": runner, "experiments": experiments},
            ) as context:
                result = new_results(context)
                state["cursor"] = context.cursor
                return result

        time.sleep(2.1)  # past the settle time
        first = median_seconds(tick, 1)
        while not isinstance(tick(), dg.SkipReason):  # drain: 100 requests per tick
            pass
        idle = median_seconds(tick, repeat)
        batch = [0]

        def tick_with_100_new():
            batch[0] += 1
            extra = synthetic_pairs(34, offset=offset + batch[0] * 100)
            instance.add_dynamic_partitions("pairs", [p.key for p in extra])
            write_experiment(logs, experiment, extra)  # 102 new files
            time.sleep(2.1)
            start = time.perf_counter()
            result = tick()
            elapsed = time.perf_counter() - start
            assert len(result.run_requests) == 100, len(result.run_requests)
            tick()  # the 2 left over
            return elapsed

        busy = sorted(tick_with_100_new() for _ in range(repeat))[repeat // 2]
    return first, idle, busy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        pairs = synthetic_pairs(args.trees // 3)
        started = time.perf_counter()
        written = write_experiment(logs, "bench", pairs)
        print(f"wrote {written} result trees in {time.perf_counter() - started:.1f}s")
        registry = Path(tmp) / "experiments.yaml"  # the sensor scans registered experiments
        registry.write_text("experiments:\n  - {name: bench, agent: oracle, model: oracle}\n")
        first, idle, busy = tick_times(
            logs, registry, [p.key for p in pairs], "bench", args.repeat, args.trees
        )
    print(f"sensor tick over {written} existing result files:")
    print(f"  first tick (all new, capped at 100 requests): {first * 1000:7.1f} ms")
    print(f"  0 new files   (median of {args.repeat}): {idle * 1000:7.1f} ms")
    print(f"  100 new files (median of {args.repeat}): {busy * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
