"""Load a whole logs tree of existing results into DuckDB in one pass.

The same parsing as `run_results` (`results.result_rows`), on every core, written
in one transaction: for bringing in thousands of runs made elsewhere at once, where
even batched Dagster runs (one event per partition) would be the slow part. Rows of the pair-runs it
loads replace earlier rows of the same pair-runs.

The folders are walked while the workers parse: each chunk of pair folders goes to a worker as
soon as the walk has found it, so the walk costs no wall time of its own on a machine with a
core to spare (0.27 CPU-s of 30,000 trees, once spent with the other core idle).
"""

import itertools
import os
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from cb_assets.defs.runs.result_scan import iter_result_files, pair_of
from cb_assets.defs.runs.results import ResultFileError, result_rows, rows_to_frame
from cb_assets.defs.storage import duckdb_access
from cb_assets.shared.partition_keys import Arm

PARALLEL_ABOVE = 2000  # below this many files, starting worker processes costs more
CHUNK = 500  # pair folders per task handed to a worker: small enough to start parsing early


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


def _chunks(found: Iterator[tuple[Path, Arm]], size: int) -> Iterator[list[tuple[Path, Arm]]]:
    while chunk := list(itertools.islice(found, size)):
        yield chunk


def _parse_all(
    logs_root: Path, experiments: Collection[str]
) -> list[tuple[pd.DataFrame, list[str]]]:
    """(frame, problems) of every chunk, in the order the walk found them."""
    found = ((d, arm) for _, _, d, arm in iter_result_files(logs_root, experiments))
    first = list(itertools.islice(found, PARALLEL_ABOVE))
    workers = os.cpu_count() or 1
    if len(first) < PARALLEL_ABOVE or workers == 1:
        return [_parse(logs_root, first + list(found))]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures: list[Future] = [
            pool.submit(_parse, logs_root, chunk)
            for chunk in _chunks(itertools.chain(first, found), CHUNK)
        ]
        return [f.result() for f in futures]


def ingest_tree(
    logs_root: Path, experiments: Collection[str], db_path: Path
) -> tuple[int, list[str]]:
    """Rows written, and one line per result file that could not be read."""
    parts = _parse_all(logs_root, experiments)
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
