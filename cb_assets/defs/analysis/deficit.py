"""Pass rates, the coordination deficit and its bootstrap interval, per-repository breakdown.

All over `eval_results` rows (one per pair-run, outcome pass / fail / error); errors are
counted apart and never enter a pass rate.
"""

import math

import numpy as np
import pandas as pd

from cb_assets.shared.settings import SETTING_NAMES


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_rates(evals: pd.DataFrame, by: tuple[str, ...] = ("setting",)) -> pd.DataFrame:
    rows = []
    for key, group in evals.groupby(list(by)):
        passed = int((group["outcome"] == "pass").sum())
        failed = int((group["outcome"] == "fail").sum())
        errors = int((group["outcome"] == "error").sum())
        n = passed + failed
        low, high = wilson(passed, n)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                "passed": passed,
                "failed": failed,
                "errors": errors,
                "pass_rate": passed / n if n else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def _no_pairs(coop: str) -> dict:
    return {
        "coop_setting": coop,
        "pairs": 0,
        **dict.fromkeys(("baseline_rate", "coop_rate", "deficit", "ci_low", "ci_high"), math.nan),
    }


def paired_deficit(
    evals: pd.DataFrame, coop: str, *, baseline: str = "solo", n_boot: int = 5000, seed: int = 0
) -> dict:
    """Baseline pass rate minus coop pass rate over the pairs evaluated (without error) in
    both settings, with a percentile bootstrap interval that resamples pairs."""
    ok = evals[evals["outcome"] != "error"]
    wide = ok.pivot_table(index="pair", columns="setting", values="outcome", aggfunc="first")
    if baseline not in wide or coop not in wide:
        return _no_pairs(coop)
    both = wide[[baseline, coop]].dropna()
    a = (both[baseline] == "pass").to_numpy(dtype=float)
    b = (both[coop] == "pass").to_numpy(dtype=float)
    n = len(both)
    if n == 0:
        return _no_pairs(coop)
    diff = a - b
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return {
        "coop_setting": coop,
        "pairs": n,
        "baseline_rate": float(a.mean()),
        "coop_rate": float(b.mean()),
        "deficit": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def deficits(evals: pd.DataFrame, n_boot: int = 5000, seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        [paired_deficit(evals, s, n_boot=n_boot, seed=seed) for s in SETTING_NAMES if s != "solo"]
    )


ANALYSIS_VIEWS = {
    "pass_rate_by_setting": """
        select setting,
               count(*) filter (where outcome = 'pass') as passed,
               count(*) filter (where outcome = 'fail') as failed,
               count(*) filter (where outcome = 'error') as errors,
               passed / nullif(passed + failed, 0) as pass_rate
        from eval_results group by setting""",
    "cost_per_passing_pair": """
        with runs as (select pair, setting, sum(cost) as cost from run_results group by all)
        select e.setting, sum(r.cost) as cost,
               count(*) filter (where e.outcome = 'pass') as passing_pairs,
               sum(r.cost) / nullif(count(*) filter (where e.outcome = 'pass'), 0)
                   as cost_per_passing_pair
        from eval_results e join runs r using (pair, setting) group by e.setting""",
    "messages_vs_success": """
        select r.messages_sent, count(*) as pairs,
               avg(case when e.outcome = 'pass' then 1.0 else 0.0 end) as pass_rate
        from (select distinct pair, setting, messages_sent from run_results
              where setting = 'coop-comm') r
        join eval_results e using (pair, setting)
        where e.outcome <> 'error' group by r.messages_sent""",
    "pass_rate_by_repo": """
        select repo, setting,
               count(*) filter (where outcome = 'pass') as passed,
               count(*) filter (where outcome = 'fail') as failed,
               count(*) filter (where outcome = 'pass')
                   / nullif(count(*) filter (where outcome <> 'error'), 0) as pass_rate
        from eval_results group by all""",
}
