"""PNG figures of an experiment: cost and status mix per setting, pass rate with intervals."""

import base64
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.settings import SETTING_NAMES

COLORS = {"solo": "#4C72B0", "coop-comm": "#55A868", "coop-nocomm": "#C44E52"}


def _pyplot() -> Any:
    # Imported on first use: matplotlib costs a second at import, and every process that
    # loads the definitions (each run worker included) would pay it.
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on these machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_per_setting(manifest: dict, path: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    costs = [manifest["settings"][s]["cost_total"] for s in SETTING_NAMES]
    failed = [manifest["settings"][s].get("failed_attempts_cost", 0.0) for s in SETTING_NAMES]
    ax.bar(SETTING_NAMES, costs, color=[COLORS[s] for s in SETTING_NAMES], label="final results")
    ax.bar(SETTING_NAMES, failed, bottom=costs, color="#999999", label="failed attempts")
    ax.set_ylabel("cost (USD)")
    ax.set_title("Cost per setting")
    ax.legend(fontsize=8)
    return _save(fig, path)


def status_mix(manifest: dict, path: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    statuses = sorted({k for s in SETTING_NAMES for k in manifest["settings"][s]["status_counts"]})
    bottom = [0] * len(SETTING_NAMES)
    for status in statuses:
        counts = [manifest["settings"][s]["status_counts"].get(status, 0) for s in SETTING_NAMES]
        ax.bar(SETTING_NAMES, counts, bottom=bottom, label=status)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_ylabel("agent runs")
    ax.set_title("Agent status per setting")
    ax.legend(fontsize=8)
    return _save(fig, path)


def pass_rate(rates: pd.DataFrame, path: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    rates = rates.set_index("setting").reindex(list(SETTING_NAMES))
    values = rates["pass_rate"].fillna(0).tolist()
    err = [
        [
            v - lo if not math.isnan(lo) else 0
            for v, lo in zip(values, rates["ci_low"], strict=True)
        ],
        [
            hi - v if not math.isnan(hi) else 0
            for v, hi in zip(values, rates["ci_high"], strict=True)
        ],
    ]
    ax.bar(SETTING_NAMES, values, yerr=err, capsize=6, color=[COLORS[s] for s in SETTING_NAMES])
    ax.set_ylim(0, 1)
    ax.set_ylabel("pass rate (both features)")
    ax.set_title("Pass rate per setting, 95% Wilson interval")
    return _save(fig, path)


def inline_markdown(paths: list[Path]) -> str:
    """Markdown with the PNGs inlined, for materialization metadata in the UI."""
    return "\n\n".join(
        f"![{p.stem}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})"
        for p in paths
    )
