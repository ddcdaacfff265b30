"""Experiments compared: known answers on hand-built frames, and the real logs counted
independently with plain json."""

import json
import math
import statistics

import duckdb
import pandas as pd
import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.analysis.compare import (
    BOOTSTRAP,
    COMPARE_VIEWS,
    WILSON,
    experiment_summary,
    leaderboard,
)
from cb_assets.defs.analysis.deficit import deficits, wilson
from cb_assets_tests.support.services import require

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"


def pair_runs(experiment: str, setting: str, repeat: int, outcomes: list[str | None], **kw):
    """Run rows (two agents for coop, one for solo) and eval rows for pairs p0, p1, …;
    an outcome of None means the pair-run was never evaluated."""
    agents = ["solo"] if setting == "solo" else ["agent1", "agent2"]
    runs, evals = [], []
    for i, outcome in enumerate(outcomes):
        key = {"experiment": experiment, "setting": setting, "repeat": repeat, "pair": f"p{i}"}
        for agent in agents:
            status = "Error" if (i, agent) in kw.get("errors", ()) else "Submitted"
            runs.append(
                {**key, "agent_id": agent, "status": status, "cost": kw.get("cost", 1.0),
                 "messages_sent": None if setting == "solo" else kw.get("messages", 4)}
            )  # fmt: skip
        if outcome is not None:
            evals.append({**key, "outcome": outcome})
    return runs, evals


def frames(*parts) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = [r for part in parts for r in part[0]]
    evals = [e for part in parts for e in part[1]]
    return pd.DataFrame(runs), pd.DataFrame(evals)


def test_one_repeat_uses_wilson_and_counts_cost_and_errors() -> None:
    solo = pair_runs("a", "solo", 1, ["pass"] * 8 + ["fail"] * 2, cost=0.5)
    # coop: 3 pass, 5 fail, 1 eval error, 1 never evaluated; pair p0 has an agent in Error
    coop = pair_runs(
        "a", "coop-comm", 1, ["pass"] * 3 + ["fail"] * 5 + ["error", None],
        cost=0.25, messages=6, errors={(0, "agent1"), (0, "agent2"), (4, "agent2")},
    )  # fmt: skip
    runs, evals = frames(solo, coop)
    summary = experiment_summary(runs, evals).set_index("setting")
    assert summary["experiment"].tolist() == ["a", "a"]
    assert summary.index.tolist() == ["solo", "coop-comm"]  # registry order
    s = summary.loc["solo"]
    assert (s["repeats"], s["pairs"], s["evaluated"], s["passed"]) == (1, 10, 10, 8)
    assert s["pass_rate"] == 0.8 and s["interval"] == WILSON
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson(8, 10))
    assert s["ci_low"] == pytest.approx(0.4902, abs=1e-3)
    assert s["cost"] == 5.0 and s["cost_per_pair"] == 0.5 and s["cost_per_passing_pair"] == 5 / 8
    assert math.isnan(s["messages_per_pair"]) and s["agent_errors"] == 0
    c = summary.loc["coop-comm"]
    assert (c["pairs"], c["evaluated"], c["passed"]) == (10, 8, 3)  # error and unevaluated out
    assert c["pass_rate"] == 3 / 8
    assert c["cost"] == 5.0 and c["cost_per_passing_pair"] == 5.0 / 3  # every pair-run's cost
    assert c["messages_per_pair"] == 6 and c["agent_errors"] == 2  # pair-runs, not agents
    assert math.isnan(c["rate_sd"])


def test_three_repeats_give_mean_sd_and_a_bootstrap_over_pairs() -> None:
    parts = [
        pair_runs("b", "coop-comm", r, ["pass"] * k + ["fail"] * (10 - k))
        for r, k in ((1, 5), (2, 7), (3, 6))
    ]
    runs, evals = frames(*parts)
    [row] = experiment_summary(runs, evals, n_boot=3000).to_dict("records")
    assert (row["repeats"], row["pairs"], row["evaluated"], row["passed"]) == (3, 30, 30, 18)
    assert row["pass_rate"] == pytest.approx(0.6) and row["rate_mean"] == pytest.approx(0.6)
    assert row["rate_sd"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.6]))  # 0.1
    assert row["interval"] == BOOTSTRAP
    assert 0 <= row["ci_low"] < row["pass_rate"] < row["ci_high"] <= 1
    # pairs p0-p4 pass in every repeat, p7-p9 never: resampling the 10 pairs is far wider
    # than Wilson over 30 pair-runs treated as independent
    low, high = wilson(18, 30)
    assert row["ci_high"] - row["ci_low"] > high - low
    assert row["cost_per_passing_pair"] == pytest.approx(60 / 18)


