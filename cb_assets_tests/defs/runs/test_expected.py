import duckdb
import pytest

from cb_assets.defs.runs.expected import expected_seconds, recorded_durations
from cb_assets.shared.partition_keys import partition_key

A, B, C = "dspy_task-8394-f1_f2", "dspy_task-8394-f3_f4", "dspy_task-8394-f1_f5"
OTHER_TASK = "click_task-2800-f1_f7"
NEW_TASK = "jinja_task-1621-f1_f2"


def key(pair: str, arm: str = "new/coop-nocomm") -> str:
    return partition_key(arm, pair)


def test_the_same_pair_in_other_settings_and_experiments_comes_first() -> None:
    history = [(A, 100.0), (A, 300.0), (A, 200.0), (B, 50.0), (OTHER_TASK, 10.0)]
    expectation = expected_seconds(history, [key(A)])
    assert expectation.seconds == {key(A): 200.0}
    assert expectation.sources == {"pair": 1}


def test_then_the_tasks_median_then_the_subsets() -> None:
    history = [(A, 100.0), (B, 300.0), (OTHER_TASK, 10.0), (OTHER_TASK, 20.0)]
    keys = [key(C), key(NEW_TASK)]
    expectation = expected_seconds(history, keys, subset_pairs=[A, B, OTHER_TASK])
    assert expectation.seconds[key(C)] == 200.0  # task dspy 8394: median of 100 and 300
    assert expectation.seconds[key(NEW_TASK)] == 60.0  # subset: median of 10, 20, 100, 300
    assert expectation.summary(2) == "1 from the task's median, 1 from the subset's median"


def test_pair_runs_that_never_started_say_nothing_and_nothing_recorded_is_unknown() -> None:
    expectation = expected_seconds([(A, 0.0), (A, -1.0)], [key(A), key(B)])
    assert expectation.seconds == {}
    assert expectation.summary(2) == "2 unknown"


def test_recorded_durations_read_one_figure_per_pair_run(tmp_path) -> None:
    db = tmp_path / "cb.duckdb"
    assert recorded_durations(db) == []  # no file yet
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table other (x int)")
    assert recorded_durations(db) == []  # no run_results table yet
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table run_results (arm text, pair text, duration_seconds double)")
        conn.execute(
            "insert into run_results values ('x/coop-comm', ?, 12.5), ('x/coop-comm', ?, 12.5),"
            " ('x/solo', ?, 4.0)",
            [A, A, A],
        )
    assert sorted(recorded_durations(db)) == [(A, 4.0), (A, 12.5)]


@pytest.mark.parametrize("bad", [[(A, None)], [("not a pair key", 5.0)]])
def test_odd_history_rows_do_not_break_the_estimate(bad) -> None:
    expectation = expected_seconds(bad, [key(A)])
    assert set(expectation.seconds) <= {key(A)}
