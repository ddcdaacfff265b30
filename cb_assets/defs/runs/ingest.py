"""Load a whole logs tree of existing results into DuckDB in one pass.

The same parsing as `run_results` (`results.result_rows`), on every core, written
in one transaction: for bringing in thousands of runs made elsewhere at once, where
even batched Dagster runs (one event per partition) would be the slow part. Rows of the pair-runs it
loads replace earlier rows of the same pair-runs.
"""

import os
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from cb_assets.defs.runs.result_scan import iter_result_files, pair_of
from cb_assets.defs.runs.results import ResultFileError, result_rows, rows_to_frame
from cb_assets.defs.storage import duckdb_access
from cb_assets.shared.partition_keys import Arm

PARALLEL_ABOVE = 2000  # below this many files, starting worker processes costs more


def _parse(logs_root: Path, found: list[tuple[Path, Arm]]) -> tuple[pd.DataFrame, list[str]]:
    rows, problems = [], []
    for pair_dir, arm in found:
        pair = pair_of(pair_dir)
        if pair is None:
            continue
        try:
            rows += result_rows(pair_dir, pair, arm, ran=False, logs_root=logs_root)
        except ResultFileError as exc:
            problems.append(str(exc))
    return rows_to_frame(rows), problems


def ingest_tree(
    logs_root: Path, experiments: Collection[str], db_path: Path
) -> tuple[int, list[str]]:
    """Rows written, and one line per result file that could not be read."""
    found = [(d, arm) for _, _, d, arm in iter_result_files(logs_root, experiments)]
    workers = os.cpu_count() or 1
    if len(found) < PARALLEL_ABOVE or workers == 1:
        parts = [_parse(logs_root, found)]
    else:
        chunks = [found[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_parse, [logs_root] * workers, chunks))
    frame = pd.concat([f for f, _ in parts], ignore_index=True)  # noqa: F841  (DuckDB reads it)
    problems = [p for _, found_problems in parts for p in found_problems]
    with duckdb_access.connect(db_path) as conn, duckdb_access.transaction(conn):
        if duckdb_access.table_exists(conn, "run_results"):
            conn.execute(
                "delete from run_results where (experiment, setting, repeat, pair) in "
                "(select experiment, setting, repeat, pair from frame)"
            )
            conn.execute("insert into run_results by name select * from frame")
        else:
            conn.execute("create table run_results as select * from frame")
    return len(frame), problems
