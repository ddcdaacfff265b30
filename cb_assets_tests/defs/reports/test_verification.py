import base64
import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.reports import figures
from cb_assets.defs.reports.manifest import build_manifest
from cb_assets.defs.reports.verification import (
    FAILED,
    NOT_CHECKED,
    SPOT_CHECK_KEYS,
    TRUTH_KEYS,
    VERIFIED,
    ReportInputs,
    Truth,
    evaluate_truths,
    render_report,
    truth_keys,
    ui_markdown,
)
from cb_assets.defs.runs.results import rows_to_frame
from cb_assets.shared.failures import classify_result
from cb_assets.shared.partition_keys import Arm, partition_key
from cb_assets.shared.settings import SETTING_NAMES, get_setting
from cb_assets_tests.support.services import require

EXPERIMENT = "exp"
PAIRS = [f"r_task-1-f1_f{i}" for i in range(2, 8)]  # 6 pairs
SETTINGS = ("solo", "coop-comm", "coop-nocomm")


def _row(pair: str, setting: str, agent: str, repeat: int = 1, **over: Any) -> dict:
    """One agent row of a pair-run as run_results holds it, every spot check passing."""
    repo, task, features = pair.rsplit("-", 2)
    a, b = (int(f) for f in features.removeprefix("f").split("_f"))
    arm = Arm(EXPERIMENT, setting, repeat)
    messaging = get_setting(setting).messaging
    row = {
        "experiment": EXPERIMENT,
        "setting": setting,
        "repeat": repeat,
        "arm": arm.key,
        "pair": pair,
        "repo": repo,
        "task_id": int(task),
        "feature_a": a,
        "feature_b": b,
        "agent_id": agent,
        "status": "Submitted",
        "classification": "submitted",
        "cost": 1.0 if setting == "solo" else 0.5,
        "steps": 12,
        "patch_lines": 30,
        "messaging_enabled": messaging,
        "messages_sent": (2 if messaging else 0) if setting != "solo" else None,
        "started_at": "2026-07-03T00:36:40.413479",
        "ended_at": "2026-07-03T00:40:00.065851",
        "result_path": f"/logs/{arm.run_name}/{get_setting(setting).upstream}/"
        f"{repo}/{task}/f{a}_f{b}/result.json",
        "in_dataset": True,
    }
    return row | over


def _pair_run(pair: str, setting: str, repeat: int = 1, **over: Any) -> list[dict]:
    agents = ["solo"] if setting == "solo" else ["agent1", "agent2"]
    return [_row(pair, setting, agent, repeat, **over) for agent in agents]


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = rows_to_frame(rows)
    frame["file_ok"] = True
    return frame


def _results(settings: tuple[str, ...] = SETTINGS, repeats: int = 1) -> pd.DataFrame:
    return _frame(
        [
            row
            for pair in PAIRS
            for setting in settings
            for repeat in range(1, repeats + 1)
            for row in _pair_run(pair, setting, repeat)
        ]
    )


def _file_costs(results: pd.DataFrame) -> dict[str, float]:
    """What each pair-run's result file says it cost (its agents' costs, summed)."""
    keys = partition_key(results["arm"], results["pair"])
    return {k: float(v) for k, v in results.groupby(keys)["cost"].sum().items()}


def _inputs(
    results: pd.DataFrame, settings: tuple[str, ...] = SETTINGS, repeats: int = 1
) -> ReportInputs:
    return ReportInputs(
        phase="exp-test",
        subset="test",
        experiment=EXPERIMENT,
        settings=settings,
        repeats=repeats,
        agent="mini_swe_agent",
        model="gpt-test",
        expected_pairs=PAIRS,
        results=results,
        manifest=build_manifest(results, settings=settings, repeats=repeats),
        result_file_costs=_file_costs(results),
    )


def _truths(inputs: ReportInputs) -> dict[str, Truth]:
    return {t.key: t for t in evaluate_truths(inputs)}


def _verdicts(inputs: ReportInputs) -> dict[str, str]:
    return {k: t.verdict for k, t in _truths(inputs).items()}


