import math
import random

import duckdb
import numpy as np
import pandas as pd
import pytest

from cb_assets.defs.analysis.deficit import (
    ANALYSIS_VIEWS,
    bootstrap_over_pairs,
    deficits,
    paired_deficit,
    pass_rates,
    wilson,
)


def test_wilson_matches_known_values() -> None:
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_pass_rates_count_errors_apart() -> None:
    evals = pd.DataFrame(
        {
            "setting": ["solo"] * 5 + ["coop-comm"] * 4,
            "outcome": ["pass", "pass", "fail", "error", "error", "pass", "fail", "fail", "fail"],
        }
    )
    rates = pass_rates(evals).set_index("setting")
    assert rates.loc["solo", ["passed", "failed", "errors"]].tolist() == [2, 1, 2]
    assert rates.loc["solo", "pass_rate"] == pytest.approx(2 / 3)
    assert rates.loc["coop-comm", "pass_rate"] == pytest.approx(1 / 4)


def generated_experiment(n_pairs: int, p_solo: float, p_coop: float, seed: int) -> pd.DataFrame:
    """Pairs with a known effect: each pair has a difficulty shared by its settings, so the
    paired comparison has the correlation a real experiment has."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_pairs):
        u = rng.random()
        rows.append(
            {"pair": f"p{i}", "setting": "solo", "outcome": "pass" if u < p_solo else "fail"}
        )
        rows.append(
            {"pair": f"p{i}", "setting": "coop-comm", "outcome": "pass" if u < p_coop else "fail"}
        )
        rows.append(
            {
                "pair": f"p{i}",
                "setting": "coop-nocomm",
                "outcome": "error"
                if rng.random() < 0.05
                else ("pass" if rng.random() < p_solo else "fail"),
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_paired_deficit_recovers_a_known_effect(seed: int) -> None:
    evals = generated_experiment(600, p_solo=0.6, p_coop=0.35, seed=seed)
    d = paired_deficit(evals, "coop-comm", seed=seed)
    assert d["pairs"] == 600
    assert d["ci_low"] <= 0.25 <= d["ci_high"]
    assert d["ci_low"] > 0  # the effect is detected
    assert d["deficit"] == pytest.approx(d["baseline_rate"] - d["coop_rate"])


def test_no_effect_interval_covers_zero_and_errors_are_dropped() -> None:
    evals = generated_experiment(600, p_solo=0.5, p_coop=0.5, seed=4)
    table = deficits(evals)
    # a frame without experiment/repeat columns is one experiment "" at repeat 1: one
    # row for repeat 1 and the pooled row (repeat NULL), equal here
    assert set(table["experiment"]) == {""}
    assert set(table["coop_setting"]) == {"coop-comm", "coop-nocomm"}  # only those run
    per_repeat = table[table["repeat"] == 1].set_index("coop_setting")
    table = table[table["repeat"].isna()].set_index("coop_setting")
    pd.testing.assert_frame_equal(per_repeat.drop(columns="repeat"), table.drop(columns="repeat"))
    assert table.loc["coop-comm", "deficit"] == 0 and table.loc["coop-comm", "ci_low"] == 0
    nocomm = table.loc["coop-nocomm"]
    assert nocomm["pairs"] < 600  # pairs whose evaluation errored are left out
    assert nocomm["ci_low"] <= 0 <= nocomm["ci_high"]


def repeated_experiment(
    experiment: str, n_pairs: int, repeats: int, p_solo: float, p_coop: float, seed: int
) -> pd.DataFrame:
    """`repeats` repeats of solo and coop-comm over the same pairs, each pair with a fixed
    difficulty, so a pair's repeats are correlated as real ones are."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_pairs):
        difficulty = rng.random()
        for repeat in range(1, repeats + 1):
            noise = rng.uniform(-0.1, 0.1)
            for setting, p in (("solo", p_solo), ("coop-comm", p_coop)):
                outcome = "pass" if difficulty + noise < p else "fail"
                rows.append(
                    {"experiment": experiment, "setting": setting, "repeat": repeat,
                     "pair": f"p{i}", "outcome": outcome}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_deficits_per_experiment_and_repeat_with_a_pooled_row() -> None:
    evals = pd.concat(
        [
            repeated_experiment("strong", 300, 3, p_solo=0.7, p_coop=0.4, seed=1),
            repeated_experiment("even", 300, 2, p_solo=0.5, p_coop=0.5, seed=2),
        ]
    )
    table = deficits(evals, n_boot=1000)
    strong = table[table["experiment"] == "strong"]
    assert strong["repeat"].tolist()[:3] == [1, 2, 3] and strong["repeat"].isna().tolist()[3]
    assert (strong["coop_setting"] == "coop-comm").all()
    for _, row in strong.iterrows():
        # each repeat pairs only that repeat's runs: recompute it by hand
        one = evals[(evals["experiment"] == "strong")]
        if not pd.isna(row["repeat"]):
            one = one[one["repeat"] == row["repeat"]]
        solo = one[one["setting"] == "solo"].set_index(["pair", "repeat"])["outcome"]
        coop = one[one["setting"] == "coop-comm"].set_index(["pair", "repeat"])["outcome"]
        want = (solo == "pass").mean() - (coop.reindex(solo.index) == "pass").mean()
        assert row["deficit"] == pytest.approx(want)
        assert row["ci_low"] < row["deficit"] < row["ci_high"]
        assert row["ci_low"] > 0  # the effect (0.3) is detected
    pooled = strong[strong["repeat"].isna()].iloc[0]
    assert (pooled["pairs"], pooled["pair_runs"]) == (300, 900)
    assert pooled["deficit"] == pytest.approx(strong["deficit"].iloc[:3].mean())
    even = table[(table["experiment"] == "even") & table["repeat"].isna()].iloc[0]
    assert even["pair_runs"] == 600 and even["ci_low"] <= 0 <= even["ci_high"]


def test_the_pooled_interval_resamples_pairs_not_pair_runs() -> None:
    """Three identical repeats carry no more information than one: resampling pairs gives
    the one-repeat interval; resampling pair-runs would shrink it by about sqrt(3)."""
    one = repeated_experiment("x", 200, 1, p_solo=0.6, p_coop=0.4, seed=5)
    three = pd.concat([one.assign(repeat=r) for r in (1, 2, 3)])
    single = deficits(one, n_boot=2000).iloc[-1]
    tripled = deficits(three, n_boot=2000).iloc[-1]
    assert tripled["deficit"] == pytest.approx(single["deficit"])
    width = single["ci_high"] - single["ci_low"]
    assert tripled["ci_high"] - tripled["ci_low"] == pytest.approx(width, rel=0.15)


def test_a_coop_repeat_without_its_baseline_has_no_pairs() -> None:
    evals = pd.DataFrame(
        {
            "experiment": ["e"] * 4,
            "setting": ["solo", "coop-comm", "coop-comm", "coop-comm"],
            "repeat": [1, 1, 2, 3],
            "pair": ["p"] * 4,
            "outcome": ["pass", "fail", "fail", "pass"],
        }
    )
    table = deficits(evals, n_boot=100)
    assert table["pairs"].tolist() == [1, 0, 0, 1]  # r1, r2, r3, pooled (only r1 matched)
    assert table["deficit"].iloc[-1] == 1.0


def test_bootstrap_over_pairs_is_the_plain_bootstrap_with_one_run_per_pair() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, -1.0, 0.0, 1.0])
    low, high = bootstrap_over_pairs(values, np.ones(len(values)), n_boot=4000, seed=3)
    rng = np.random.default_rng(3)
    boots = values[rng.integers(0, len(values), size=(4000, len(values)))].mean(axis=1)
    assert (low, high) == tuple(np.percentile(boots, [2.5, 97.5]))
    assert all(
        math.isnan(v) for v in bootstrap_over_pairs(np.array([]), np.array([]), n_boot=10, seed=0)
    )


