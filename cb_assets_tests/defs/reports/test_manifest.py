import pandas as pd

from cb_assets.defs.reports.manifest import build_manifest, manifest_table
from cb_assets.defs.runs.results import rows_to_frame
from cb_assets.shared.partition_keys import Arm, partition_key


def _row(
    pair: str,
    setting: str,
    agent: str,
    status: str,
    cost: float,
    steps: int,
    patch_lines: int,
    messages: int | None,
    repeat: int = 1,
) -> dict:
    return {
        "experiment": "exp",
        "setting": setting,
        "repeat": repeat,
        "arm": Arm("exp", setting, repeat).key,
        "pair": pair,
        "agent_id": agent,
        "status": status,
        "cost": cost,
        "steps": steps,
        "patch_lines": patch_lines,
        "messages_sent": messages,
    }


def test_manifest_counts_per_setting_and_totals() -> None:
    frame = rows_to_frame(
        [
            _row("p1", "solo", "solo", "Submitted", 1.0, 10, 5, None),
            _row("p2", "solo", "solo", "Error", 0.5, 3, 0, None),
            _row("p1", "coop-comm", "agent1", "Submitted", 0.25, 4, 2, 3),
            _row("p1", "coop-comm", "agent2", "LimitsExceeded", 0.75, 6, 0, 3),
            _row("p1", "coop-nocomm", "agent1", "Submitted", 0.1, 1, 1, 0),
            _row("p1", "coop-nocomm", "agent2", "Weird", 0.1, 1, 1, 0),
        ]
    )
    m = build_manifest(frame)
    assert list(m["settings"]) == ["solo", "coop-comm", "coop-nocomm"]  # those present
    assert m["repeats"] == 1 and "per_repeat" not in m
    solo, comm, nocomm = (m["settings"][s] for s in ("solo", "coop-comm", "coop-nocomm"))
    assert solo["pairs"] == 2 and solo["agents"] == 2
    assert solo["status_counts"] == {"Submitted": 1, "LimitsExceeded": 0, "Error": 1}
    assert solo["cost_total"] == 1.5 and solo["cost_avg_per_pair"] == 0.75
    assert solo["nonempty_patches"] == 1 and solo["patch_lines_total"] == 5
    assert comm["messages_total"] == 3 and comm["messages_avg_per_pair"] == 3.0
    assert comm["steps_total"] == 10 and comm["steps_avg_per_pair"] == 10.0
    assert nocomm["status_counts"]["Weird"] == 1 and nocomm["messages_total"] == 0
    totals = m["totals"]
    assert totals["pairs"] == 4 and totals["agents"] == 6  # pair-runs and agent runs
    assert totals["cost_total"] == 2.7 and totals["messages_total"] == 3
    assert totals["cost_final_results"] == 2.7  # no attempts recorded: all of it is results
    table = manifest_table(m)
    assert list(table["setting"]) == ["solo", "coop-comm", "coop-nocomm", "total"]
    assert table.set_index("setting").loc["coop-nocomm", "status_other"] == 1


def test_manifest_has_the_experiments_settings_in_its_order() -> None:
    frame = rows_to_frame(
        [
            _row("p1", "solo", "solo", "Submitted", 1.0, 10, 5, None),
            _row("p1", "team", "agent1", "Submitted", 0.5, 4, 2, 7),
            _row("p1", "team", "agent2", "Submitted", 0.5, 4, 2, 7),
        ]
    )
    m = build_manifest(frame, settings=("coop-git", "solo"))
    # the experiment's settings first (zeros where nothing ran yet), then any other present
    assert list(m["settings"]) == ["coop-git", "solo", "team"]
    assert m["settings"]["coop-git"]["pairs"] == 0
    assert m["settings"]["coop-git"]["cost_avg_per_pair"] == 0.0
    assert m["settings"]["team"]["pairs"] == 1 and m["settings"]["team"]["messages_total"] == 7
    assert list(manifest_table(m)["setting"]) == ["coop-git", "solo", "team", "total"]


def test_manifest_of_nothing_is_zeros() -> None:
    m = build_manifest(rows_to_frame([]), settings=("solo",))
    assert m["totals"]["pairs"] == 0 and m["settings"]["solo"]["cost_avg_per_pair"] == 0.0
    assert isinstance(manifest_table(m), pd.DataFrame)
    assert build_manifest(rows_to_frame([]))["settings"] == {}


def test_repeats_are_pair_runs_of_their_own_and_broken_down() -> None:
    """The same pair in three repeats is three pair-runs, each with its own messages."""
    frame = rows_to_frame(
        [
            _row("p1", "coop-comm", agent, "Submitted", 0.5, 4, 2, messages, repeat)
            for repeat, messages in ((1, 2), (2, 4), (3, 6))
            for agent in ("agent1", "agent2")
        ]
        + [_row("p1", "solo", "solo", "Error", 1.0, 3, 0, None)]
    )
    m = build_manifest(frame, settings=("solo", "coop-comm"), repeats=3)
    comm = m["settings"]["coop-comm"]
    assert comm["pairs"] == 3 and comm["agents"] == 6
    assert comm["messages_total"] == 12 and comm["messages_avg_per_pair"] == 4.0
    per_repeat = m["per_repeat"]
    assert list(per_repeat) == ["solo", "coop-comm"]
    assert {r: b["messages_total"] for r, b in per_repeat["coop-comm"].items()} == {
        "1": 2,
        "2": 4,
        "3": 6,
    }
    assert {r: b["pairs"] for r, b in per_repeat["solo"].items()} == {"1": 1, "2": 0, "3": 0}
    assert per_repeat["solo"]["1"]["status_counts"]["Error"] == 1
    assert m["totals"]["pairs"] == 4
    # repeats default to the highest one in the rows
    assert list(build_manifest(frame)["per_repeat"]["coop-comm"]) == ["1", "2", "3"]