def test_truth_keys_cover_every_setting_and_follow_the_experiment() -> None:
    assert len(set(TRUTH_KEYS)) == len(TRUTH_KEYS)
    for setting in SETTING_NAMES:
        assert f"{setting.replace('-', '_')}_complete" in TRUTH_KEYS
    assert set(SPOT_CHECK_KEYS) <= set(TRUTH_KEYS)
    keys = truth_keys(("solo", "coop-git"))
    assert "solo_complete" in keys and "coop_git_complete" in keys
    assert "coop_comm_complete" not in keys and "team_complete" not in keys
    assert "messaging_recorded" in keys
    assert "messaging_recorded" not in truth_keys(("solo",))  # nothing to message in solo
    assert list(keys) == [k for k in TRUTH_KEYS if k in keys]  # TRUTH_KEYS order


def test_complete_experiment_verifies_what_it_can() -> None:
    verdicts = _verdicts(_inputs(_results()))
    assert tuple(verdicts) == truth_keys(SETTINGS)
    assert verdicts.pop("images_present") == NOT_CHECKED
    assert verdicts.pop("infra_retried") == NOT_CHECKED
    assert verdicts.pop("evals_complete") == NOT_CHECKED
    assert set(verdicts.values()) == {VERIFIED}
    assert "coop_git_complete" not in verdicts  # a setting the experiment does not run


def test_a_lost_result_file_fails_its_setting_and_names_the_pair() -> None:
    results = _results()
    lost = (results["pair"] == PAIRS[0]) & (results["setting"] == "coop-nocomm")
    results.loc[lost, "file_ok"] = False
    truths = _truths(_inputs(results))
    assert truths["coop_nocomm_complete"].verdict == FAILED
    assert f"exp/coop-nocomm|{PAIRS[0]}" in truths["coop_nocomm_complete"].evidence
    assert "5/6 pair-runs" in truths["coop_nocomm_complete"].evidence
    assert truths["solo_complete"].verdict == VERIFIED
    assert truths["smoke_run"].verdict == VERIFIED  # 5 other pairs are still complete


def test_agents_failing_on_their_own_merits_are_results_infra_errors_are_not() -> None:
    results = _results()
    solo = results["setting"] == "solo"
    results.loc[solo, ["status", "classification"]] = ["Error", "agent_error"]
    results.loc[solo & (results["pair"] == PAIRS[1]), "status"] = "LimitsExceeded"
    truths = _truths(_inputs(results))
    assert truths["solo_complete"].verdict == VERIFIED
    assert "agent statuses: Error 5, LimitsExceeded 1" in truths["solo_complete"].evidence
    assert truths["smoke_run"].verdict == VERIFIED

    results.loc[solo & (results["pair"] == PAIRS[2]), "classification"] = "infra_error"
    results.loc[solo & (results["pair"] == PAIRS[3]), "classification"] = "config_error"
    truth = _truths(_inputs(results))["solo_complete"]
    assert truth.verdict == FAILED
    assert "4/6 pair-runs" in truth.evidence
    assert "2 pair-runs ended in " in truth.evidence and "(not results)" in truth.evidence
    assert f"exp/solo|{PAIRS[2]}" in truth.evidence and f"exp/solo|{PAIRS[3]}" in truth.evidence


def test_messages_in_nocomm_fail_messaging_and_name_the_rows() -> None:
    results = _results()
    nocomm = results["setting"] == "coop-nocomm"
    results.loc[nocomm & (results["pair"] == PAIRS[0]), "messages_sent"] = 1
    truths = _truths(_inputs(results))
    assert truths["messaging_recorded"].verdict == FAILED
    assert "wrong in coop-nocomm" in truths["messaging_recorded"].evidence
    assert truths["messaging_flags"].verdict == FAILED
    assert f"exp/coop-nocomm|{PAIRS[0]} agent1 messaging off but 1 messages sent" in (
        truths["messaging_flags"].evidence
    )


def test_messaging_flag_off_in_coop_comm_is_an_outlier() -> None:
    results = _results()
    comm = (results["setting"] == "coop-comm") & (results["pair"] == PAIRS[4])
    results.loc[comm, "messaging_enabled"] = False
    truth = _truths(_inputs(results))["messaging_flags"]
    assert truth.verdict == FAILED
    assert f"exp/coop-comm|{PAIRS[4]} agent1 messaging_enabled False" in truth.evidence


