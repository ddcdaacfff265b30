import base64
import re
from datetime import UTC, datetime

import pandas as pd

from cb_assets.defs.reports import figures
from cb_assets.defs.reports.manifest import build_manifest
from cb_assets.defs.reports.verification import (
    FAILED,
    NOT_CHECKED,
    TRUTH_KEYS,
    VERIFIED,
    ReportInputs,
    evaluate_truths,
    render_report,
    ui_markdown,
)
from cb_assets.defs.runs.results import rows_to_frame
from cb_assets.shared.settings import SETTING_NAMES

PAIRS = [f"r_task-1-f1_f{i}" for i in range(2, 8)]  # 6 pairs


def _results() -> pd.DataFrame:
    rows = []
    for pair in PAIRS:
        rows.append(
            {
                "pair": pair,
                "setting": "solo",
                "agent_id": "solo",
                "status": "Submitted",
                "cost": 1.0,
                "messaging_enabled": False,
                "messages_sent": None,
            }
        )
        for setting, msgs in (("coop-comm", 2), ("coop-nocomm", 0)):
            for agent in ("agent1", "agent2"):
                rows.append(
                    {
                        "pair": pair,
                        "setting": setting,
                        "agent_id": agent,
                        "status": "Submitted",
                        "cost": 0.5,
                        "messages_sent": msgs,
                        "messaging_enabled": setting == "coop-comm",
                    }
                )
    frame = rows_to_frame(rows)
    frame["file_ok"] = True
    return frame


def _inputs(results: pd.DataFrame) -> ReportInputs:
    costs = {f"{p}|{s}": 1.0 for p in PAIRS for s in SETTING_NAMES}
    return ReportInputs(
        phase="exp-test",
        subset="test",
        expected_pairs=PAIRS,
        results=results,
        manifest=build_manifest(results),
        result_file_costs=costs,
    )


def _verdicts(inputs: ReportInputs) -> dict[str, str]:
    return {t.key: t.verdict for t in evaluate_truths(inputs)}


def test_complete_experiment_verifies_what_it_can() -> None:
    verdicts = _verdicts(_inputs(_results()))
    assert tuple(verdicts) == TRUTH_KEYS
    assert verdicts.pop("images_present") == NOT_CHECKED
    assert verdicts.pop("infra_retried") == NOT_CHECKED
    assert verdicts.pop("evals_complete") == NOT_CHECKED
    assert set(verdicts.values()) == {VERIFIED}


def test_a_lost_result_file_fails_its_setting_and_names_the_pair() -> None:
    results = _results()
    lost = (results["pair"] == PAIRS[0]) & (results["setting"] == "coop-nocomm")
    results.loc[lost, "file_ok"] = False
    truths = {t.key: t for t in evaluate_truths(_inputs(results))}
    assert truths["coop_nocomm_complete"].verdict == FAILED
    assert PAIRS[0] in truths["coop_nocomm_complete"].evidence
    assert truths["solo_complete"].verdict == VERIFIED
    assert truths["smoke_run"].verdict == VERIFIED  # 5 other pairs are still complete


def test_agent_error_is_not_complete_and_messages_in_nocomm_fail() -> None:
    results = _results()
    results.loc[results["setting"] == "solo", "status"] = "Error"
    results.loc[results["setting"] == "coop-nocomm", "messages_sent"] = 1
    verdicts = _verdicts(_inputs(results))
    assert verdicts["solo_complete"] == FAILED
    assert verdicts["smoke_run"] == FAILED
    assert verdicts["messaging_recorded"] == FAILED


def test_cost_mismatch_between_manifest_and_files_fails() -> None:
    inputs = _inputs(_results())
    inputs.result_file_costs[f"{PAIRS[0]}|solo"] = 9.0
    assert _verdicts(inputs)["cost_tracked"] == FAILED


def test_no_data_is_never_verified() -> None:
    empty = rows_to_frame([])
    empty["file_ok"] = pd.Series(dtype=bool)
    inputs = ReportInputs(phase="p", subset="lite", expected_pairs=[], results=empty, manifest=None)
    assert VERIFIED not in _verdicts(inputs).values()


def test_rendered_report_has_front_matter_and_sections() -> None:
    inputs = _inputs(_results())
    text = render_report(inputs, evaluate_truths(inputs))
    assert text.startswith("---\nphase: exp-test\nverified: ")
    assert "status: human_needed" in text and "score: 7/10 truths verified" in text
    for heading in (
        "## Observable Truths",
        "## Required Artifacts",
        "## Requirements Coverage",
        "## Summary",
    ):
        assert heading in text


def test_cost_is_tracked_against_the_final_results_and_reported_in_full() -> None:
    results = _results()
    attempts = pd.DataFrame(
        [
            {"pair": PAIRS[0], "setting": "solo", "attempt": 1, "classification": "infra_error"}
            | {"cost": 0.75, "partition": "x", "final": False},
            {"pair": PAIRS[0], "setting": "solo", "attempt": 2, "classification": "submitted"}
            | {"cost": 1.0, "partition": "x", "final": True},
        ]
    )
    inputs = _inputs(results)
    inputs.manifest = build_manifest(results, attempts)
    truths = {t.key: t for t in evaluate_truths(inputs)}
    assert truths["cost_tracked"].verdict == VERIFIED  # the files hold final results only
    assert "spent in all, every attempt included, $18.7500" in truths["cost_tracked"].evidence
    text = render_report(inputs, list(truths.values()))
    assert "| Total spent, every attempt (`cost_total`) | 18.7500 |" in text
    assert "| Final results (`cost_final_results`) | 18.0000 |" in text
    assert "| Failed attempts, infra_error (`failed_attempts_cost`) | 0.7500 |" in text


def test_ui_markdown_shows_front_matter_as_rows_and_inlines_the_figures(tmp_path) -> None:
    inputs = _inputs(_results())
    text = render_report(inputs, evaluate_truths(inputs), now=datetime(2026, 1, 2, tzinfo=UTC))
    figures.status_mix(inputs.manifest, tmp_path / "figures" / "status_mix.png")
    ui = ui_markdown(text, tmp_path)
    assert ui.startswith("| Field | Value |\n|---|---|\n| phase | exp-test |\n")
    assert "| verified | 2026-01-02T00:00:00+00:00 |" in ui
    assert "| score | 7/10 truths verified |" in ui
    assert "\n---\n" not in ui  # no front matter fences left to merge into a heading
    [uri] = re.findall(r"!\[status mix per setting\]\((data:image/png;base64,[^)]+)\)", ui)
    png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 12_000  # kept small
    # cost_per_setting.png was never drawn here: said so, not a broken image
    assert "*cost per setting: `figures/cost_per_setting.png` not drawn yet*" in ui
    assert "](figures/" not in ui
    # the file keeps its front matter and relative links
    assert text.startswith("---\nphase: exp-test\n")
    assert "![status mix per setting](figures/status_mix.png)" in text
