"""Experiments side by side: pass rate with an interval that knows about repeats, cost and
messages per setting, and a leaderboard fit for a markdown table.

A pair-run is (experiment, setting, repeat, pair). With one repeat, pair-runs are the
pairs and the Wilson interval applies; with several, a pair's repeats share its difficulty,
so the interval comes from a bootstrap that resamples whole pairs, never single pair-runs.
"""

import math

import pandas as pd

from cb_assets.defs.analysis.deficit import (
    COOP_SETTINGS,
    RUN_KEY,
    bootstrap_over_pairs,
    wilson,
    with_arm_columns,
)
from cb_assets.shared.settings import SETTING_NAMES, SETTINGS

WILSON, BOOTSTRAP = "wilson", "bootstrap over pairs"
SUMMARY_DTYPES = {
    "experiment": "string",
    "setting": "string",
    "repeats": "Int64",
    "pairs": "Int64",  # pair-runs with a run_results row: distinct (pair, repeat)
    "evaluated": "Int64",
    "passed": "Int64",
    "pass_rate": "float64",
    "rate_mean": "float64",
    "rate_sd": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "interval": "string",
    "cost": "float64",
    "cost_per_pair": "float64",
    "cost_per_passing_pair": "float64",
    "messages_per_pair": "float64",
    "agent_errors": "Int64",
}
_NAN = math.nan


def _pair_runs(results: pd.DataFrame) -> pd.DataFrame:
    """One row per pair-run: its cost over all agents, messages sent, any agent in Error."""
    results = with_arm_columns(results)
    frame = results.assign(
        agent_error=results["status"].eq("Error").fillna(False).astype(bool),
        # a frame without the column (solo-only, hand-built) has no messages to count
        messages_sent=pd.to_numeric(results["messages_sent"], errors="coerce")
        if "messages_sent" in results
        else math.nan,
    )
    return frame.groupby(RUN_KEY, dropna=False, as_index=False).agg(
        cost=("cost", "sum"),
        messages_sent=("messages_sent", "max"),
        agent_error=("agent_error", "any"),
    )