def test_completeness_counts_every_repeat_of_every_setting() -> None:
    """Three repeats of coop-comm, one of solo: solo is incomplete (every setting is
    expected at every repeat of the experiment) and says which repeats lack."""
    settings = ("solo", "coop-comm")
    results = _frame(
        [row for p in PAIRS for row in _pair_run(p, "solo")]
        + [row for p in PAIRS for r in (1, 2, 3) for row in _pair_run(p, "coop-comm", r)]
    )
    truths = _truths(_inputs(results, settings, repeats=3))
    comm, solo = truths["coop_comm_complete"], truths["solo_complete"]
    assert comm.verdict == VERIFIED
    assert "18/18 pair-runs (6 pairs × 3 repeats)" in comm.evidence
    assert "per repeat: r1 6/6, r2 6/6, r3 6/6" in comm.evidence
    assert "Submitted 36" in comm.evidence
    assert solo.verdict == FAILED
    assert "6/18 pair-runs" in solo.evidence and "r1 6/6, r2 0/6, r3 0/6" in solo.evidence
    assert f"exp/solo/r2|{PAIRS[0]}" in solo.evidence and "and 7 more" in solo.evidence
    assert truths["smoke_run"].verdict == VERIFIED  # 6 pairs ran in solo and in coop-comm
    assert "coop_nocomm_complete" not in truths  # not one of this experiment's settings
    assert truths["messaging_recorded"].verdict == VERIFIED


def test_a_solo_only_experiment_is_not_failed_for_lacking_coop() -> None:
    results = _results(("solo",))
    truths = _truths(_inputs(results, ("solo",)))
    assert truths["smoke_run"].verdict == VERIFIED
    assert "in solo" in truths["smoke_run"].evidence
    assert truths["solo_complete"].verdict == VERIFIED
    assert "messaging_recorded" not in truths and "coop_comm_complete" not in truths
    assert truths["messaging_flags"].verdict == VERIFIED


def test_out_of_dataset_pairs_are_flagged_not_missing() -> None:
    extra = "other_task-9-f1_f2"
    results = _frame(
        [row for p in PAIRS for row in _pair_run(p, "solo")]
        + _pair_run(extra, "solo", in_dataset=False, status="Error", classification="infra_error")
    )
    truth = _truths(_inputs(results, ("solo",)))["solo_complete"]
    assert truth.verdict == VERIFIED
    assert "flagged, not counted" in truth.evidence and f"exp/solo|{extra}" in truth.evidence
    assert "6/6 pair-runs" in truth.evidence and "Error" not in truth.evidence


def test_spot_checks_name_their_outliers() -> None:
    results = _results()
    first = results.index[(results["pair"] == PAIRS[0]) & (results["setting"] == "solo")][0]
    comm = results.index[(results["pair"] == PAIRS[1]) & (results["setting"] == "coop-comm")]
    results.loc[first, "cost"] = 500.0
    results.loc[comm[0], "steps"] = -1
    results.loc[comm[1], "patch_lines"] = -3
    results.loc[comm, "ended_at"] = "2026-07-03T00:00:00"  # before it started
    nocomm = results.index[(results["pair"] == PAIRS[2]) & (results["setting"] == "coop-nocomm")]
    results.loc[nocomm, "started_at"] = "yesterday"
    results.loc[nocomm, "result_path"] = "/logs/exp-coop-nocomm/coop/r_task/1/f1_f5/result.json"
    solo3 = (results["pair"] == PAIRS[3]) & (results["setting"] == "solo")
    results.loc[solo3, "result_path"] = "/logs/exp-solo/solo/q_task/1/f1_f5/result.json"
    truths = _truths(_inputs(results))
    assert truths["cost_in_band"].verdict == FAILED
    assert f"exp/solo|{PAIRS[0]} solo $500.00" in truths["cost_in_band"].evidence
    assert "29/30 agent costs pass" in truths["cost_in_band"].evidence
    counts = truths["counts_non_negative"].evidence
    assert truths["counts_non_negative"].verdict == FAILED
    assert f"exp/coop-comm|{PAIRS[1]} agent1 steps -1" in counts
    assert f"exp/coop-comm|{PAIRS[1]} agent2 patch_lines -3" in counts
    stamps = truths["timestamps_valid"]
    assert stamps.verdict == FAILED and "16/18 pair-runs pass" in stamps.evidence
    assert f"exp/coop-comm|{PAIRS[1]} ended_at 2026-07-03T00:00:00 <" in stamps.evidence
    assert f"exp/coop-nocomm|{PAIRS[2]} unparsable 'yesterday'" in stamps.evidence
    folders = truths["features_match_folder"]
    assert folders.verdict == FAILED
    assert f"exp/coop-nocomm|{PAIRS[2]} folder f1_f5 but features f1_f4" in folders.evidence
    assert f"exp/solo|{PAIRS[3]} folder q_task/1 but r_task/1" in folders.evidence
    assert truths["messaging_flags"].verdict == VERIFIED
    assert truths["solo_complete"].verdict == VERIFIED  # spot checks do not unmake results