def test_identical_repeats_add_no_precision() -> None:
    """Three repeats with the same outcomes are one experiment seen three times: resampling
    pairs keeps the one-repeat width; resampling pair-runs would shrink it by ~sqrt(3)."""
    outcomes = ["pass"] * 12 + ["fail"] * 8
    runs, evals = frames(*(pair_runs("d", "solo", r, outcomes) for r in (1, 2, 3)))
    [row] = experiment_summary(runs, evals, n_boot=4000).to_dict("records")
    assert row["rate_sd"] == 0 and row["pass_rate"] == pytest.approx(0.6)
    width = row["ci_high"] - row["ci_low"]
    one_low, one_high = wilson(12, 20)
    pooled_low, pooled_high = wilson(36, 60)
    assert width == pytest.approx(one_high - one_low, rel=0.2)
    assert width > 1.4 * (pooled_high - pooled_low)


def test_rows_without_evals_still_appear() -> None:
    runs, _ = frames(pair_runs("c", "solo", 1, ["pass", "fail"], cost=2.0))
    for evals in (
        None,
        pd.DataFrame(columns=["experiment", "setting", "repeat", "pair", "outcome"]),
    ):
        [row] = experiment_summary(runs, evals).to_dict("records")
        assert (row["pairs"], row["evaluated"], row["cost"]) == (2, 0, 4.0)
        assert pd.isna(row["passed"]) and pd.isna(row["pass_rate"]) and pd.isna(row["interval"])
        assert pd.isna(row["cost_per_passing_pair"])


def test_leaderboard_formats_rates_and_sorts_by_the_best() -> None:
    runs, evals = frames(
        pair_runs("low", "solo", 1, ["pass"] + ["fail"] * 9),
        pair_runs("low", "coop-comm", 1, ["fail"] * 10),
        pair_runs("high", "solo", 1, ["pass"] * 8 + ["fail"] * 2),
        pair_runs("high", "coop-comm", 1, ["pass"] * 5 + ["fail"] * 5),
        pair_runs("high", "coop-nocomm", 1, ["pass"] * 6 + ["fail"] * 4),
    )
    board = leaderboard(experiment_summary(runs, evals))
    assert board.columns.tolist() == [
        "experiment", "solo", "coop-comm", "coop-nocomm", "deficit coop-comm",
        "deficit coop-nocomm",
    ]  # fmt: skip
    assert board["experiment"].tolist() == ["high", "low"]
    lo, hi = wilson(8, 10)
    assert board.loc[0, "solo"] == f"0.80 [{lo:.2f}, {hi:.2f}]"
    assert board.loc[0, ["deficit coop-comm", "deficit coop-nocomm"]].tolist() == ["+0.30", "+0.20"]
    assert board.loc[1, "coop-nocomm"] == "" and board.loc[1, "deficit coop-nocomm"] == ""
    assert "| high" in board.to_markdown(index=False)


def test_compare_view_runs_per_arm() -> None:
    runs, evals = frames(
        pair_runs("a", "solo", 1, ["pass", "fail", None], cost=0.5),
        pair_runs("a", "coop-comm", 1, ["pass", "error"], messages=3),
        pair_runs("a", "coop-comm", 2, ["pass", "pass"], messages=5),
    )
    conn = duckdb.connect()
    conn.register("run_results", runs)
    conn.register("eval_results", evals)
    for name, sql in COMPARE_VIEWS.items():
        conn.execute(f"create view {name} as {sql}")
    table = conn.sql("select * from experiment_settings order by setting, repeat").df()
    assert table.columns.tolist() == [
        "experiment", "setting", "repeat", "pair_runs", "passed", "failed", "errors",
        "pass_rate", "cost", "messages_per_pair",
    ]  # fmt: skip
    rows = table.set_index(["setting", "repeat"])
    solo = rows.loc[("solo", 1)]
    assert solo[["pair_runs", "passed", "failed", "pass_rate", "cost"]].tolist() == [
        3,
        1,
        1,
        0.5,
        1.5,
    ]
    assert math.isnan(rows.loc[("solo", 1), "messages_per_pair"])
    assert rows.loc[("coop-comm", 1), ["errors", "pass_rate", "cost"]].tolist() == [1, 1.0, 4.0]
    assert rows.loc[("coop-comm", 2), "messages_per_pair"] == 5


# --- the real logs -------------------------------------------------------------------

IMPORTS = {  # run folder → (experiment, setting, repeat)
    "nano_solo_1": ("nano", "solo", 1),
    "nano_msg_1": ("nano", "coop-comm", 1),
    "nano_msg_2": ("nano", "coop-comm", 2),
    "nano_msg_3": ("nano", "coop-comm", 3),
    "nano_free_git_1": ("free", "coop-git", 1),
}


def real_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    require(REAL_LOGS.is_dir(), f"the real logs are not at {REAL_LOGS}")
    runs, evals = [], []
    for run, (experiment, setting, repeat) in IMPORTS.items():
        for result_file in sorted((REAL_LOGS / run).glob("*/*/*/*/result.json")):
            result = json.loads(result_file.read_text())
            key = {
                "experiment": experiment, "setting": setting, "repeat": repeat,
                "pair": f"{result['repo']}-{result['task_id']}-{result_file.parent.name}",
            }  # fmt: skip
            agents = result.get("agents") or {"solo": result["agent"]}
            for agent_id, block in agents.items():
                runs.append(
                    {**key, "agent_id": agent_id, "status": block["status"],
                     "cost": block["cost"], "messages_sent": result.get("messages_sent")}
                )  # fmt: skip
            evaluation = json.loads((result_file.parent / "eval.json").read_text())
            outcome = "error" if evaluation.get("error") else (
                "pass" if evaluation["both_passed"] else "fail"
            )  # fmt: skip
            evals.append({**key, "outcome": outcome})
    return pd.DataFrame(runs), pd.DataFrame(evals)


