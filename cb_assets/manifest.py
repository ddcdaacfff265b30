"""The results manifest: per-setting counts, cost, steps, patches and messages."""

from typing import Any

import pandas as pd

from cb_assets.settings import SETTING_NAMES

KNOWN_STATUSES = ("Submitted", "LimitsExceeded", "Error")


def _block(rows: pd.DataFrame) -> dict[str, Any]:
    per_pair = rows.drop_duplicates("pair")
    pairs = len(per_pair)
    statuses = rows["status"].astype(str).value_counts()
    cost = float(rows["cost"].fillna(0).sum())
    steps = int(rows["steps"].fillna(0).sum())
    messages = int(per_pair["messages_sent"].fillna(0).sum())
    return {
        "pairs": pairs,
        "agents": len(rows),
        "status_counts": {
            **{s: int(statuses.get(s, 0)) for s in KNOWN_STATUSES},
            **{str(s): int(n) for s, n in statuses.items() if s not in KNOWN_STATUSES},
        },
        "cost_total": round(cost, 6),
        "cost_avg_per_pair": round(cost / pairs, 6) if pairs else 0.0,
        "steps_total": steps,
        "steps_avg_per_pair": round(steps / pairs, 3) if pairs else 0.0,
        "nonempty_patches": int((rows["patch_lines"].fillna(0) > 0).sum()),
        "patch_lines_total": int(rows["patch_lines"].fillna(0).sum()),
        "messages_total": messages,
        "messages_avg_per_pair": round(messages / pairs, 3) if pairs else 0.0,
    }


def _failed_spend(attempts: pd.DataFrame | None) -> dict[str, Any]:
    """What infrastructure-failed attempts cost, kept apart from the final results' cost."""
    if attempts is None or attempts.empty:
        return {"failed_attempts": 0, "failed_attempts_cost": 0.0}
    failed = attempts[attempts["classification"] == "infra_error"]
    return {
        "failed_attempts": len(failed),
        "failed_attempts_cost": round(float(failed["cost"].fillna(0).sum()), 6),
    }


def build_manifest(results: pd.DataFrame, attempts: pd.DataFrame | None = None) -> dict[str, Any]:
    """Manifest over `run_results` rows (one per agent) and `run_attempts` rows: every
    setting, then the totals. `cost_total` is the final results' cost; what failed
    attempts spent is `failed_attempts_cost`."""
    settings = {}
    for name in SETTING_NAMES:
        mine = None if attempts is None else attempts[attempts["setting"] == name]
        settings[name] = {**_block(results[results["setting"] == name]), **_failed_spend(mine)}
    totals = _block(results.assign(pair=results["pair"] + "|" + results["setting"]))
    return {"settings": settings, "totals": {**totals, **_failed_spend(attempts)}}


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
