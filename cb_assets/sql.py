"""Query the platform's DuckDB file while runs may be writing to it.

A read-only connection waits briefly for a writer's lock; if the file stays
locked, the query runs on a snapshot copy instead, so it never blocks the runs
and never waits long.
"""

import shutil
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from cb_assets import duckdb_access


def query(db_path: Path, sql: str, lock_wait_seconds: float = 5.0) -> tuple[pd.DataFrame, str]:
    """The result and how it was read: `read-only` or `snapshot`."""
    if not db_path.exists():
        raise FileNotFoundError(f"no DuckDB file at {db_path}: run the main job first")
    try:
        with duckdb_access.connect(db_path, read_only=True, wait_seconds=lock_wait_seconds) as c:
            return c.execute(sql).fetchdf(), "read-only"
    except duckdb.IOException:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / db_path.name
        shutil.copy2(db_path, copy)
        wal = db_path.with_name(db_path.name + ".wal")
        if wal.exists():
            shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        with duckdb.connect(str(copy), read_only=True) as conn:
            return conn.execute(sql).fetchdf(), "snapshot"
