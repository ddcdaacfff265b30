"""Read the platform's DuckDB tables for the report assets."""

import duckdb
import pandas as pd

from cb_assets.config import DUCKDB_SCHEMA
from cb_assets.defs.runs.results import RUN_RESULT_DTYPES
from cb_assets.defs.storage.resources import PlatformDuckDB


def read_table(db: PlatformDuckDB, table: str) -> pd.DataFrame | None:
    """The whole table, or None when it has not been written yet."""
    if not db.path.exists():
        return None
    with db.get_connection(read_only=True) as conn:
        try:
            return conn.execute(f"select * from {DUCKDB_SCHEMA}.{table}").fetchdf()
        except duckdb.CatalogException:
            return None


def read_run_results(db: PlatformDuckDB) -> pd.DataFrame:
    frame = read_table(db, "run_results")
    if frame is None:
        return pd.DataFrame(columns=list(RUN_RESULT_DTYPES)).astype(RUN_RESULT_DTYPES)
    return frame
