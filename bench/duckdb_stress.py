"""Committed vs present rows: several processes writing one DuckDB file at once.

Each process loops connect → insert one row → close for a fixed time and counts a row
as committed once its connection closed without error. Afterwards every committed row
must be in the file. Runs the same loop with plain `duckdb.connect` (DuckDB 2.0.1 loses
some; see cb_assets/defs/storage/duckdb_access.py) and with the platform's `duckdb_access.connect`.

    uv run python -m bench.duckdb_stress --processes 4 --seconds 240
"""

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import duckdb

from cb_assets.defs.storage import duckdb_access


def _writer(db: str, opener: str, worker: int, seconds: float, out: str) -> None:
    committed = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        row_id = worker * 10_000_000 + n
        n += 1
        try:
            if opener == "raw":
                conn = _raw_connect(db)
                conn.execute("insert into t values (?, ?)", [row_id, worker])
                conn.close()
            else:
                with duckdb_access.connect(Path(db)) as conn:
                    conn.execute("insert into t values (?, ?)", [row_id, worker])
        except duckdb.Error:
            continue  # not committed: not counted
        committed.append(row_id)
    Path(out).write_text("\n".join(map(str, committed)))


def _raw_connect(db: str) -> duckdb.DuckDBPyConnection:
    while True:  # DuckDB's own lock: wait for it, as every opener must
        try:
            return duckdb.connect(db)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            time.sleep(0.002)


def run(opener: str, processes: int, seconds: float, workdir: Path) -> tuple[int, int]:
    """(committed, lost) for one opener."""
    db = workdir / f"{opener}.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table t (id bigint, worker integer)")
    ctx = multiprocessing.get_context("spawn")
    outs = [workdir / f"{opener}-{i}.txt" for i in range(processes)]
    procs = [
        ctx.Process(target=_writer, args=(str(db), opener, i, seconds, str(outs[i])))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    committed = {int(x) for out in outs for x in out.read_text().split()}
    with duckdb.connect(str(db), read_only=True) as conn:
        present = {row_id for (row_id,) in conn.execute("select id from t").fetchall()}
    return len(committed), len(committed - present)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--openers", nargs="+", default=["raw", "platform"])
    args = parser.parse_args()
    print(
        f"duckdb {duckdb.__version__}: {args.processes} processes, {args.seconds:.0f} s each, "
        "connect → insert → close in a loop"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for opener in args.openers:
            committed, lost = run(opener, args.processes, args.seconds, Path(tmp))
            print(
                f"{opener:9} committed {committed:6d}  lost {lost:3d}  "
                f"({committed / args.seconds:.0f} writes/s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