def test_outliers_are_sampled_five_then_counted() -> None:
    results = _results()
    results.loc[results["setting"] == "coop-comm", "cost"] = -0.5
    truth = _truths(_inputs(results))["cost_in_band"]
    assert truth.verdict == FAILED and truth.evidence.endswith("and 7 more")
    assert truth.evidence.count("$-0.50") == 5


def test_cost_band_is_the_experiments() -> None:
    inputs = _inputs(_results())
    inputs.cost_band = (0.6, 20.0)
    truth = _truths(inputs)["cost_in_band"]
    assert truth.verdict == FAILED and "between $0.60 and $20.00" in truth.truth
    assert "6/30 agent costs pass" in truth.evidence  # the 24 coop agents cost $0.50


def test_cost_mismatch_between_manifest_and_files_fails() -> None:
    inputs = _inputs(_results())
    inputs.result_file_costs[f"exp/solo|{PAIRS[0]}"] = 9.0
    assert _verdicts(inputs)["cost_tracked"] == FAILED


def test_no_data_is_never_verified() -> None:
    empty = rows_to_frame([])
    empty["file_ok"] = pd.Series(dtype=bool)
    inputs = ReportInputs(
        phase="p",
        subset="lite",
        experiment=EXPERIMENT,
        settings=SETTINGS,
        repeats=2,
        expected_pairs=[],
        results=empty,
        manifest=None,
    )
    verdicts = _verdicts(inputs)
    assert VERIFIED not in verdicts.values()
    assert all(verdicts[k] == NOT_CHECKED for k in SPOT_CHECK_KEYS)
    render_report(inputs, evaluate_truths(inputs))  # renders with nothing to show


def test_evals_expected_for_every_setting_and_repeat() -> None:
    settings = ("solo", "coop-comm")

    def evals(repeats: int) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"arm": Arm(EXPERIMENT, s, r).key, "pair": p, "setting": s, "repeat": r}
                | {"outcome": "pass", "merge_status": "clean"}
                for s in settings
                for r in range(1, repeats + 1)
                for p in PAIRS
            ]
        )

    inputs = _inputs(_results(settings, 2), settings, repeats=2)
    inputs.evals = evals(2)
    truth = _truths(inputs)["evals_complete"]
    assert truth.verdict == VERIFIED and "24/24 pair-runs evaluated" in truth.evidence
    inputs.evals = evals(1)
    truth = _truths(inputs)["evals_complete"]
    assert truth.verdict == FAILED and f"exp/coop-comm/r2|{PAIRS[0]}" in truth.evidence


def test_rendered_report_names_the_experiment_and_has_its_sections() -> None:
    settings = ("solo", "coop-comm")
    results = _results(settings, 3)
    results = results[(results["setting"] != "solo") | (results["repeat"] == 1)]
    inputs = _inputs(results, settings, repeats=3)
    text = render_report(inputs, evaluate_truths(inputs))
    assert text.startswith(
        "---\nphase: exp-test\nexperiment: exp\nagent: mini_swe_agent\nmodel: gpt-test\n"
        "settings: solo, coop-comm\nrepeats: 3\nverified: "
    )
    n = len(truth_keys(("solo", "coop-comm")))
    assert "status: gaps_found" in text and f"score: {n - 4}/{n} truths verified" in text
    assert "# Verification report: exp (mini_swe_agent / gpt-test)" in text
    assert "| solo / coop-comm complete on the subset, 3 repeats | 4, 5, 6 | BLOCKED |" in text
    assert "| Spot checks of every result pass |" in text
    assert f"missing or broken: exp/solo/r2\\|{PAIRS[0]}, " in text  # `|` escaped in the table
    for heading in (
        "## Observable Truths",
        "## Required Artifacts",
        "## Requirements Coverage",
        "## Summary",
    ):
        assert heading in text


