"""The results manifest: per-setting counts, cost, steps, patches and messages.

Cost, per setting and in total:
- `cost_total`: everything spent: every recorded attempt (failed, superseded or final)
  plus ingested results no attempt row accounts for;
- `cost_final_results`: what the final results (the `run_results` rows) cost;
- `failed_attempts_cost`: what infrastructure-failed attempts (`infra_error`) cost;
- `cost_other_attempts`: what the remaining attempts cost: earlier results a forced rerun
  replaced, configuration errors.
`cost_total` = `cost_final_results` + `failed_attempts_cost` + `cost_other_attempts`.
"""

from typing import Any

import pandas as pd

from cb_assets.shared.failures import INFRA_ERROR, RESULTS
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES

KNOWN_STATUSES = ("Submitted", "LimitsExceeded", "Error")


def _block(rows: pd.DataFrame, attempts: pd.DataFrame | None, by: pd.Series) -> dict[str, Any]:
    """Counts over `rows`, one pair-run per distinct value of `by` (the pair within a
    setting, pair and setting over all of them), and what was spent on them."""
    per_pair = rows[~by.duplicated()]
    pairs = len(per_pair)
    statuses = rows["status"].astype(str).value_counts()
    spend = _spend(rows, attempts)
    steps = int(rows["steps"].fillna(0).sum())
    messages = int(per_pair["messages_sent"].fillna(0).sum())
    return {
        "pairs": pairs,
        "agents": len(rows),
        "status_counts": {
            **{s: int(statuses.get(s, 0)) for s in KNOWN_STATUSES},
            **{str(s): int(n) for s, n in statuses.items() if s not in KNOWN_STATUSES},
        },
        **spend,
        # everything spent per pair-run, like the headline `cost_total`
        "cost_avg_per_pair": round(spend["cost_total"] / pairs, 6) if pairs else 0.0,
        "steps_total": steps,
        "steps_avg_per_pair": round(steps / pairs, 3) if pairs else 0.0,
        "nonempty_patches": int((rows["patch_lines"].fillna(0) > 0).sum()),
        "patch_lines_total": int(rows["patch_lines"].fillna(0).sum()),
        "messages_total": messages,
        "messages_avg_per_pair": round(messages / pairs, 3) if pairs else 0.0,
    }


def _cost(value: Any) -> float:
    return round(float(value), 6)


def _spend(results: pd.DataFrame, attempts: pd.DataFrame | None) -> dict[str, Any]:
    """What was spent, split as the module docstring says. The final result of a pair-run
    that ran is its latest attempt ending in a result; its cost is counted once, as the
    result's. An ingested result with no such attempt adds its own cost."""
    final = _cost(results["cost"].fillna(0).sum())
    if attempts is None or attempts.empty:
        failed, other, n_failed = 0.0, 0.0, 0
    else:
        keys = partition_key(attempts["pair"].astype(str), attempts["setting"].astype(str))
        have_result = set(
            partition_key(results["pair"].astype(str), results["setting"].astype(str))
        )
        behind = (
            attempts[attempts["classification"].isin(RESULTS) & keys.isin(have_result)]
            .assign(key=keys)
            .sort_values("attempt")
            .groupby("key")
            .tail(1)
            .index
        )
        others = attempts.drop(index=behind)
        is_failed = others["classification"] == INFRA_ERROR
        n_failed = int(is_failed.sum())
        failed = _cost(others.loc[is_failed, "cost"].fillna(0).sum())
        other = _cost(others.loc[~is_failed, "cost"].fillna(0).sum())
    return {
        "cost_total": _cost(final + failed + other),
        "cost_final_results": final,
        "failed_attempts": n_failed,
        "failed_attempts_cost": failed,
        "cost_other_attempts": other,
    }


def build_manifest(results: pd.DataFrame, attempts: pd.DataFrame | None = None) -> dict[str, Any]:
    """Manifest over `run_results` rows (one per agent) and `run_attempts` rows: every
    setting, then the totals. `cost_total` is everything spent, every attempt included;
    `cost_final_results` is the final results' cost alone (see the module docstring)."""
    settings = {}
    for name in SETTING_NAMES:
        mine = results[results["setting"] == name]
        tried = None if attempts is None else attempts[attempts["setting"] == name]
        settings[name] = _block(mine, tried, mine["pair"])
    totals = _block(results, attempts, partition_key(results["pair"], results["setting"]))
    return {"settings": settings, "totals": totals}


def manifest_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """The manifest as one row per setting plus a `total` row, for DuckDB."""
    rows = []
    for name, block in [*manifest["settings"].items(), ("total", manifest["totals"])]:
        flat = {k: v for k, v in block.items() if k != "status_counts"}
        flat.update(
            {
                f"status_{s.lower()}": n
                for s, n in block["status_counts"].items()
                if s in KNOWN_STATUSES
            }
        )
        flat["status_other"] = sum(
            n for s, n in block["status_counts"].items() if s not in KNOWN_STATUSES
        )
        rows.append({"setting": name, **flat})
    return pd.DataFrame(rows)
