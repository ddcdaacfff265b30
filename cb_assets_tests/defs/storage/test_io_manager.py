"""The IO manager writes through the storage access path: it waits for the lock, then writes."""

import subprocess
import sys
import time

HOLD_LOCK = """
import sys, time
from pathlib import Path
from cb_assets.defs.storage import duckdb_access
with duckdb_access.connect(Path(sys.argv[1])) as conn:
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    released = time.time()
print(released, flush=True)
"""


def test_an_io_manager_write_waits_for_a_writer_holding_the_lock(make_platform) -> None:
    platform = make_platform(n_pairs=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(platform.duckdb_path), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    result = platform.materialize(["benchmark_pairs"])
    written = time.time()
    released = float(holder.stdout.readline())
    assert holder.wait(timeout=30) == 0
    assert result.success  # waited instead of failing on the lock
    assert written >= released
    assert platform.query("select count(*) from benchmark_pairs") == [(1,)]