def _order(keys: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Experiments by name, settings in registry order (unknown ones last)."""
    rank = {s: i for i, s in enumerate(SETTING_NAMES)}
    return sorted(keys, key=lambda k: (str(k[0]), rank.get(k[1], len(rank)), str(k[1])))


def _rates(ok: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """The pass columns over evaluated (pass/fail) pair-runs of one experiment × setting."""
    passed = int((ok["outcome"] == "pass").sum())
    evaluated = len(ok)
    if evaluated == 0:
        return {"evaluated": 0, "passed": pd.NA, "interval": pd.NA}
    wins = (ok["outcome"] == "pass").astype(float)
    per_repeat = wins.groupby(ok["repeat"]).mean()
    out = {"evaluated": evaluated, "passed": passed, "pass_rate": passed / evaluated}
    if len(per_repeat) < 2:
        low, high = wilson(passed, evaluated)
        return {**out, "rate_mean": passed / evaluated, "ci_low": low, "ci_high": high,
                "interval": WILSON}  # fmt: skip
    per_pair = wins.groupby(ok["pair"])
    low, high = bootstrap_over_pairs(
        per_pair.sum().to_numpy(), per_pair.size().to_numpy(), n_boot=n_boot, seed=seed
    )
    return {
        **out,
        "rate_mean": float(per_repeat.mean()),
        "rate_sd": float(per_repeat.std(ddof=1)),
        "ci_low": low,
        "ci_high": high,
        "interval": BOOTSTRAP,
    }


def _mean(values: pd.Series) -> float:
    """The mean as a float: NaN, never pd.NA, when there is nothing to average (a setting
    with evaluations but no run_results rows, whose messages are a nullable column)."""
    mean = values.mean()
    return _NAN if pd.isna(mean) else float(mean)


def _groups(frame: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """The rows of each (experiment, setting); a row missing either is in none, as a
    comparison with a missing value matches nothing."""
    return {
        key: group
        for key, group in frame.groupby(["experiment", "setting"], sort=False, dropna=True)
    }


def experiment_summary(
    results: pd.DataFrame, evals: pd.DataFrame | None, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per (experiment, setting): repeats, pair-runs, evaluated, passed, pass rate
    (pooled over repeats) with its 95% interval (Wilson for one repeat; with several, the
    per-repeat mean and sd and a bootstrap over pairs), cost, cost per pair and per passing
    pair, messages per pair (coop only) and pair-runs with an agent in Error."""
    runs = _pair_runs(results)
    evals = (
        with_arm_columns(evals)
        if evals is not None
        else pd.DataFrame(columns=[*RUN_KEY, "outcome"])
    )
    # one outcome per pair-run, as eval_results holds; `error` never enters a rate
    evals = evals.drop_duplicates(RUN_KEY)
    keys = set(zip(runs["experiment"], runs["setting"], strict=True))
    keys |= set(zip(evals["experiment"], evals["setting"], strict=True))
    # split once (a mask per experiment × setting is quadratic in experiments)
    runs_of, evals_of = _groups(runs), _groups(evals)
    rows = []
    for experiment, setting in _order(keys):
        g_runs = runs_of.get((experiment, setting), runs.iloc[:0])
        g_evals = evals_of.get((experiment, setting), evals.iloc[:0])
        ok = g_evals[g_evals["outcome"].isin(("pass", "fail"))]
        rates = _rates(ok, n_boot, seed)
        cost, pairs = float(g_runs["cost"].sum()), len(g_runs)
        passed = rates["passed"]
        coop = SETTINGS[setting].is_coop if setting in SETTINGS else True
        rows.append(
            {
                "experiment": experiment,
                "setting": setting,
                "repeats": len(set(g_runs["repeat"].dropna()) | set(g_evals["repeat"].dropna())),
                "pairs": pairs,
                **rates,
                "cost": cost,
                "cost_per_pair": cost / pairs if pairs else _NAN,
                "cost_per_passing_pair": cost / passed if passed is not pd.NA and passed else _NAN,
                "messages_per_pair": _mean(g_runs["messages_sent"]) if coop else _NAN,
                "agent_errors": int(g_runs["agent_error"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_DTYPES)).astype(SUMMARY_DTYPES)


def _rate_text(row: pd.Series) -> str:
    if pd.isna(row["pass_rate"]):
        return "n/a"
    return f"{row['pass_rate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def leaderboard(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per experiment, best pass rate first: each setting's pass rate as
    "0.42 [0.30, 0.55]" and, per coop setting, `deficit <setting>` = solo rate − its rate
    (pooled rates, unpaired: deficits() gives the paired deficit with its interval)."""
    present = [s for _, s in _order({("", s) for s in summary["setting"]})]
    coops = [s for s in present if s in COOP_SETTINGS]
    rows = []
    for experiment, group in summary.groupby("experiment", sort=True):
        by_setting = group.set_index("setting")
        row: dict = {"experiment": experiment}
        row |= {s: _rate_text(by_setting.loc[s]) if s in by_setting.index else "" for s in present}
        rate = by_setting["pass_rate"].astype(float)
        for coop in coops:
            d = rate.get("solo", _NAN) - rate.get(coop, _NAN)
            row[f"deficit {coop}"] = "" if math.isnan(d) else f"{d:+.2f}"
        row["_best"] = rate.max()
        rows.append(row)
    board = pd.DataFrame(
        rows, columns=["experiment", *present, *(f"deficit {c}" for c in coops), "_best"]
    )
    board = board.sort_values("_best", ascending=False, na_position="last", kind="stable")
    return board.drop(columns="_best").reset_index(drop=True)


COMPARE_VIEWS = {
    # per arm (experiment × setting × repeat): plain counts and rates, no intervals
    "experiment_settings": """
        with runs as (
            select experiment, setting, repeat, pair, sum(cost) as cost,
                   max(messages_sent) as messages_sent
            from run_results group by all)
        select r.experiment, r.setting, r.repeat,
               count(*) as pair_runs,
               count(*) filter (where e.outcome = 'pass') as passed,
               count(*) filter (where e.outcome = 'fail') as failed,
               count(*) filter (where e.outcome = 'error') as errors,
               passed / nullif(passed + failed, 0) as pass_rate,
               sum(r.cost) as cost,
               avg(r.messages_sent) as messages_per_pair
        from runs r left join eval_results e using (experiment, setting, repeat, pair)
        group by r.experiment, r.setting, r.repeat""",
}
