"""The one way the platform opens its DuckDB file: no committed write is ever lost.

DuckDB lets one process write a file at a time, and 2.0.1 has a worse trap: a
process opening the file reads the database header *before* it takes DuckDB's own
file lock and never reads it again. An opener that read the header just before
another process's close-time checkpoint builds on the older state, and its own
checkpoint then erases the other process's committed writes (about 1 write in
1,000–2,000 under four busy processes, measured). So every open-to-close here is
serialized by an `flock` on a sidecar file, `<database>.lock` — shared for
readers, exclusive for writers — taken *before* DuckDB opens the file: the header
any opener reads is then always the latest. `bench/duckdb_stress.py` counts
committed against present rows; `cb_assets_tests/test_duckdb_access.py`
reproduces the loss deterministically without the sidecar lock.

Anything that opens the file without this module (an ad-hoc `duckdb` shell that
writes) bypasses the lock: open the file read-only there, or use `cb-assets sql`.
"""

import errno
import fcntl
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from cb_assets.defs.storage import file_locks

LOCK_WAIT_SECONDS = 600.0
LOCK_SUFFIX = ".lock"
_held = threading.local()


class StorageLockTimeout(TimeoutError):
    """The DuckDB file's lock stayed taken for longer than a writer is willing to wait."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def _open_lock_file(lock: Path, read_only: bool) -> int:
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(lock, flags | os.O_RDWR, 0o644)
    except PermissionError:
        if not read_only:
            raise
        return os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # another user's file
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{lock} is a symlink; refusing to use it as a lock") from None
        raise


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" (last writer: {text})" if text else ""


@contextmanager
def _file_lock(path: Path, read_only: bool, wait_seconds: float) -> Iterator[None]:
    if getattr(_held, "depth", 0):
        # flock on a second descriptor of the same file would wait for ourselves
        raise RuntimeError(f"nested connection to {path}: reuse the open one")
    lock = lock_path(path)
    fd = _open_lock_file(lock, read_only)
    try:
        mode = fcntl.LOCK_SH if read_only else fcntl.LOCK_EX
        if not file_locks.acquire(fd, mode, wait_seconds, max_delay=0.05):
            raise StorageLockTimeout(
                f"waited {wait_seconds:.0f}s for the lock on {path} ({lock}) and "
                f"another process still holds it{_holder(fd)}; nothing was written"
            )
        if not read_only:
            stamp = f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, stamp, 0)
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
    finally:
        os.close(fd)  # releases the flock


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "resource temporarily unavailable" in text


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to `path`, opened and closed under the sidecar lock.

    Writers wait (jittered polling, up to `wait_seconds`) for each other and for
    readers; a lock held longer raises StorageLockTimeout naming the file. DuckDB's
    own lock is still retried, for openers outside this module."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"no DuckDB file at {path}")
    deadline = time.monotonic() + wait_seconds
    with _file_lock(path, read_only, wait_seconds):
        while True:
            try:
                conn = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05 * random.uniform(0.5, 1.5))
        try:
            yield conn
        finally:
            conn.close()


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Everything inside commits together or not at all (a killed process, a full disk)."""
    conn.begin()
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


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
    """Replace the rows matching `where` (column = value, and-ed) by `frame`. Call it inside
    `transaction`, so a process killed half-way leaves the old rows, never none."""
    if table_exists(conn, table, schema):
        clause = " and ".join(f'"{column}" = ?' for column in where)
        conn.execute(
            f"delete from {schema}.{table} where {clause}", list(where.values())
        ).fetchall()
    insert_by_name(conn, table, frame, schema)
