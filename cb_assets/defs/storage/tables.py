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


def _no_run_results() -> pd.DataFrame:
    return pd.DataFrame(columns=list(RUN_RESULT_DTYPES)).astype(RUN_RESULT_DTYPES)


def read_run_results(db_path: Path) -> pd.DataFrame:
    frame = read_table(db_path, "run_results")
    return _no_run_results() if frame is None else frame


def read_tables(
    db_path: Path, tables: tuple[str, ...], experiments: list[str] | None
) -> dict[str, pd.DataFrame | None]:
    """Each table whole, or only the rows of `experiments` when it has an `experiment`
    column and they are given; None for a table not written yet. One connection for all:
    a refresh of one experiment reads its rows, not the other experiments'. run_results
    is never None (an empty frame of its columns, as read_run_results gives)."""
    out: dict[str, pd.DataFrame | None] = dict.fromkeys(tables)
    if db_path.exists():
        with duckdb_access.connect(db_path, read_only=True) as conn:
            columns: dict[str, set[str]] = {}
            for table, column in conn.execute(
                "select table_name, column_name from information_schema.columns "
                "where table_schema = ?",
                [DUCKDB_SCHEMA],
            ).fetchall():
                columns.setdefault(table, set()).add(column)
            for table in tables:
                if table not in columns:
                    continue
                sql = f"select * from {DUCKDB_SCHEMA}.{table}"
                if experiments is not None and "experiment" in columns[table]:
                    sql += " where experiment in (select unnest(?::varchar[]))"
                    out[table] = conn.execute(sql, [experiments]).fetchdf()
                else:
                    out[table] = conn.execute(sql).fetchdf()
    if "run_results" in out and out["run_results"] is None:
        out["run_results"] = _no_run_results()
    return out
