"""The storage access path: no committed write lost, clear errors when the lock stays taken.

The loss is reproduced deterministically with two real processes: A commits a row and
sleeps before closing; B reads the database header while A still holds the file, and its
DuckDB lock call is held back by `strace` fault injection until after A has closed (and
checkpointed). With plain `duckdb.connect`, B's own checkpoint then erases A's row; with
`duckdb_access.connect` B cannot even open the file before A is done.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from cb_assets.defs.storage import duckdb_access
from cb_assets_tests.support.services import require

OPEN = """
import os, sys, time
from contextlib import contextmanager
from pathlib import Path
import duckdb
from cb_assets.defs.storage import duckdb_access

@contextmanager
def opened(path):
    if os.environ["OPENER"] == "raw":
        conn = duckdb.connect(path)
        yield conn
        conn.close()
    else:
        with duckdb_access.connect(Path(path)) as conn:
            yield conn
"""

WRITER_A = (
    OPEN
    + """
with opened(sys.argv[1]) as conn:
    conn.execute("insert into t values ('A')")
    print("inserted", flush=True)
    time.sleep(float(sys.argv[2]))
print("closed", flush=True)
"""
)

WRITER_B = (
    OPEN
    + """
print(os.getpid(), flush=True)
sys.stdin.readline()
with opened(sys.argv[1]) as conn:
    conn.execute("insert into t values ('B')")
print("closed", flush=True)
"""
)


def _two_writers(db: Path, opener: str) -> list[str]:
    """Run the interleaving; return the rows the file holds afterwards."""
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table t (v varchar)")
    env = {**os.environ, "OPENER": opener}
    hold = 6.0
    a = subprocess.Popen(
        [sys.executable, "-c", WRITER_A, str(db), str(hold)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert a.stdout.readline().strip() == "inserted"
    started = time.monotonic()
    b = subprocess.Popen(
        [sys.executable, "-c", WRITER_B, str(db)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    b_pid = int(b.stdout.readline())
    # Hold B's first fcntl (DuckDB's file lock, taken after it read the header) until A
    # has closed: delay it by longer than A still sleeps.
    tracer = subprocess.Popen(
        ["strace", "-f", "-p", str(b_pid), "-e", "trace=fcntl",
         "-e", f"inject=fcntl:delay_enter={int(hold * 1_000_000)}:when=1",
         "-o", str(db.with_suffix(".strace"))],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert "attached" in tracer.stderr.readline()
    assert time.monotonic() - started < hold - 2, "machine too slow for the interleaving"
    b.stdin.write("go\n")
    b.stdin.flush()
    assert b.wait(timeout=60) == 0 and a.wait(timeout=60) == 0
    tracer.terminate()
    tracer.wait(timeout=10)
    with duckdb.connect(str(db), read_only=True) as conn:
        return sorted(v for (v,) in conn.execute("select v from t").fetchall())


@pytest.fixture
def strace() -> None:
    require(shutil.which("strace") is not None, "strace is not installed (apt-get install strace)")


def test_plain_duckdb_loses_a_committed_write_in_this_interleaving(tmp_path, strace) -> None:
    """The reproduction is real: without the sidecar lock, A's committed row is gone."""
    assert _two_writers(tmp_path / "raw.duckdb", "raw") == ["B"]


def test_the_platform_connection_loses_nothing_in_the_same_interleaving(tmp_path, strace) -> None:
    assert _two_writers(tmp_path / "platform.duckdb", "platform") == ["A", "B"]


def test_a_writer_waits_for_a_reader_and_then_writes(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    with duckdb_access.connect(db) as conn:
        conn.execute("create table t (v integer)")
    order = []

    def write() -> None:
        with duckdb_access.connect(db) as conn:
            order.append("write")
            conn.execute("insert into t values (1)")

    with duckdb_access.connect(db, read_only=True):
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        order.append("read done")
    writer.join(timeout=10)
    assert order == ["read done", "write"]


def test_a_lock_held_too_long_is_an_error_that_says_lock(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    with duckdb_access.connect(db) as conn:
        conn.execute("create table t (v integer)")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from cb_assets.defs.storage import duckdb_access\n"
         "with duckdb_access.connect(Path(sys.argv[1])):\n"
         "    print('held', flush=True); time.sleep(30)", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb_access.StorageLockTimeout) as caught:
            with duckdb_access.connect(db, wait_seconds=0.5):
                pass
        message = str(caught.value)
        assert "lock" in message and str(db) in message and f"pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    db = tmp_path / "x.duckdb"
    duckdb_access.lock_path(db).symlink_to(victim)
    with pytest.raises(OSError, match="symlink"):
        with duckdb_access.connect(db):
            pass
    assert victim.read_text() == "keep me"


def test_a_transaction_commits_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    with duckdb_access.connect(db) as conn:
        conn.execute("create table t (v integer)")
        with pytest.raises(duckdb.Error):
            with duckdb_access.transaction(conn):
                conn.execute("insert into t values (1)")
                conn.execute("insert into t values ('not a number')")
        assert conn.execute("select count(*) from t").fetchone() == (0,)
