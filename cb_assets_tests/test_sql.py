import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from cb_assets.sql import query

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("insert into t values (99)")
print("holding", flush=True)
time.sleep(60)
"""


def test_sql_never_waits_long_for_a_writer(tmp_path: Path) -> None:
    db = tmp_path / "platform.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table t as select range as x from range(5)")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        frame, how = query(db, "select count(*) as n from t", lock_wait_seconds=1)
        assert how == "snapshot" and time.monotonic() - started < 20
        assert frame["n"].iloc[0] >= 5
    finally:
        holder.kill()
        holder.wait()
    frame, how = query(db, "select count(*) as n from t")
    assert how == "read-only"


def test_sql_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run the main job first"):
        query(tmp_path / "none.duckdb", "select 1")