def counted(run: str) -> tuple[int, int]:
    """(both_passed, evaluated without error) over a run's eval.json files."""
    data = [json.loads(p.read_text()) for p in (REAL_LOGS / run).glob("*/*/*/*/eval.json")]
    ok = [d for d in data if not d.get("error")]
    return sum(d["both_passed"] is True for d in ok), len(ok)


def test_real_logs_three_repeats_pool_to_the_eval_json_count() -> None:
    runs, evals = real_frames()
    summary = experiment_summary(runs, evals).set_index(["experiment", "setting"])
    coop = summary.loc[("nano", "coop-comm")]
    counts = [counted(f"nano_msg_{r}") for r in (1, 2, 3)]
    passed, evaluated = sum(c[0] for c in counts), sum(c[1] for c in counts)
    assert (coop["repeats"], coop["pairs"], coop["evaluated"]) == (3, 60, evaluated)
    assert coop["passed"] == passed and coop["pass_rate"] == pytest.approx(passed / evaluated)
    assert coop["rate_mean"] == pytest.approx(statistics.mean(p / n for p, n in counts))
    assert coop["rate_sd"] == pytest.approx(statistics.stdev(p / n for p, n in counts))
    assert coop["interval"] == BOOTSTRAP and coop["ci_low"] <= coop["pass_rate"] <= coop["ci_high"]
    cost = sum(
        sum(a["cost"] for a in json.loads(p.read_text())["agents"].values())
        for r in (1, 2, 3)
        for p in (REAL_LOGS / f"nano_msg_{r}").glob("*/*/*/*/result.json")
    )
    assert coop["cost"] == pytest.approx(cost)
    assert coop["cost_per_passing_pair"] == pytest.approx(cost / passed)
    solo = summary.loc[("nano", "solo")]
    assert (solo["passed"], solo["evaluated"]) == counted("nano_solo_1")
    assert solo["interval"] == WILSON and math.isnan(solo["messages_per_pair"])
    # nano_free_git_1: two pair-runs where both agents died (status Error, empty error)
    errored = {
        p.parent
        for p in (REAL_LOGS / "nano_free_git_1").glob("*/*/*/*/result.json")
        if any(a["status"] == "Error" for a in json.loads(p.read_text())["agents"].values())
    }
    assert summary.loc[("free", "coop-git"), "agent_errors"] == len(errored) == 2
    board = leaderboard(summary.reset_index())
    assert board.columns.tolist() == [
        "experiment", "solo", "coop-comm", "coop-git", "deficit coop-comm", "deficit coop-git"
    ]  # fmt: skip


def test_real_logs_deficit_pairs_repeat_one_only() -> None:
    """nano's solo was run once, on pairs that only partly overlap nano_msg_1's: the
    deficit pairs the shared pairs of repeat 1, and repeats 2-3 have no baseline."""
    _, evals = real_frames()
    table = deficits(evals[evals["experiment"] == "nano"], n_boot=500)
    assert table["repeat"].tolist()[:3] == [1, 2, 3] and pd.isna(table["repeat"].iloc[3])

    def outcomes(run: str) -> dict[tuple[str, ...], bool]:
        return {
            p.parent.parts[-3:]: json.loads(p.read_text())["both_passed"]
            for p in (REAL_LOGS / run).glob("*/*/*/*/eval.json")
        }

    solo, coop = outcomes("nano_solo_1"), outcomes("nano_msg_1")
    shared = sorted(set(solo) & set(coop))
    assert 0 < len(shared) < 20
    assert table["pairs"].tolist() == [len(shared), 0, 0, len(shared)]
    want = sum(solo[p] - coop[p] for p in shared) / len(shared)
    assert table["deficit"].iloc[0] == pytest.approx(want)
    assert table["deficit"].iloc[3] == pytest.approx(want)


def test_a_setting_with_evaluations_and_no_run_rows_has_no_messages_figure() -> None:
    """Evaluations of a coop setting whose run_results rows are not in (yet): its messages
    per pair is NaN, not an error (messages_sent is a nullable integer column, as DuckDB
    gives it)."""
    solo = pair_runs("a", "solo", 1, ["pass", "fail"])
    runs, evals = frames(solo, ([], pair_runs("a", "coop-comm", 1, ["pass", "fail"])[1]))
    runs["messages_sent"] = runs["messages_sent"].astype("Int64")
    summary = experiment_summary(runs, evals).set_index("setting")
    c = summary.loc["coop-comm"]
    assert (c["pairs"], c["evaluated"], c["passed"]) == (0, 2, 1)
    assert math.isnan(c["messages_per_pair"])