def test_cost_is_tracked_against_the_final_results_and_reported_in_full() -> None:
    results = _results()
    key = partition_key("exp/solo", PAIRS[0])
    attempts = pd.DataFrame(
        [
            {"arm": "exp/solo", "pair": PAIRS[0], "setting": "solo", "repeat": 1}
            | {"attempt": 1, "classification": "infra_error"}
            | {"cost": 0.75, "partition": key, "final": False},
            {"arm": "exp/solo", "pair": PAIRS[0], "setting": "solo", "repeat": 1}
            | {"attempt": 2, "classification": "submitted"}
            | {"cost": 1.0, "partition": key, "final": True},
        ]
    )
    inputs = _inputs(results)
    inputs.manifest = build_manifest(results, attempts, settings=SETTINGS)
    truths = _truths(inputs)
    assert truths["cost_tracked"].verdict == VERIFIED  # the files hold final results only
    assert "spent in all, every attempt included, $18.7500" in truths["cost_tracked"].evidence
    text = render_report(inputs, list(truths.values()))
    assert "| Total spent, every attempt (`cost_total`) | 18.7500 |" in text
    assert "| Final results (`cost_final_results`) | 18.0000 |" in text
    assert "| Failed attempts, infra_error (`failed_attempts_cost`) | 0.7500 |" in text


def test_ui_markdown_shows_front_matter_as_rows_and_inlines_the_figures(tmp_path) -> None:
    inputs = _inputs(_results())
    text = render_report(inputs, evaluate_truths(inputs), now=datetime(2026, 1, 2, tzinfo=UTC))
    # a manifest block for every setting, whichever figures.py draws
    every = build_manifest(inputs.results, settings=SETTING_NAMES)
    figures.status_mix(every, tmp_path / "figures" / "status_mix.png")
    ui = ui_markdown(text, tmp_path)
    assert ui.startswith("| Field | Value |\n|---|---|\n| phase | exp-test |\n| experiment | exp |")
    assert "| verified | 2026-01-02T00:00:00+00:00 |" in ui
    n = len(truth_keys(SETTINGS))
    assert f"| score | {n - 3}/{n} truths verified |" in ui
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


# Real upstream logs (/work/shared/real-logs): nano_msg_1..3 are three repeats of coop with
# messaging, nano_solo_1 one solo run, nano_free_git_1 coop over a shared git remote.
# Read here with plain json, sharing no code with the platform's parsers.

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"
OUT_OF_DATASET = "llama_index_task-17070-f1_f3"  # its task is not in the dataset (README)


@pytest.fixture
def real_logs() -> Path:
    require((REAL_LOGS / "nano_msg_1").is_dir(), f"no real upstream logs at {REAL_LOGS}")
    return REAL_LOGS


def _pair_key(result: dict) -> str:
    a, b = sorted(result["features"])
    return f"{result['repo']}-{result['task_id']}-f{a}_f{b}"


