import math
import random

import pandas as pd
import pytest

from cb_assets.defs.analysis.deficit import deficits, paired_deficit, pass_rates, wilson


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
    table = deficits(evals).set_index("coop_setting")
    assert table.loc["coop-comm", "deficit"] == 0 and table.loc["coop-comm", "ci_low"] == 0
    nocomm = table.loc["coop-nocomm"]
    assert nocomm["pairs"] < 600  # pairs whose evaluation errored are left out
    assert nocomm["ci_low"] <= 0 <= nocomm["ci_high"]
