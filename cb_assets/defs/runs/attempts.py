"""Every attempt at a pair-run: its files kept aside, its row appended to `run_attempts`.

Upstream overwrites a pair's folder when it reruns, so before each new attempt the
folder of the previous one is moved under `<logs>/_attempts/…/<attempt number>/`.
No attempt's cost or logs are ever overwritten.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from cb_assets.defs.runs.results import read_regular_file
from cb_assets.defs.storage.duckdb_access import table_exists
from cb_assets.shared.logs_layout import ATTEMPT_MARKER, ATTEMPTS_DIR
from cb_assets.shared.result_shape import agent_blocks_found

RUN_ATTEMPTS_DDL = """
create table if not exists run_attempts (
    partition varchar, pair varchar, setting varchar, attempt integer,
    experiment varchar, repeat integer, arm varchar,
    dagster_run_id varchar, retry_number integer,
    started_at timestamp, ended_at timestamp,
    classification varchar, rule varchar, detail varchar, final boolean,
    exit_code integer, timed_out boolean,
    cost double, input_tokens bigint, output_tokens bigint,
    log_dir varchar, log_excerpt varchar
)
"""
COLUMNS = (
    "partition",
    "pair",
    "setting",
    "attempt",
    "experiment",
    "repeat",
    "arm",
    "dagster_run_id",
    "retry_number",
    "started_at",
    "ended_at",
    "classification",
    "rule",
    "detail",
    "final",
    "exit_code",
    "timed_out",
    "cost",
    "input_tokens",
    "output_tokens",
    "log_dir",
    "log_excerpt",
)


def archive_root(logs_root: Path, pair_dir: Path) -> Path:
    return logs_root / ATTEMPTS_DIR / pair_dir.relative_to(logs_root)


def process_log(logs_root: Path, pair_dir: Path, kind: str, number: int) -> Path:
    """Where the cooperbench process output of attempt `number` goes (`kind`: run or eval)."""
    relative = pair_dir.relative_to(logs_root).with_suffix(f".{number}.log")
    return logs_root / ATTEMPTS_DIR / f"{kind}-logs" / relative


def move_aside(logs_root: Path, pair_dir: Path, default_name: int | None = None) -> Path | None:
    """Move the previous attempt's folder out of upstream's way; return where it went.

    The folder is named by the attempt its marker names; without a marker, by
    `default_name` (an attempt whose process died before marking it) or `external`."""
    if not pair_dir.is_dir() or not any(pair_dir.iterdir()):
        return None
    marker = pair_dir / ATTEMPT_MARKER
    root = archive_root(logs_root, pair_dir)
    try:  # read as a regular file only: a FIFO by that name must not hang the run
        name = str(int(json.loads(read_regular_file(marker, max_bytes=4096))["attempt"]))
    except (OSError, ValueError, KeyError, TypeError):
        # an interrupted attempt's files, or files the platform did not write (ingested)
        name = str(default_name) if default_name is not None else "external"
    target = root / name
    suffix = 1
    while target.exists():
        suffix += 1
        target = root / f"{name}.{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    pair_dir.rename(target)
    return target


def mark(pair_dir: Path, attempt: int, dagster_run_id: str) -> None:
    pair_dir.mkdir(parents=True, exist_ok=True)
    (pair_dir / ATTEMPT_MARKER).write_text(
        json.dumps({"attempt": attempt, "dagster_run_id": dagster_run_id})
    )


def spend(result: dict[str, Any] | None) -> tuple[float, int, int]:
    """Cost and tokens an attempt spent, from its result.json (0 when it wrote none)."""
    if not isinstance(result, dict):
        return 0.0, 0, 0
    agents = agent_blocks_found(result)

    def total(key: str) -> float:
        return sum(v for a in agents if isinstance(v := a.get(key, 0), int | float))

    return float(total("cost")), int(total("input_tokens")), int(total("output_tokens"))


def last_attempts(conn: duckdb.DuckDBPyConnection, partitions: list[str]) -> dict[str, int]:
    """Partition → the number of its latest recorded attempt (partitions never tried: absent)."""
    if not table_exists(conn, "run_attempts"):
        return {}  # nothing attempted yet (and no write: a full disk must not fail this)
    rows = conn.execute(
        "select partition, max(attempt) from run_attempts "
        "where partition in (select unnest(?::varchar[])) group by partition",
        [partitions],
    ).fetchall()
    return {partition: int(last) for partition, last in rows}


def failed_cost(conn: duckdb.DuckDBPyConnection, partitions: list[str]) -> dict[str, float]:
    """Partition → what its infrastructure-failed attempts cost (none: absent)."""
    if not table_exists(conn, "run_attempts"):
        return {}
    rows = conn.execute(
        "select partition, sum(coalesce(cost, 0)) from run_attempts "
        "where classification = 'infra_error' and partition in (select unnest(?::varchar[])) "
        "group by partition",
        [partitions],
    ).fetchall()
    return {partition: float(cost) for partition, cost in rows}


def append(conn: duckdb.DuckDBPyConnection, row: dict[str, Any], if_absent: bool = False) -> None:
    """Append one attempt; with `if_absent`, only if its partition and number are not there."""
    missing = set(COLUMNS) - set(row)
    if missing:
        raise ValueError(f"run_attempts row lacks {sorted(missing)}")
    conn.execute(RUN_ATTEMPTS_DDL)
    values = [row[c] for c in COLUMNS]
    unless = ""
    if if_absent:
        unless = (
            " where not exists (select 1 from run_attempts where partition = ? and attempt = ?)"
        )
        values += [row["partition"], row["attempt"]]
    conn.execute(
        f"insert into run_attempts ({', '.join(COLUMNS)}) "
        f"select {', '.join('?' for _ in COLUMNS)}{unless}",
        values,
    )


def now() -> datetime:
    return datetime.now()


def parse_time(text: str | None) -> datetime | None:
    """A time `now().isoformat()` wrote into a journal; None when absent or unreadable."""
    try:
        return datetime.fromisoformat(text) if text else None
    except (TypeError, ValueError):
        return None