def _real_rows(
    run_dir: Path,
    experiment: str,
    setting: str,
    repeat: int,
    edit: Callable[[str, dict], None] | None = None,
) -> list[dict]:
    """run_results-like rows of one upstream run: one per agent. `edit(pair, result)` may
    change a result before it becomes rows (the file itself is never touched)."""
    arm = Arm(experiment, setting, repeat)
    rows = []
    for path in sorted(run_dir.glob("*/*/*/*/result.json")):
        result = json.loads(path.read_text())
        pair = _pair_key(result)
        if edit is not None:
            result = copy.deepcopy(result)
            edit(pair, result)
        agents = {"solo": result["agent"]} if "agent" in result else result["agents"]
        a, b = sorted(result["features"])
        coop = get_setting(setting).is_coop
        for agent_id, block in sorted(agents.items()):
            rows.append(
                {
                    "experiment": experiment,
                    "setting": setting,
                    "repeat": repeat,
                    "arm": arm.key,
                    "pair": pair,
                    "repo": result["repo"],
                    "task_id": result["task_id"],
                    "feature_a": a,
                    "feature_b": b,
                    "agent_id": agent_id,
                    "status": block["status"],
                    "cost": block["cost"],
                    "steps": block["steps"],
                    "patch_lines": block["patch_lines"],
                    "error": block.get("error"),
                    "model": result["model"],
                    "run_name": result["run_name"],
                    "run_id": result["run_id"],
                    "messaging_enabled": get_setting(setting).messaging,
                    "messages_sent": result.get("messages_sent", 0) if coop else None,
                    "total_cost": result["total_cost"],
                    "started_at": result["started_at"],
                    "ended_at": result["ended_at"],
                    "result_path": str(path),
                    "classification": classify_result(result).classification,
                    "in_dataset": pair != OUT_OF_DATASET,
                }
            )
    return rows


def _real_inputs(rows: list[dict], experiment: str, settings: tuple, repeats: int, expected):
    results = _frame(rows)
    per_run = results.drop_duplicates(["arm", "pair"])
    costs = dict(
        zip(partition_key(per_run["arm"], per_run["pair"]), per_run["total_cost"], strict=True)
    )
    return ReportInputs(
        phase=f"{experiment}-real",
        subset="real",
        experiment=experiment,
        settings=settings,
        repeats=repeats,
        agent="claude_code",
        model="claude-sonnet-5",
        expected_pairs=expected,
        results=results,
        manifest=build_manifest(results, settings=settings, repeats=repeats),
        result_file_costs={k: float(v) for k, v in costs.items()},
    )


def _folder_pairs(run_dir: Path) -> set[str]:
    """Pair keys from the folder names alone: <repo>/<task>/f<a>_f<b>."""
    return {
        f"{p.parent.parent.parent.name}-{p.parent.parent.name}-{p.parent.name}"
        for p in run_dir.glob("*/*/*/*/result.json")
    }


def test_real_nano_experiment(real_logs: Path) -> None:
    settings = ("solo", "coop-comm")
    coop_pairs = _folder_pairs(real_logs / "nano_msg_1")
    expected = sorted(coop_pairs - {OUT_OF_DATASET})
    shared = coop_pairs & _folder_pairs(real_logs / "nano_solo_1")
    assert len(expected) == 19 and OUT_OF_DATASET in coop_pairs and len(shared) >= 5
    rows = _real_rows(real_logs / "nano_solo_1", "nano", "solo", 1)
    for repeat in (1, 2, 3):
        rows += _real_rows(real_logs / f"nano_msg_{repeat}", "nano", "coop-comm", repeat)
    inputs = _real_inputs(rows, "nano", settings, 3, expected)
    truths = _truths(inputs)
    assert tuple(truths) == truth_keys(settings)

    comm = truths["coop_comm_complete"]
    assert comm.verdict == VERIFIED, comm.evidence
    assert "57/57 pair-runs (19 pairs × 3 repeats)" in comm.evidence
    assert "per repeat: r1 19/19, r2 19/19, r3 19/19" in comm.evidence
    assert "agent statuses: Submitted 114;" in comm.evidence
    for repeat in ("", "/r2", "/r3"):
        assert f"nano/coop-comm{repeat}|{OUT_OF_DATASET}" in comm.evidence  # flagged

    # solo ran once, over another draw of pairs: incomplete, and the evidence says how
    solo = truths["solo_complete"]
    n = len(shared - {OUT_OF_DATASET})
    assert solo.verdict == FAILED
    assert f"{n}/57 pair-runs" in solo.evidence
    assert f"per repeat: r1 {n}/19, r2 0/19, r3 0/19" in solo.evidence
    assert "flagged, not counted" in solo.evidence  # the solo pairs outside the 19
    assert truths["smoke_run"].verdict == VERIFIED
    assert f"{len(shared)} pairs have final results in solo, coop-comm" in (
        truths["smoke_run"].evidence
    )

    messages = sum(
        json.loads(p.read_text())["messages_sent"]
        for r in (1, 2, 3)
        for p in (real_logs / f"nano_msg_{r}").glob("*/*/*/*/result.json")
    )
    assert truths["messaging_recorded"].verdict == VERIFIED
    assert f"coop-comm (messaging on): {messages} messages over 60 pair-runs" in (
        truths["messaging_recorded"].evidence
    )
    assert truths["cost_tracked"].verdict == VERIFIED, truths["cost_tracked"].evidence
    for key in SPOT_CHECK_KEYS:  # the real data passes every spot check
        assert truths[key].verdict == VERIFIED, truths[key].evidence
    assert "140/140 agent costs pass" in truths["cost_in_band"].evidence

    # an injected $500 agent is caught and named
    results = inputs.results.copy()
    target = results.index[
        (results["arm"] == "nano/coop-comm/r2") & (results["pair"] == expected[0])
    ][0]
    results.loc[target, "cost"] = 500.0
    inputs.results = results
    band = _truths(inputs)["cost_in_band"]
    assert band.verdict == FAILED
    agent = results.loc[target, "agent_id"]
    assert band.evidence.endswith(f"outliers: nano/coop-comm/r2|{expected[0]} {agent} $500.00")

    manifest = build_manifest(inputs.results, settings=settings, repeats=3)
    assert list(manifest["settings"]) == ["solo", "coop-comm"]
    assert manifest["settings"]["coop-comm"]["pairs"] == 60
    assert {r: b["pairs"] for r, b in manifest["per_repeat"]["solo"].items()} == {
        "1": 20,
        "2": 0,
        "3": 0,
    }
    assert manifest["per_repeat"]["coop-comm"]["2"]["agents"] == 40


