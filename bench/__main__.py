"""Every benchmark, one after the other: `uv run python -m bench [--short]`.

`--short` runs each with a small N so CI can run it and it cannot rot; the figures it
prints are for checking the scripts, not for quoting.
"""

import argparse
import subprocess
import sys

FULL = [
    ["bench.overhead", "--pairs", "100"],
    ["bench.concurrency", "--pairs", "100", "--seconds", "2"],
    ["bench.ingest", "--trees", "30000"],
    ["bench.sensor_tick", "--trees", "30000"],
    ["bench.duckdb_stress", "--processes", "4", "--seconds", "240"],
    ["bench.event_log", "--events", "2000"],
    ["bench.replay", "--pairs", "50", "--scale", "100"],
    ["bench.scale", "--experiments", "20", "--pairs", "100", "--trees", "30000"],
]
SHORT = [
    ["bench.overhead", "--pairs", "4"],
    ["bench.concurrency", "--pairs", "4", "--seconds", "0.5"],
    ["bench.ingest", "--trees", "3000"],
    ["bench.sensor_tick", "--trees", "600", "--repeat", "3"],
    ["bench.duckdb_stress", "--processes", "4", "--seconds", "3"],
    ["bench.event_log", "--events", "20"],
    ["bench.replay", *"--pairs 3 --scale 1000 --sources real --paths bare history".split()],
    ["bench.scale", "--short"],
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    failed = 0
    for module, *rest in SHORT if args.short else FULL:
        print(f"\n$ python -m {module} {' '.join(rest)}", flush=True)
        proc = subprocess.run([sys.executable, "-m", module, *rest], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if not line.startswith("20")]
        print("\n".join(lines), flush=True)
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr[-3000:], file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
