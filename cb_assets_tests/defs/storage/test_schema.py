"""In-place upgrade of a DuckDB file an earlier release wrote (one experiment, no
experiment/repeat/arm columns, run_attempts keyed `<pair>|<setting>`). The old tables are
built by hand, as that release's DDL made them."""

from pathlib import Path

import duckdb
import pytest

from cb_assets.defs.storage import schema
from cb_assets.shared.partition_keys import Arm

P1 = "dspy_task-8394-f3_f4"
P2 = "dspy_task-8394-f1_f2"
LOG = "/data/logs/{run}/{sub}/dspy_task/8394/{features}"

OLD_RUN_RESULTS = """
create table run_results (
    pair varchar, setting varchar, repo varchar, task_id bigint, feature_a bigint,
    feature_b bigint, agent_id varchar, status varchar, cost double, run_name varchar,
    classification varchar, result_path varchar
)
"""
OLD_RUN_ATTEMPTS = """
create table run_attempts (
    partition varchar, pair varchar, setting varchar, attempt integer,
    dagster_run_id varchar, retry_number integer,
    started_at timestamp, ended_at timestamp,
    classification varchar, rule varchar, detail varchar, final boolean,
    exit_code integer, timed_out boolean,
    cost double, input_tokens bigint, output_tokens bigint,
    log_dir varchar, log_excerpt varchar
)
"""
OLD_EVAL_RESULTS = """
create table eval_results (
    pair varchar, setting varchar, repo varchar, task_id bigint, outcome varchar,
    eval_path varchar, ran boolean
)
"""


def old_file(path: Path) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(OLD_RUN_RESULTS)
        conn.execute(OLD_RUN_ATTEMPTS)
        conn.execute(OLD_EVAL_RESULTS)
        for pair, setting, agent, run in [
            (P1, "solo", "solo", "oracle-solo"),
            (P1, "coop-comm", "agent1", "oracle-coop-comm"),
            (P1, "coop-comm", "agent2", "oracle-coop-comm"),
            (P2, "coop-nocomm", "agent1", "command-a-coop-nocomm"),  # a name with `-`
            (P2, "solo", "solo", None),  # no run name at all
        ]:
            sub = "solo" if setting == "solo" else "coop"
            features = "f3_f4" if pair == P1 else "f1_f2"
            result = LOG.format(run=run, sub=sub, features=features) + "/result.json"
            conn.execute(
                "insert into run_results values (?, ?, 'dspy_task', 8394, 3, 4, ?, "
                "'Submitted', 0.5, ?, 'submitted', ?)",
                [pair, setting, agent, run, result if run else None],
            )
        for pair, setting, run, sub, features, attempt in [
            (P1, "solo", "oracle-solo", "solo", "f3_f4", 1),
            (P1, "solo", "oracle-solo", "solo", "f3_f4", 2),
            (P1, "coop-comm", "oracle-coop-comm", "coop", "f3_f4", 1),
        ]:
            log_dir = LOG.format(run=run, sub=sub, features=features)
            conn.execute(
                "insert into run_attempts (partition, pair, setting, attempt, classification, "
                "final, cost, log_dir) values (?, ?, ?, ?, 'submitted', true, 0.5, ?)",
                [f"{pair}|{setting}", pair, setting, attempt, log_dir],
            )
        conn.execute(
            "insert into eval_results values (?, 'coop-comm', 'dspy_task', 8394, 'pass', ?, true)",
            [P1, LOG.format(run="oracle-coop-comm", sub="coop", features="f3_f4") + "/eval.json"],
        )


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {
        t: conn.execute(f"select * from {t} order by all").fetchall()
        for t in ("run_results", "run_attempts", "eval_results")
    }


