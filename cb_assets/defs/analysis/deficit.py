"""Pass rates, the coordination deficit and its bootstrap interval, per-repository breakdown.

All over `eval_results` rows (one per pair-run, outcome pass / fail / error); errors are
counted apart and never enter a pass rate. A pair-run is (experiment, setting, repeat,
pair): comparisons pair runs within one experiment, and intervals over repeats resample
whole pairs, because a pair's repeats share its difficulty and are not independent draws.
"""

import math

import numpy as np
import pandas as pd

from cb_assets.shared.settings import SETTING_NAMES, get_setting

COOP_SETTINGS = tuple(s for s in SETTING_NAMES if get_setting(s).is_coop)
RUN_KEY = ["experiment", "setting", "repeat", "pair"]  # what identifies a pair-run
DEFICIT_COLUMNS = {
    "experiment": "string",
    "coop_setting": "string",
    "repeat": "Int64",  # NULL on the row pooling every repeat
    "pairs": "Int64",
    "pair_runs": "Int64",
    "baseline_rate": "float64",
    "coop_rate": "float64",
    "deficit": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
}
_BOOT_CHUNK = 2_000_000  # resampled indices held in memory at once


def with_arm_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `experiment` and `repeat` columns: rows written before experiments and
    repeats existed are one experiment, "", at repeat 1."""
    missing = {k: v for k, v in (("experiment", ""), ("repeat", 1)) if k not in frame}
    return frame.assign(**missing) if missing else frame


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_over_pairs(
    sums: np.ndarray, counts: np.ndarray, *, n_boot: int, seed: int
) -> tuple[float, float]:
    """95% percentile interval of sum(values) / count(values) when whole pairs are resampled:
    pair i contributes `sums[i]` over its `counts[i]` (>= 1) pair-runs, one per repeat."""
    n = len(sums)
    if n == 0:
        return (math.nan, math.nan)
    sums, counts = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    step = max(1, _BOOT_CHUNK // n)  # bounds memory for large pair counts
    for start in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - start), n))
        stats[start : start + len(idx)] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    low, high = np.percentile(stats, [2.5, 97.5])
    return (float(low), float(high))


def pass_rates(
    evals: pd.DataFrame, by: tuple[str, ...] = ("experiment", "setting")
) -> pd.DataFrame:
    """Passed, failed, errors, pass rate and Wilson interval per `by` group. Pooled over
    repeats unless `by` names "repeat" (see compare.experiment_summary for an interval
    that accounts for repeats)."""
    evals = with_arm_columns(evals)
    rows = []
    for key, group in evals.groupby(list(by), dropna=False, sort=True):
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
    return pd.DataFrame(
        rows, columns=[*by, "passed", "failed", "errors", "pass_rate", "ci_low", "ci_high"]
    )


def _no_pairs(coop: str) -> dict:
    return {
        "coop_setting": coop,
        "pairs": 0,
        "pair_runs": 0,
        **dict.fromkeys(("baseline_rate", "coop_rate", "deficit", "ci_low", "ci_high"), math.nan),
    }


def paired_deficit(
    evals: pd.DataFrame, coop: str, *, baseline: str = "solo", n_boot: int = 5000, seed: int = 0
) -> dict:
    """Baseline pass rate minus coop pass rate over the pair-runs evaluated (without error)
    in both settings at the same experiment and repeat, with a percentile bootstrap interval
    that resamples pairs (a resampled pair brings all its repeats)."""
    ok = with_arm_columns(evals)
    ok = ok[ok["outcome"].isin(("pass", "fail"))]
    wide = ok.pivot_table(
        index=["experiment", "pair", "repeat"], columns="setting", values="outcome",
        aggfunc="first",
    )  # fmt: skip
    if baseline not in wide or coop not in wide:
        return _no_pairs(coop)
    both = wide[[baseline, coop]].dropna()
    if both.empty:
        return _no_pairs(coop)
    a = (both[baseline] == "pass").astype(float)
    b = (both[coop] == "pass").astype(float)
    per_pair = (a - b).groupby(level=["experiment", "pair"])
    low, high = bootstrap_over_pairs(
        per_pair.sum().to_numpy(), per_pair.size().to_numpy(), n_boot=n_boot, seed=seed
    )
    return {
        "coop_setting": coop,
        "pairs": per_pair.ngroups,
        "pair_runs": len(both),
        "baseline_rate": float(a.mean()),
        "coop_rate": float(b.mean()),
        "deficit": float((a - b).mean()),
        "ci_low": low,
        "ci_high": high,
    }


def deficits(evals: pd.DataFrame, n_boot: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Per experiment and coop setting it ran: one row per repeat (pairs matched within that
    repeat) and one pooled row, repeat NULL (pair-runs matched by pair and repeat, the
    interval resampling pairs). A coop repeat without a baseline at the same repeat shows
    pairs = 0 rather than borrowing another repeat's baseline."""
    evals = with_arm_columns(evals)
    rows = []
    for experiment, frame in evals.groupby("experiment", dropna=False, sort=True):
        for coop in (s for s in COOP_SETTINGS if (frame["setting"] == s).any()):
            repeats = sorted(frame.loc[frame["setting"] == coop, "repeat"].dropna().unique())
            for repeat in repeats:
                one = frame[frame["repeat"] == repeat]
                d = paired_deficit(one, coop, n_boot=n_boot, seed=seed)
                rows.append({"experiment": experiment, "repeat": repeat, **d})
            d = paired_deficit(frame, coop, n_boot=n_boot, seed=seed)
            rows.append({"experiment": experiment, "repeat": pd.NA, **d})
    return pd.DataFrame(rows, columns=list(DEFICIT_COLUMNS)).astype(DEFICIT_COLUMNS)


# Over run_results / eval_results holding several experiments (and repeats): every view
# keeps experiments apart and joins on the whole pair-run key.
ANALYSIS_VIEWS = {
    "pass_rate_by_setting": """
        select experiment, setting,
               count(distinct repeat) as repeats,
               count(*) filter (where outcome = 'pass') as passed,
               count(*) filter (where outcome = 'fail') as failed,
               count(*) filter (where outcome = 'error') as errors,
               passed / nullif(passed + failed, 0) as pass_rate
        from eval_results group by experiment, setting""",
    "cost_per_passing_pair": """
        with runs as (
            select experiment, setting, repeat, pair, sum(cost) as cost
            from run_results group by all)
        select e.experiment, e.setting, sum(r.cost) as cost,
               count(*) filter (where e.outcome = 'pass') as passing_pairs,
               sum(r.cost) / nullif(count(*) filter (where e.outcome = 'pass'), 0)
                   as cost_per_passing_pair
        from eval_results e join runs r using (experiment, setting, repeat, pair)
        group by e.experiment, e.setting""",
    "messages_vs_success": """
        select r.experiment, r.setting, r.messages_sent, count(*) as pairs,
               avg(case when e.outcome = 'pass' then 1.0 else 0.0 end) as pass_rate
        from (select distinct experiment, setting, repeat, pair, messages_sent
              from run_results where messaging_enabled) r
        join eval_results e using (experiment, setting, repeat, pair)
        where e.outcome <> 'error' group by all""",
    "pass_rate_by_repo": """
        select experiment, repo, setting,
               count(*) filter (where outcome = 'pass') as passed,
               count(*) filter (where outcome = 'fail') as failed,
               count(*) filter (where outcome = 'pass')
                   / nullif(count(*) filter (where outcome <> 'error'), 0) as pass_rate
        from eval_results group by all""",
}