def test_real_error_agents_without_text_are_infrastructure(real_logs: Path) -> None:
    """nano_free_git_1 has agents that ended in `Error` with no error text: the agent process
    died without a result, so (issue 14) those pair-runs are infra_error, not results, and the
    arm is not complete. So is a sandbox that did not start (`docker run` exit 125). An Error
    with the agent's own text is a result."""
    run = real_logs / "nano_free_git_1"
    expected = sorted(_folder_pairs(run) - {OUT_OF_DATASET})
    errored = set()
    for path in run.glob("*/*/*/*/result.json"):
        result = json.loads(path.read_text())
        if any(a["status"] == "Error" for a in result["agents"].values()):
            errored.add(_pair_key(result))
    assert len(errored) == 2  # 4 agents

    def truth(edit=None) -> Truth:
        rows = _real_rows(run, "freegit", "coop-git", 1, edit)
        return _truths(_real_inputs(rows, "freegit", ("coop-git",), 1, expected))[
            "coop_git_complete"
        ]

    first, second = sorted(errored)
    plain = truth()
    assert plain.verdict == FAILED, plain.evidence
    assert "17/19 pair-runs" in plain.evidence
    assert "agent statuses: Submitted 34, Error 4" in plain.evidence
    assert "2 pair-runs ended in infra_error 2 (not results)" in plain.evidence
    assert f"freegit/coop-git|{first}" in plain.evidence
    assert f"freegit/coop-git|{second}" in plain.evidence

    def set_errors(texts: dict[str, str]) -> Callable[[str, dict], None]:
        def edit(pair: str, result: dict) -> None:
            for block in result["agents"].values():
                if pair in texts and block["status"] == "Error":
                    block["error"] = texts[pair]

        return edit

    docker = (
        "Command '['docker', 'run', '-d', 'akhatua/cooperbench-pallets-click:task2800']' "
        "returned non-zero exit status 125."
    )
    edited = truth(set_errors({first: "", second: docker}))
    assert edited.verdict == FAILED, edited.evidence
    assert "2 pair-runs ended in infra_error 2 (not results)" in edited.evidence

    own = "ValueError: the patch does not apply"  # the agent's own failure: a result
    results = truth(set_errors({first: own, second: own}))
    assert results.verdict == VERIFIED, results.evidence
    assert "19/19 pair-runs" in results.evidence

    infra = truth(set_errors({first: "litellm.RateLimitError: 429 Too Many Requests", second: own}))
    assert infra.verdict == FAILED
    assert "1 pair-runs ended in infra_error 1 (not results)" in infra.evidence
    assert f"freegit/coop-git|{first}" in infra.evidence
