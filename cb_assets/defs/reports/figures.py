"""PNG figures of an experiment: cost and status mix per setting, pass rate with intervals."""

import base64
import io
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
    names = list(manifest["settings"])  # the experiment's settings
    blocks = [manifest["settings"][s] for s in names]
    final = [b.get("cost_final_results", b["cost_total"]) for b in blocks]
    failed = [b.get("failed_attempts_cost", 0.0) for b in blocks]
    other = [b.get("cost_other_attempts", 0.0) for b in blocks]
    ax.bar(names, final, color=FINAL_COLOR, label="final results")
    ax.bar(names, failed, bottom=final, color=FAILED_COLOR, label="failed attempts")
    if any(other):
        bottom = [a + b for a, b in zip(final, failed, strict=True)]
        ax.bar(names, other, bottom=bottom, color=OTHER_COLOR, label="other attempts")
    top = max((a + b + c for a, b, c in zip(final, failed, other, strict=True)), default=0)
    ax.set_ylim(0, top * 1.35 if top > 0 else 1)  # room for the legend above the bars
    ax.set_ylabel("cost (USD)")
    ax.set_title("Cost per setting, every attempt")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def cost_per_setting(manifest: dict, path: Path) -> Path:
    return _save(cost_figure(manifest), path)


def status_mix(manifest: dict, path: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(5, 3.2))
    names = list(manifest["settings"])  # the experiment's settings
    statuses = sorted({k for s in names for k in manifest["settings"][s]["status_counts"]})
    bottom = [0] * len(names)
    for status in statuses:
        counts = [manifest["settings"][s]["status_counts"].get(status, 0) for s in names]
        ax.bar(names, counts, bottom=bottom, label=status)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_ylabel("agent runs")
    ax.set_title("Agent status per setting")
    ax.legend(fontsize=8)
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


# Settings beyond the first three, for figures that show every setting an experiment ran.
_MORE_COLORS = {"coop-git": "#8172B3", "coop-git-nocomm": "#937860", "team": "#DA8BC3"}


def pass_rate_by_experiment(summary: pd.DataFrame, path: Path) -> Path:
    """Bars of pass rate per experiment (groups) and setting (colours), each with its 95%
    interval from compare.experiment_summary (Wilson, or a bootstrap over pairs)."""
    plt = _pyplot()
    summary = summary[summary["pass_rate"].notna()]
    experiments = sorted(summary["experiment"].unique())
    settings = [s for s in SETTING_NAMES if s in set(summary["setting"])]
    width = 0.8 / max(1, len(settings))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.3 * len(experiments) * len(settings)), 3.4))
    for i, setting in enumerate(settings):
        rows = summary[summary["setting"] == setting].set_index("experiment").reindex(experiments)
        # an experiment that did not run this setting gets no bar (NaN), not a bar at 0
        values = rows["pass_rate"].astype(float).to_numpy()
        low = (values - rows["ci_low"].astype(float)).fillna(0).clip(lower=0).to_numpy()
        high = (rows["ci_high"].astype(float) - values).fillna(0).clip(lower=0).to_numpy()
        ax.bar(
            [x + (i - (len(settings) - 1) / 2) * width for x in range(len(experiments))],
            values,
            width,
            yerr=[low, high],
            capsize=3,
            label=setting,
            color={**COLORS, **_MORE_COLORS}.get(setting),
        )
    ax.set_xticks(range(len(experiments)), experiments)
    ax.set_ylim(0, 1.15)  # room for the legend above the tallest interval
    ax.set_ylabel("pass rate (both features)")
    ax.set_title("Pass rate per experiment and setting, 95% interval")
    if settings:
        ax.legend(fontsize=8, ncols=min(3, len(settings)), loc="upper left")
    return _save(fig, path)
