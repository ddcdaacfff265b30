"""Open the platform's DuckDB file from many processes without failing on its lock.

DuckDB lets one process write a file at a time (and read-only openers must wait
for a writer too). Writes here are short, so waiting with jittered backoff is
enough to serialize concurrent runs without errors or lost rows.
"""

import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

LOCK_WAIT_SECONDS = 300.0


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "resource temporarily unavailable" in text


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.005  # writers hold the file for tens of milliseconds: poll briskly
    while True:
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, 0.1)
    try:
        yield conn
    finally:
        conn.close()


def table_exists(conn: duckdb.DuckDBPyConnection, table: str, schema: str = "main") -> bool:
    # fetchall: DuckDB refuses other work on a connection with an unfinished result
    rows = conn.execute(
        "select 1 from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows)


def insert_by_name(
    conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, schema: str = "main"
) -> None:
    """Append `frame` by column name; create the table, or add the columns a newer platform
    version added, so an older DuckDB file never strands an upgrade."""
    conn.register("_cb_frame", frame)
    try:
        target = f"{schema}.{table}"
        if not table_exists(conn, table, schema):
            conn.execute(f"create table {target} as select * from _cb_frame").fetchall()
            return
        have = {row[0] for row in conn.execute(f"describe {target}").fetchall()}
        for name, sql_type, *_ in conn.execute("describe select * from _cb_frame").fetchall():
            if name not in have:
                conn.execute(f'alter table {target} add column "{name}" {sql_type}').fetchall()
        conn.execute(f"insert into {target} by name select * from _cb_frame").fetchall()
    finally:
        conn.unregister("_cb_frame")


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    where: Mapping[str, object],
    frame: pd.DataFrame,
    schema: str = "main",
) -> None:
    """Replace the rows matching `where` (column = value, and-ed) by `frame`, atomically:
    a process killed half-way leaves the old rows, never none."""
    conn.begin()
    try:
        if table_exists(conn, table, schema):
            clause = " and ".join(f'"{column}" = ?' for column in where)
            conn.execute(
                f"delete from {schema}.{table} where {clause}", list(where.values())
            ).fetchall()
        insert_by_name(conn, table, frame, schema)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