def _attempt(
    pair: str, setting: str, number: int, classification: str, cost: float, repeat: int = 1
) -> dict:
    arm = Arm("exp", setting, repeat).key
    return {
        "partition": partition_key(arm, pair),
        "arm": arm,
        "repeat": repeat,
        "pair": pair,
        "setting": setting,
        "attempt": number,
        "classification": classification,
        "final": classification != "infra_error",
        "cost": cost,
    }


def test_cost_total_is_every_attempt_and_final_results_are_apart() -> None:
    """The run that showed $0.10 for $1.70 spent: two failed attempts, then a result."""
    frame = rows_to_frame([_row("p1", "solo", "solo", "Submitted", 0.1, 3, 1, None)])
    attempts = pd.DataFrame(
        [
            _attempt("p1", "solo", 1, "infra_error", 0.8),
            _attempt("p1", "solo", 2, "infra_error", 0.8),
            _attempt("p1", "solo", 3, "submitted", 0.1),  # the final result's own attempt
        ]
    )
    m = build_manifest(frame, attempts, settings=("solo", "coop-comm"))
    for block in (m["totals"], m["settings"]["solo"]):
        assert block["cost_total"] == 1.7
        assert block["cost_final_results"] == 0.1
        assert block["failed_attempts"] == 2 and block["failed_attempts_cost"] == 1.6
        assert block["cost_other_attempts"] == 0.0
        assert block["cost_avg_per_pair"] == 1.7
    assert m["settings"]["coop-comm"]["cost_total"] == 0.0
    row = manifest_table(m).set_index("setting").loc["total"]
    assert row["cost_total"] == 1.7 and row["cost_final_results"] == 0.1


def test_cost_total_counts_replaced_results_and_ingested_ones_once() -> None:
    frame = rows_to_frame(
        [
            _row("p1", "solo", "solo", "Submitted", 0.25, 3, 1, None),  # ran twice (forced)
            _row("p2", "solo", "solo", "Submitted", 0.5, 3, 1, None),  # ingested: no attempts
            _row("p3", "solo", "solo", "Error", 0.125, 3, 1, None),  # agent error, 1 attempt
        ]
    )
    attempts = pd.DataFrame(
        [
            _attempt("p1", "solo", 1, "submitted", 1.0),  # replaced by the forced rerun
            _attempt("p1", "solo", 2, "infra_error", 0.0625),
            _attempt("p1", "solo", 3, "submitted", 0.25),
            _attempt("p3", "solo", 1, "agent_error", 0.125),
            _attempt("p4", "solo", 1, "infra_error", 2.0),  # gave up: no result at all
            _attempt("p4", "solo", 2, "config_error", 0.0),
        ]
    )
    totals = build_manifest(frame, attempts)["totals"]
    assert totals["cost_final_results"] == 0.875
    assert totals["failed_attempts_cost"] == 2.0625 and totals["failed_attempts"] == 2
    assert totals["cost_other_attempts"] == 1.0
    assert totals["cost_total"] == 0.875 + 2.0625 + 1.0
    assert totals["cost_total"] == float(attempts["cost"].sum()) + 0.5  # + the ingested one


def test_each_repeats_result_is_matched_to_its_own_attempt() -> None:
    """Two repeats of one pair, one attempt each: both are final results, nothing else
    was spent (keyed by pair and setting alone, one would pass for a replaced result)."""
    frame = rows_to_frame(
        [
            _row("p1", "solo", "solo", "Submitted", 0.25, 3, 1, None, repeat=1),
            _row("p1", "solo", "solo", "Submitted", 0.5, 3, 1, None, repeat=2),
        ]
    )
    attempts = pd.DataFrame(
        [
            _attempt("p1", "solo", 1, "submitted", 0.25, repeat=1),
            _attempt("p1", "solo", 1, "submitted", 0.5, repeat=2),
            _attempt("p1", "solo", 1, "infra_error", 2.0, repeat=3),  # r3: no result yet
        ]
    )
    m = build_manifest(frame, attempts, settings=("solo",), repeats=3)
    totals = m["totals"]
    assert totals["pairs"] == 2
    assert totals["cost_final_results"] == 0.75 and totals["cost_other_attempts"] == 0.0
    assert totals["failed_attempts_cost"] == 2.0 and totals["cost_total"] == 2.75
    by_repeat = m["per_repeat"]["solo"]
    assert [by_repeat[r]["cost_total"] for r in ("1", "2", "3")] == [0.25, 0.5, 2.0]


def test_a_setting_whose_every_attempt_failed_still_shows_what_it_spent() -> None:
    frame = rows_to_frame([_row("p1", "solo", "solo", "Submitted", 0.1, 3, 1, None)])
    attempts = pd.DataFrame([_attempt("p1", "coop-comm", 1, "infra_error", 2.0)])
    m = build_manifest(frame, attempts, settings=("solo", "coop-comm"))
    assert m["settings"]["coop-comm"]["failed_attempts_cost"] == 2.0
    assert m["settings"]["coop-comm"]["cost_total"] == 2.0
    assert m["totals"]["cost_total"] == 2.1 and m["totals"]["failed_attempts"] == 1
