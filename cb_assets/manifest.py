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


def build_manifest(results: pd.DataFrame) -> dict[str, Any]:
    """Manifest over `run_results` rows (one per agent): every setting, then the totals."""
    settings = {name: _block(results[results["setting"] == name]) for name in SETTING_NAMES}
    return {
        "settings": settings,
        "totals": _block(results.assign(pair=results["pair"] + "|" + results["setting"])),
    }


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
