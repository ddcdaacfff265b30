"""Ingestion and aggregates at scale: 30,000 result trees into DuckDB, then manifest and report.

    uv run python -m bench.ingest [--trees 30000]

Targets (issue 7, raised by issue 15): ingestion at no less than 0.8 × the speed of a bare
json.load loop over the same files, peak memory under 1 GB; manifest and report in under 2 s
each.
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import duckdb

from bench.common import synthetic_pairs, write_experiment
from cb_assets.defs.reports.manifest import build_manifest
from cb_assets.defs.reports.verification import ReportInputs, evaluate_truths, render_report
from cb_assets.defs.runs.ingest import ingest_tree
from cb_assets.shared.settings import DEFAULT_SETTINGS


def bare_json_loop(logs: Path) -> int:
    """What any loader must do at least: read and parse every file ingestion reads."""
    n = 0
    for path in logs.rglob("*.json"):
        if path.name in ("result.json", "conversation.json"):
            with open(path, "rb") as f:
                json.load(f)
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trees", type=int, default=30_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs, db = Path(tmp) / "logs", Path(tmp) / "bench.duckdb"
        pairs = synthetic_pairs(args.trees // 3)
        written = write_experiment(logs, "bench", pairs)
        bare_json_loop(logs)  # warm the page cache for both contenders alike

        start = time.perf_counter()
        files = bare_json_loop(logs)
        bare = time.perf_counter() - start
        start = time.perf_counter()
        rows, problems = ingest_tree(logs, ["bench"], db)
        ingest = time.perf_counter() - start
        peak_mb = (
            max(
                resource.getrusage(who).ru_maxrss
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
            )
            / 1024
        )  # parsing workers too
        assert not problems and rows == len(pairs) * 5

        with duckdb.connect(str(db), read_only=True) as conn:
            results = conn.execute("select * from run_results").fetchdf()
        start = time.perf_counter()
        manifest = build_manifest(results, settings=DEFAULT_SETTINGS, repeats=1)
        manifest_s = time.perf_counter() - start

        start = time.perf_counter()
        results["file_ok"] = True
        inputs = ReportInputs(
            phase="bench",
            subset="bench",
            experiment="bench",
            settings=DEFAULT_SETTINGS,
            repeats=1,
            expected_pairs=[p.key for p in pairs],
            results=results,
            manifest=manifest,
        )
        render_report(inputs, evaluate_truths(inputs))
        report_s = time.perf_counter() - start

    print(f"ingestion of {written} result trees ({files} JSON files, {rows} rows):")
    print(f"  bare json.load loop: {bare:6.2f} s  ({files / bare:8.0f} files/s)")
    print(f"  ingest into DuckDB:  {ingest:6.2f} s  ({files / ingest:8.0f} files/s)")
    print(f"  speed ratio ingest / bare: {bare / ingest:.2f}  (target >= 0.80)")
    print(f"  peak memory: {peak_mb:.0f} MB  (target < 1024 MB)")
    print(f"aggregates over {len(results)} rows ({written} pair-runs):")
    print(f"  manifest: {manifest_s:.3f} s  (target < 2 s)")
    print(f"  report:   {report_s:.3f} s  (target < 2 s; file re-checks not included)")


if __name__ == "__main__":
    main()