def test_pass_rates_keep_experiments_apart() -> None:
    evals = pd.concat(
        [
            repeated_experiment("a", 50, 2, p_solo=0.8, p_coop=0.2, seed=6),
            repeated_experiment("b", 50, 1, p_solo=0.3, p_coop=0.3, seed=7),
        ]
    )
    rates = pass_rates(evals).set_index(["experiment", "setting"])
    assert len(rates) == 4
    a_solo = evals[(evals["experiment"] == "a") & (evals["setting"] == "solo")]
    assert rates.loc[("a", "solo"), "passed"] == (a_solo["outcome"] == "pass").sum()
    assert rates.loc[("a", "solo"), "passed"] + rates.loc[("a", "solo"), "failed"] == 100
    by_repeat = pass_rates(evals, by=("experiment", "setting", "repeat"))
    assert len(by_repeat) == 6


def test_analysis_views_group_by_experiment() -> None:
    evals = pd.DataFrame(
        {
            "experiment": ["a", "a", "a", "a", "b", "b"],
            "setting": ["solo", "solo", "coop-comm", "coop-comm", "solo", "coop-comm"],
            "repeat": [1, 2, 1, 2, 1, 1],
            "pair": ["p"] * 6,
            "repo": ["r"] * 6,
            "outcome": ["pass", "pass", "fail", "pass", "fail", "error"],
        }
    )
    runs = evals[["experiment", "setting", "repeat", "pair"]].assign(
        cost=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        messages_sent=[None, None, 3, 5, None, 1],
        messaging_enabled=[False, False, True, True, False, True],
    )
    conn = duckdb.connect()
    conn.register("eval_results", evals)
    conn.register("run_results", runs)
    out = {}
    for name, sql in ANALYSIS_VIEWS.items():
        conn.execute(f"create view {name} as {sql}")
        out[name] = conn.sql(f"select * from {name} order by all").df()
    by_setting = out["pass_rate_by_setting"].set_index(["experiment", "setting"])
    assert by_setting.loc[("a", "solo"), ["repeats", "passed", "pass_rate"]].tolist() == [2, 2, 1.0]
    assert by_setting.loc[("a", "coop-comm"), "pass_rate"] == 0.5
    assert by_setting.loc[("b", "coop-comm"), "errors"] == 1
    assert math.isnan(by_setting.loc[("b", "coop-comm"), "pass_rate"])
    cost = out["cost_per_passing_pair"].set_index(["experiment", "setting"])
    assert cost.loc[("a", "solo"), "cost_per_passing_pair"] == 1.5
    assert cost.loc[("a", "coop-comm"), "cost_per_passing_pair"] == 7.0
    messages = out["messages_vs_success"]
    assert messages[["experiment", "messages_sent", "pass_rate"]].values.tolist() == [
        ["a", 3, 0.0], ["a", 5, 1.0]
    ]  # fmt: skip
    assert set(out["pass_rate_by_repo"]["experiment"]) == {"a", "b"}
