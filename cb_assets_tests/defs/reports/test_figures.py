"""The figures as drawn: the matplotlib artists, not only the files."""

import pytest
from matplotlib.colors import to_rgba

from cb_assets.defs.reports import figures
from cb_assets.shared.settings import SETTING_NAMES


def _manifest(other: float = 0.0) -> dict:
    settings = {
        s: {
            "cost_total": 1.0 + i + 0.5 + other,
            "cost_final_results": 1.0 + i,
            "failed_attempts_cost": 0.5,
            "cost_other_attempts": other,
            "status_counts": {"Submitted": 2, "Error": i},
        }
        for i, s in enumerate(SETTING_NAMES)
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
            assert len(patches) == len(SETTING_NAMES)
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


def test_figures_inline_as_small_png_data_uris(tmp_path) -> None:
    path = figures.cost_per_setting(_manifest(), tmp_path / "cost_per_setting.png")
    markdown = figures.inline_markdown([path])
    assert markdown.startswith("![cost_per_setting](data:image/png;base64,iVBORw0KGgo")
    assert len(markdown) < 16_000
