import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from cb_assets.defs.storage.duckdb_access import StorageLockTimeout
from cb_assets.defs.storage.sql import query

HOLD = """
import sys, time
from pathlib import Path
from cb_assets.defs.storage import duckdb_access
with duckdb_access.connect(Path(sys.argv[1])) as conn:
    conn.execute("insert into t values (99)")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _writer_holding(tmp_path: Path, seconds: int) -> tuple[Path, subprocess.Popen]:
    """A database of 5 rows, and a process that has inserted a sixth and holds the write
    lock for `seconds`."""
    db = tmp_path / "platform.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table t as select range as x from range(5)")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding"
    return db, holder


def test_sql_waits_for_a_writer_and_sees_its_committed_row(tmp_path: Path) -> None:
    db, holder = _writer_holding(tmp_path, 2)
    frame = query(db, "select count(*) as n from t")
    assert holder.wait(timeout=30) == 0
    assert frame["n"].iloc[0] == 6  # read after the writer closed, never a torn copy


def test_sql_gives_up_on_a_lock_held_too_long_naming_it(tmp_path: Path) -> None:
    db, holder = _writer_holding(tmp_path, 60)
    try:
        with pytest.raises(StorageLockTimeout, match="lock"):
            query(db, "select count(*) as n from t", lock_wait_seconds=1)
    finally:
        holder.kill()
        holder.wait()


def test_sql_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the main job first"):
        query(tmp_path / "none.duckdb", "select 1")
