"""The figures as drawn: the matplotlib artists, not only the files."""

import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer

from cb_assets.defs.reports import figures
from cb_assets.shared.settings import DEFAULT_SETTINGS


def _manifest(other: float = 0.0, names: tuple[str, ...] = DEFAULT_SETTINGS) -> dict:
    settings = {
        s: {
            "cost_total": 1.0 + i + 0.5 + other,
            "cost_final_results": 1.0 + i,
            "failed_attempts_cost": 0.5,
            "cost_other_attempts": other,
            "status_counts": {"Submitted": 2, "Error": i},
        }
        for i, s in enumerate(names)
    }
    return {"settings": settings, "totals": {}}


@pytest.mark.parametrize("other", [0.0, 0.25])
def test_each_cost_legend_entry_has_the_colour_of_its_bars(other: float) -> None:
    fig = figures.cost_figure(_manifest(other))
    try:
        [ax] = fig.axes
        legend = ax.get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        want = ["final results", "failed attempts"] + (["other attempts"] if other else [])
        assert labels == want
        bars = {c.get_label(): c for c in ax.containers}
        colours = set()
        for label, handle in zip(labels, legend.legend_handles, strict=True):
            patches = bars[label].patches
            assert len(patches) == len(DEFAULT_SETTINGS)
            # every bar of the entry, in every setting, has the colour beside its label
            assert {p.get_facecolor() for p in patches} == {handle.get_facecolor()}
            colours.add(handle.get_facecolor())
        assert len(colours) == len(labels)  # and no two entries share a colour
        assert to_rgba(figures.FINAL_COLOR) in colours
        final = bars["final results"].patches
        assert [p.get_height() for p in final] == [1.0, 2.0, 3.0]
        failed = bars["failed attempts"].patches
        assert [p.get_y() for p in failed] == [1.0, 2.0, 3.0]  # stacked on the results
    finally:
        figures._pyplot().close(fig)


def test_cost_and_status_figures_plot_the_manifests_own_settings(tmp_path, monkeypatch) -> None:
    # an experiment's manifest holds the settings it ran, which need not be the default three
    names = ("solo", "team")
    fig = figures.cost_figure(_manifest(names=names))
    try:
        [ax] = fig.axes
        assert [t.get_text() for t in ax.get_xticklabels()] == list(names)
        bars = {c.get_label(): c for c in ax.containers}
        assert [p.get_height() for p in bars["final results"].patches] == [1.0, 2.0]
    finally:
        figures._pyplot().close(fig)
    drawn = {}
    save = figures._save

    def keep(fig, path):
        [ax] = fig.axes
        drawn["ticks"] = [t.get_text() for t in ax.get_xticklabels()]
        drawn["bars"] = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers}
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    path = figures.status_mix(_manifest(names=names), tmp_path / "status_mix.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert drawn["ticks"] == list(names)
    assert drawn["bars"] == {"Error": [0, 1], "Submitted": [2, 2]}


def test_figures_inline_as_small_png_data_uris(tmp_path) -> None:
    path = figures.cost_per_setting(_manifest(), tmp_path / "cost_per_setting.png")
    markdown = figures.inline_markdown([path])
    assert markdown.startswith("![cost_per_setting](data:image/png;base64,iVBORw0KGgo")
    assert len(markdown) < 16_000


def test_pass_rate_by_experiment_draws_each_rate_with_its_interval(tmp_path, monkeypatch) -> None:
    summary = pd.DataFrame(
        {
            "experiment": ["b", "b", "a", "a", "a"],
            "setting": ["solo", "coop-comm", "solo", "coop-comm", "team"],
            "pass_rate": [0.5, 0.25, 0.8, 0.4, float("nan")],  # a/team never evaluated
            "ci_low": [0.3, 0.1, 0.6, 0.2, float("nan")],
            "ci_high": [0.7, 0.45, 0.9, 0.5, float("nan")],
        }
    )
    drawn = {}
    save = figures._save

    def keep(fig, path):
        drawn["fig"] = fig
        [ax] = fig.axes
        drawn["bars"] = {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}
        drawn["ticks"] = [t.get_text() for t in ax.get_xticklabels()]
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    path = figures.pass_rate_by_experiment(summary, tmp_path / "pass_rate_by_experiment.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert drawn["ticks"] == ["a", "b"]
    bars = drawn["bars"]
    assert list(bars) == ["solo", "coop-comm"]  # registry order; no bar for unevaluated team
    assert [p.get_height() for p in bars["solo"].patches] == [0.8, 0.5]
    assert [p.get_height() for p in bars["coop-comm"].patches] == [0.4, 0.25]
    # solo bars sit left of coop-comm in each group, and each setting keeps its colour
    assert bars["solo"].patches[0].get_x() < bars["coop-comm"].patches[0].get_x() < 1
    assert bars["solo"].patches[1].get_facecolor() == to_rgba(figures.COLORS["solo"])
    # the error bar of a/solo spans its interval, 0.6 to 0.9
    segments = bars["solo"].errorbar.lines[2][0].get_segments()
    assert [tuple(round(y, 6) for y in (s[0][1], s[1][1])) for s in segments] == [
        (0.6, 0.9), (0.3, 0.7)
    ]  # fmt: skip
