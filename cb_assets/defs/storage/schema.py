"""Bring a DuckDB file written by an earlier release up to this one, in place.

Before the experiment registry a file held one experiment: rows had no experiment, repeat
or arm, and run_attempts keyed partitions `<pair>|<setting>`. Upgrading keeps every row and
names it the experiment it was run as, read from its upstream run name (`oracle-solo` →
oracle), repeat 1. Idempotent, and one transaction: a killed upgrade leaves the old file.
"""

import re
from pathlib import Path

import duckdb

from cb_assets.defs.storage import duckdb_access
from cb_assets.defs.storage.duckdb_access import table_exists, transaction
from cb_assets.shared.partition_keys import EXPERIMENT_NAME, Arm, parse_run_name
from cb_assets.shared.settings import SETTING_NAMES

NEW_COLUMNS = {
    "run_results": {
        "experiment": "varchar",
        "repeat": "bigint",
        "arm": "varchar",
        "in_dataset": "boolean",
        "extra": "varchar",
    },
    "run_attempts": {"experiment": "varchar", "repeat": "integer", "arm": "varchar"},
    "eval_results": {"experiment": "varchar", "repeat": "bigint", "arm": "varchar"},
}
DERIVED_TABLES = ("cost_manifest", "verification_report")  # written per experiment now
# `<logs>/<run_name>/<solo|coop|team>/<repo>/<task>/f<a>_f<b>[/file]`: the run name of a path
_RUN_NAME_IN_PATH = r"/([^/]+)/(?:solo|coop|team)/[^/]+/[^/]+/f[0-9]+_f[0-9]+(?:/[^/]*)?$"


def arm_of_run(run_name: str | None, setting: str) -> Arm:
    """The arm an earlier release's run name stands for: `<experiment>-<setting>`, repeat 1.
    A name it did not write keeps its text as the experiment (characters a name may not hold
    become `_`)."""
    if run_name:
        arm = parse_run_name(run_name)
        if arm is not None and arm.setting == setting:
            return arm
        stem = run_name.removesuffix(f"-{setting}")
    else:
        stem = "unnamed"
    name = re.sub(r"[^A-Za-z0-9_.]", "_", stem)[:64] or "unnamed"
    if not EXPERIMENT_NAME.fullmatch(name):
        name = f"x{name}"[:64]
    return Arm(name, setting)


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {row[0] for row in conn.execute(f"describe {table}").fetchall()}


def _arms(conn: duckdb.DuckDBPyConnection, table: str, run_name_sql: str) -> None:
    """Fill experiment, repeat, arm of `table` from the run name `run_name_sql` selects."""
    pairs = conn.execute(
        f"select distinct {run_name_sql.replace('{t}.', '')} as run_name, setting from {table}"
    ).fetchall()
    mapping = [
        (
            run_name,
            setting,
            *(lambda a: (a.experiment, a.repeat, a.key))(arm_of_run(run_name, setting)),
        )
        for run_name, setting in pairs
        if setting in SETTING_NAMES
    ]
    conn.execute(
        "create temp table arm_map (run_name varchar, setting varchar, experiment varchar, "
        "repeat integer, arm varchar)"
    )
    if mapping:  # executemany refuses an empty list (an old table with no rows)
        conn.executemany("insert into arm_map values (?, ?, ?, ?, ?)", mapping)
    conn.execute(
        f"update {table} t set experiment = m.experiment, repeat = m.repeat, arm = m.arm "
        f"from arm_map m where m.setting = t.setting "
        f"and m.run_name is not distinct from ({run_name_sql.replace('{t}', 't')})"
    )
    conn.execute("drop table arm_map")


def upgrade(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Upgrade the tables an earlier release wrote; one line per table upgraded."""
    done = []
    plans = {  # the run name from the file's path, as the sensor and the runner read it
        "run_results": f"coalesce(nullif(regexp_extract({{t}}.result_path, "
        f"'{_RUN_NAME_IN_PATH}', 1), ''), {{t}}.run_name)",
        "run_attempts": f"regexp_extract({{t}}.log_dir, '{_RUN_NAME_IN_PATH}', 1)",
        "eval_results": f"regexp_extract({{t}}.eval_path, '{_RUN_NAME_IN_PATH}', 1)",
    }
    with transaction(conn):
        for table, run_name_sql in plans.items():
            if not table_exists(conn, table) or "experiment" in _columns(conn, table):
                continue
            for column, kind in NEW_COLUMNS[table].items():
                conn.execute(f"alter table {table} add column {column} {kind}")
            _arms(conn, table, run_name_sql)
            if table == "run_results":
                conn.execute("update run_results set in_dataset = true")
            if table == "run_attempts":  # `<pair>|<setting>` → `<arm>|<pair>`
                conn.execute(
                    "update run_attempts set partition = arm || '|' || pair where arm is not null"
                )
            rows = conn.execute(f"select count(*) from {table}").fetchone()[0]
            done.append(f"{table}: {rows} rows named by their experiment, repeat 1")
            if table == "run_results":
                done += _renamed(conn)
        for table in DERIVED_TABLES:  # rebuilt, per experiment, by the next refresh
            if table_exists(conn, table) and "experiment" not in _columns(conn, table):
                conn.execute(f"drop table {table}")
                done.append(f"{table}: dropped (one experiment's); the next refresh rebuilds it")
    return done


def _renamed(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """A line per earlier run name that is no experiment name now (`gpt-4o-solo` → gpt_4o):
    its rows are kept under the new name, but its files stay where they are."""
    rows = conn.execute(
        "select distinct run_name, experiment, setting from run_results "
        "where run_name is not null and run_name <> experiment || '-' || setting"
    ).fetchall()
    return [
        f"run_results: rows of run {run_name!r} are experiment {experiment!r} now; its files "
        f"stay in {run_name}/ (rename that folder to {experiment}-{setting}/ to run or "
        "evaluate it again there)"
        for run_name, experiment, setting in rows
    ]


_CURRENT: set[str] = set()  # files this process has upgraded or found current


def ensure_current(db_path: Path) -> list[str]:
    """Upgrade `db_path` once per process, before its first use: whichever way a run starts
    (the UI, a sensor, the command line), it never writes the new shape into old tables."""
    key = str(db_path)
    if key in _CURRENT:
        return []
    done: list[str] = []
    if db_path.exists():
        with duckdb_access.connect(db_path) as conn:
            done = upgrade(conn)
    _CURRENT.add(key)
    return done