def test_rows_are_named_by_their_run_name_at_repeat_1(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old_file(path)
    with duckdb.connect(str(path)) as conn:
        done = schema.upgrade(conn)
        assert [line.split(":")[0] for line in done] == [
            "run_results", "run_results", "run_attempts", "eval_results"
        ]  # fmt: skip
        assert "run_results: 5 rows" in done[0]
        # a run name that is no experiment name now is said, with where its files stay
        assert "'command-a-coop-nocomm' are experiment 'command_a'" in done[1]
        assert "stay in command-a-coop-nocomm/" in done[1]
        got = conn.execute(
            "select pair, setting, agent_id, experiment, repeat, arm, in_dataset "
            "from run_results order by pair, setting, agent_id"
        ).fetchall()
    assert got == [
        (P2, "coop-nocomm", "agent1", "command_a", 1, "command_a/coop-nocomm", True),
        (P2, "solo", "solo", "unnamed", 1, "unnamed/solo", True),
        (P1, "coop-comm", "agent1", "oracle", 1, "oracle/coop-comm", True),
        (P1, "coop-comm", "agent2", "oracle", 1, "oracle/coop-comm", True),
        (P1, "solo", "solo", "oracle", 1, "oracle/solo", True),
    ]


def test_run_attempts_partitions_become_arm_then_pair(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old_file(path)
    with duckdb.connect(str(path)) as conn:
        schema.upgrade(conn)
        got = conn.execute(
            "select partition, experiment, repeat, arm, attempt from run_attempts order by all"
        ).fetchall()
        evals = conn.execute("select experiment, repeat, arm from eval_results").fetchall()
    assert got == [
        (f"oracle/coop-comm|{P1}", "oracle", 1, "oracle/coop-comm", 1),
        (f"oracle/solo|{P1}", "oracle", 1, "oracle/solo", 1),
        (f"oracle/solo|{P1}", "oracle", 1, "oracle/solo", 2),
    ]
    assert evals == [("oracle", 1, "oracle/coop-comm")]


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old_file(path)
    with duckdb.connect(str(path)) as conn:
        assert schema.upgrade(conn)
        once = snapshot(conn)
    with duckdb.connect(str(path)) as conn:  # a second upgrade, as at the next start
        assert schema.upgrade(conn) == []
        assert snapshot(conn) == once


def test_a_new_file_and_an_empty_one_need_nothing(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn:
        assert schema.upgrade(conn) == []
        conn.execute(OLD_RUN_RESULTS)  # an old table with no rows yet
        assert schema.upgrade(conn) == ["run_results: 0 rows named by their experiment, repeat 1"]
        columns = {row[0] for row in conn.execute("describe run_results").fetchall()}
    assert set(schema.NEW_COLUMNS["run_results"]) <= columns


def test_a_failed_upgrade_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "old.duckdb"
    old_file(path)
    with duckdb.connect(str(path)) as conn:
        before = snapshot(conn)

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-upgrade")

    monkeypatch.setattr(schema, "_arms", boom)
    with duckdb.connect(str(path)) as conn:
        with pytest.raises(RuntimeError, match="killed"):
            schema.upgrade(conn)
    with duckdb.connect(str(path)) as conn:
        assert snapshot(conn) == before
        columns = {row[0] for row in conn.execute("describe run_results").fetchall()}
    assert "experiment" not in columns


@pytest.mark.parametrize(
    ("run_name", "setting", "arm"),
    [
        ("oracle-solo", "solo", Arm("oracle", "solo")),
        ("nano-coop-comm-r2", "coop-comm", Arm("nano", "coop-comm", 2)),
        ("command-a-solo", "solo", Arm("command_a", "solo")),
        ("oracle-coop-comm", "solo", Arm("oracle_coop_comm", "solo")),  # another setting's
        ("_x-solo", "solo", Arm("x_x", "solo")),
        (None, "team", Arm("unnamed", "team")),
        ("", "solo", Arm("unnamed", "solo")),
    ],
)
def test_arm_of_run(run_name: str | None, setting: str, arm: Arm) -> None:
    assert schema.arm_of_run(run_name, setting) == arm
