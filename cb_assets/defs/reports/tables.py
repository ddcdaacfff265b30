"""Read the platform's DuckDB tables for the report assets."""

import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from cb_assets.config import DUCKDB_SCHEMA
from cb_assets.results import RUN_RESULT_DTYPES


def read_table(db: DuckDBResource, table: str) -> pd.DataFrame | None:
    """The whole table, or None when it has not been written yet."""
    with db.get_connection() as conn:
        try:
            return conn.execute(f"select * from {DUCKDB_SCHEMA}.{table}").fetchdf()
        except duckdb.CatalogException:
            return None


def read_run_results(db: DuckDBResource) -> pd.DataFrame:
    frame = read_table(db, "run_results")
    if frame is None:
        return pd.DataFrame(columns=list(RUN_RESULT_DTYPES)).astype(RUN_RESULT_DTYPES)
    return frame
