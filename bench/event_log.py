"""Event-log cost per event: the scale-out profile's PostgreSQL storage against the local
instance's SQLite, through a `DagsterInstance` of each.

Every run, step and materialization the platform records is an event-log write, so this is
the per-event price the instance storage adds. For each storage: one run, then N engine
events and N asset materializations stored one by one (each its own commit, as runs write
them), timed individually; the median per event and the ratio. PostgreSQL is a throwaway
cluster on a Unix socket (`cb_assets/bottle/postgres.py`) with fsync on, as SQLite's
default is durable too; both on this machine's disk.

    uv run python -m bench.event_log --events 2000
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from cb_assets.bottle.postgres import start_postgres

SQLITE_YAML = "storage:\n  sqlite:\n    base_dir: {base}\ntelemetry:\n  enabled: false\n"
POSTGRES_YAML = (
    "storage:\n  postgres:\n    postgres_url: {url}\n"
    "local_artifact_storage:\n  module: dagster._core.storage.root\n"
    "  class: LocalArtifactStorage\n  config:\n    base_dir: {base}\n"
    "telemetry:\n  enabled: false\n"
)


def _timed(store: Callable[[int], None], n: int) -> float:
    """Median seconds of one `store(i)` over n calls."""
    times = []
    for i in range(n):
        started = time.perf_counter()
        store(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(home: Path, n: int) -> dict[str, float]:
    """Median seconds per engine event and per materialization on the instance at `home`."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("bench").to_job(), run_id=None)
        engine = _timed(lambda i: instance.report_engine_event(f"event {i}", run), n)
        keys = [dg.AssetKey(["bench", f"a{i % 10}"]) for i in range(n)]
        materialization = _timed(
            lambda i: instance.report_runless_asset_event(
                dg.AssetMaterialization(keys[i], metadata={"i": i})
            ),
            n,
        )
        stored = len(instance.all_logs(run.run_id))
    if stored < n:
        raise RuntimeError(f"{home}: {stored} events stored, {n} expected")
    return {"engine event": engine, "materialization": materialization}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eventlog-") as tmp:
        root = Path(tmp)
        sqlite_home = root / "sqlite"
        sqlite_home.mkdir()
        (sqlite_home / "dagster.yaml").write_text(SQLITE_YAML.format(base=sqlite_home / "s"))
        pg = start_postgres(root, durable=True)
        try:
            pg_home = root / "postgres"
            pg_home.mkdir()
            (pg_home / "dagster.yaml").write_text(
                POSTGRES_YAML.format(url=pg.address, base=pg_home / "a")
            )
            os.environ.setdefault("DAGSTER_HOME", str(sqlite_home))
            figures = {
                "sqlite": measure(sqlite_home, args.events),
                "postgres": measure(pg_home, args.events),
            }
        finally:
            pg.stop()
    print(f"event log, {args.events} events of each kind, one commit each (median per event):")
    for kind in ("engine event", "materialization"):
        sqlite, postgres = figures["sqlite"][kind], figures["postgres"][kind]
        print(
            f"  {kind:16s} sqlite {sqlite * 1000:7.2f} ms   postgres {postgres * 1000:7.2f} ms"
            f"   ratio postgres / sqlite {postgres / sqlite:.2f}"
        )


if __name__ == "__main__":
    main()
