import json
from pathlib import Path

import pytest

from cb_assets.defs.runs.results import (
    ResultFileError,
    read_json_file,
    result_rows,
    rows_to_frame,
)
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.synthetic import agent_block, write_result

PAIR = Pair("dspy_task", 8394, 3, 4)


def test_solo_result_is_one_row(tmp_path: Path) -> None:
    d = write_result(tmp_path, "e-solo", PAIR, "solo", agents=[agent_block(cost=1.25, steps=7)])
    [row] = result_rows(d, PAIR, Arm("e", "solo"), ran=False)
    assert row["agent_id"] == "solo" and row["status"] == "Submitted"
    assert row["cost"] == 1.25 and row["steps"] == 7 and row["messages_sent"] is None
    assert row["messaging_enabled"] is False and row["pair"] == PAIR.key
    assert (row["experiment"], row["setting"], row["repeat"], row["arm"]) == (
        "e", "solo", 1, "e/solo"
    )  # fmt: skip
    assert row["in_dataset"] is True and row["extra"] is None


def test_rows_name_their_arm_and_keep_what_upstream_wrote_beyond_the_standard(
    tmp_path: Path,
) -> None:
    d = write_result(
        tmp_path, "e-solo-r3", PAIR, "solo", agents=[agent_block(messages_by_kind={"a": 1})]
    )
    result = json.loads((d / "result.json").read_text())
    (d / "result.json").write_text(json.dumps({**result, "messaging_mode": "off"}))
    [row] = result_rows(d, PAIR, Arm("e", "solo", 3), ran=False, in_dataset=False)
    assert (row["experiment"], row["repeat"], row["arm"]) == ("e", 3, "e/solo/r3")
    assert row["in_dataset"] is False
    assert json.loads(row["extra"]) == {"agent.messages_by_kind": {"a": 1}, "messaging_mode": "off"}
    frame = rows_to_frame([row])
    assert str(frame["repeat"].dtype) == "Int64" and str(frame["in_dataset"].dtype) == "boolean"


def test_coop_result_is_one_row_per_agent_with_messages(tmp_path: Path) -> None:
    d = write_result(
        tmp_path,
        "e-coop-comm",
        PAIR,
        "coop",
        messages=3,
        agents=[agent_block(cost=0.1), agent_block(status="LimitsExceeded", cost=0.2)],
    )
    rows = result_rows(d, PAIR, Arm("e", "coop-comm"), ran=True)
    assert [(r["agent_id"], r["feature_id"], r["status"]) for r in rows] == [
        ("agent1", 3, "Submitted"),
        ("agent2", 4, "LimitsExceeded"),
    ]
    assert {r["messages_sent"] for r in rows} == {3}
    assert all(r["messaging_enabled"] for r in rows)
    frame = rows_to_frame(rows)
    assert str(frame["error"].dtype) == "string" and frame["cost"].sum() == pytest.approx(0.3)


def _corrupt(tmp_path: Path, mutate) -> Path:
    d = write_result(tmp_path, "e-coop-comm", PAIR, "coop")
    path = d / "result.json"
    mutate(path)
    return d


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.write_text(p.read_text()[:100]), "invalid JSON"),
        (lambda p: p.write_bytes(b'{"setting": "coop", "x": "\xff\xfe"}'), "not UTF-8"),
        (lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
        (
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "agents": None})),
            "missing or invalid key 'agents'",
        ),
        (
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "setting": "duo"})),
            "invalid key 'setting'",
        ),
        (
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "setting": "team"})),
            "key 'setting' is 'team' but coop-comm runs write 'coop'",
        ),
        (
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "task_id": 1})),
            "keys 'repo'/'task_id'",
        ),
        (
            lambda p: p.write_text(p.read_text().replace('"cost": 0.5', '"cost": "cheap"', 1)),
            "invalid key 'agents.agent1.cost'",
        ),
        (
            lambda p: p.write_text(
                p.read_text().replace('"messages_sent": 0', '"messages_sent": 4')
            ),
            "conversation.json holds 0",
        ),
        (lambda p: p.unlink(), "file not found"),
    ],
)
def test_bad_result_files_name_the_file_and_key(tmp_path: Path, mutate, expected: str) -> None:
    d = _corrupt(tmp_path, mutate)
    with pytest.raises(ResultFileError) as err:
        result_rows(d, PAIR, Arm("e", "coop-comm"), ran=False)
    assert str(d / "result.json") in str(err.value)
    assert expected in str(err.value)


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "result.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(ResultFileError, match="over the 1024-byte limit"):
        read_json_file(big, max_bytes=1024)


def test_result_for_the_wrong_setting_is_refused(tmp_path: Path) -> None:
    d = write_result(tmp_path, "e-solo", PAIR, "solo")
    with pytest.raises(ResultFileError, match="coop-comm runs write 'coop'"):
        result_rows(d, PAIR, Arm("e", "coop-comm"), ran=False)
