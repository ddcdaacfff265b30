"""The results manifest of one experiment: per setting (and per repeat), counts, cost,
steps, patches and messages.

A pair-run is an arm × a pair (`partition_key(arm, pair)`): within a setting, one per pair
and repeat. `pairs` in a block counts pair-runs.

Cost, per setting and in total:
- `cost_total`: everything spent: every recorded attempt (failed, superseded or final)
  plus ingested results no attempt row accounts for;
- `cost_final_results`: what the final results (the `run_results` rows) cost;
- `failed_attempts_cost`: what infrastructure-failed attempts (`infra_error`) cost;
- `cost_other_attempts`: what the remaining attempts cost: earlier results a forced rerun
  replaced, configuration errors.
`cost_total` = `cost_final_results` + `failed_attempts_cost` + `cost_other_attempts`.
"""

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cb_assets.shared.failures import INFRA_ERROR, RESULTS
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES

KNOWN_STATUSES = ("Submitted", "LimitsExceeded", "Error")


def _block(rows: pd.DataFrame, attempts: pd.DataFrame | None, by: pd.Series) -> dict[str, Any]:
    """Counts over `rows`, one pair-run per distinct value of `by` (its partition key),
    and what was spent on them."""
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
        keys = _keys(attempts)
        have_result = set(_keys(results))
        mine = attempts["classification"].isin(RESULTS) & keys.isin(have_result)
        # keys[mine]: assigning a whole column to a frame with no rows gives it that
        # column's index, and every attempt would then pass for a result's
        behind = (
            attempts[mine]
            .assign(key=keys[mine])
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


def _keys(rows: pd.DataFrame) -> pd.Series:
    """Each row's pair-run: its partition key, `<arm>|<pair>`."""
    return partition_key(rows["arm"].astype(str), rows["pair"].astype(str))


def _settings_present(
    results: pd.DataFrame, attempts: pd.DataFrame | None, settings: Sequence[str] | None
) -> list[str]:
    """`settings` in their order, then any other setting the rows hold (known ones in
    SETTING_NAMES order, unknown ones sorted)."""
    seen = set(results["setting"].dropna().astype(str))
    if attempts is not None and not attempts.empty:
        seen |= set(attempts["setting"].dropna().astype(str))
    chosen = list(settings or [])
    chosen += [s for s in SETTING_NAMES if s in seen and s not in chosen]
    return chosen + sorted(seen - set(chosen))


def _max_repeat(frame: pd.DataFrame | None) -> int:
    if frame is None or frame.empty or "repeat" not in frame:
        return 1
    top = frame["repeat"].max()
    return 1 if pd.isna(top) else int(top)


def build_manifest(
    results: pd.DataFrame,
    attempts: pd.DataFrame | None = None,
    *,
    settings: Sequence[str] | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    """Manifest of ONE experiment over its `run_results` rows (one per agent) and its
    `run_attempts` rows: a block per setting, then the totals; with more than one repeat,
    a block per setting and repeat under `per_repeat`. `cost_total` is everything spent,
    every attempt included; `cost_final_results` is the final results' cost alone (see the
    module docstring).

    `settings` are the experiment's (blocks of zeros for those with no rows yet), followed
    by any other setting present in the rows; `repeats` the experiment's (by default the
    highest repeat in the rows)."""
    names = _settings_present(results, attempts, settings)
    repeats = repeats or max(_max_repeat(results), _max_repeat(attempts))
    blocks, per_repeat = {}, {}
    for name in names:
        mine = results[results["setting"] == name]
        tried = None if attempts is None else attempts[attempts["setting"] == name]
        blocks[name] = _block(mine, tried, _keys(mine))
        if repeats > 1:
            per_repeat[name] = {}
            for r in range(1, repeats + 1):
                rows = mine[(mine["repeat"] == r).fillna(False).astype(bool)]
                runs = None
                if tried is not None:
                    runs = tried[(tried["repeat"] == r).fillna(False).astype(bool)]
                per_repeat[name][str(r)] = _block(rows, runs, _keys(rows))
    manifest: dict[str, Any] = {"repeats": repeats, "settings": blocks}
    if repeats > 1:
        manifest["per_repeat"] = per_repeat
    manifest["totals"] = _block(results, attempts, _keys(results))
    return manifest


def manifest_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """The manifest as one row per setting plus a `total` row, for DuckDB (the per-repeat
    blocks stay in the JSON)."""
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
