import pandas as pd

from cb_assets.manifest import build_manifest, manifest_table
from cb_assets.results import rows_to_frame


def _row(
    pair: str,
    setting: str,
    agent: str,
    status: str,
    cost: float,
    steps: int,
    patch_lines: int,
    messages: int | None,
) -> dict:
    return {
        "pair": pair,
        "setting": setting,
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
    table = manifest_table(m)
    assert list(table["setting"]) == ["solo", "coop-comm", "coop-nocomm", "total"]
    assert table.set_index("setting").loc["coop-nocomm", "status_other"] == 1


def test_manifest_of_nothing_is_zeros() -> None:
    m = build_manifest(rows_to_frame([]))
    assert m["totals"]["pairs"] == 0 and m["settings"]["solo"]["cost_avg_per_pair"] == 0.0
    assert isinstance(manifest_table(m), pd.DataFrame)
