"""Read the platform's DuckDB tables for the report and analysis assets."""

from pathlib import Path

import duckdb
import pandas as pd

from cb_assets.config import DUCKDB_SCHEMA
from cb_assets.defs.runs.results import RUN_RESULT_DTYPES
from cb_assets.defs.storage import duckdb_access


def read_table(db_path: Path, table: str) -> pd.DataFrame | None:
    """The whole table, or None when it has not been written yet."""
    if not db_path.exists():
        return None
    with duckdb_access.connect(db_path, read_only=True) as conn:
        try:
            return conn.execute(f"select * from {DUCKDB_SCHEMA}.{table}").fetchdf()
        except duckdb.CatalogException:
            return None


def read_run_results(db_path: Path) -> pd.DataFrame:
    frame = read_table(db_path, "run_results")
    if frame is None:
        return pd.DataFrame(columns=list(RUN_RESULT_DTYPES)).astype(RUN_RESULT_DTYPES)
    return frame
