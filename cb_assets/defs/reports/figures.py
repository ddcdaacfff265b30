"""PNG figures of an experiment: cost and status mix per setting, pass rate with intervals."""

import base64
import io
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.shared.settings import SETTING_NAMES

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


FINAL_COLOR, FAILED_COLOR, OTHER_COLOR = "#4C72B0", "#999999", "#DD8452"


def cost_figure(manifest: dict) -> Any:
    """Per setting, a bar stacked from what the final results cost, what failed attempts
    cost and (when any) what other attempts cost. Each part has one colour in every bar,
    so each legend entry names exactly the colour it sits beside."""
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    blocks = [manifest["settings"][s] for s in SETTING_NAMES]
    final = [b.get("cost_final_results", b["cost_total"]) for b in blocks]
    failed = [b.get("failed_attempts_cost", 0.0) for b in blocks]
    other = [b.get("cost_other_attempts", 0.0) for b in blocks]
    ax.bar(SETTING_NAMES, final, color=FINAL_COLOR, label="final results")
    ax.bar(SETTING_NAMES, failed, bottom=final, color=FAILED_COLOR, label="failed attempts")
    if any(other):
        bottom = [a + b for a, b in zip(final, failed, strict=True)]
        ax.bar(SETTING_NAMES, other, bottom=bottom, color=OTHER_COLOR, label="other attempts")
    top = max(a + b + c for a, b, c in zip(final, failed, other, strict=True))
    ax.set_ylim(0, top * 1.35 if top > 0 else 1)  # room for the legend above the bars
    ax.set_ylabel("cost (USD)")
    ax.set_title("Cost per setting, every attempt")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def cost_per_setting(manifest: dict, path: Path) -> Path:
    return _save(cost_figure(manifest), path)


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


def data_uri(path: Path) -> str:
    """The PNG as a `data:` URI, its colours reduced to a 32-colour palette: about 5 kB
    instead of 15-20 kB, the same picture to the eye. Dagster's markdown metadata renders
    `data:` images (its sanitizer allows the scheme for `src`); relative links it cannot."""
    from PIL import Image  # matplotlib's own dependency

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=32)
    buffer = io.BytesIO()
    small.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def inline_markdown(paths: list[Path]) -> str:
    """Markdown with the PNGs inlined, for materialization metadata in the UI."""
    return "\n\n".join(f"![{p.stem}]({data_uri(p)})" for p in paths)
