"""Arm keys, run names and partition keys: one spelling each, read back exactly."""

import pytest

from cb_assets.shared.partition_keys import (
    Arm,
    ArmKeyError,
    parse_arm,
    parse_run_name,
    partition_key,
    split_partition_key,
)
from cb_assets.shared.settings import SETTING_NAMES, UnknownSettingError

PAIR = "dspy_task-8394-f3_f4"


@pytest.mark.parametrize("setting", SETTING_NAMES)
@pytest.mark.parametrize("repeat", [1, 2, 10, 999])
@pytest.mark.parametrize("experiment", ["oracle", "command_a", "v1.2", "9x"])
def test_keys_and_run_names_round_trip(experiment: str, setting: str, repeat: int) -> None:
    arm = Arm(experiment, setting, repeat)
    assert parse_arm(arm.key) == arm
    assert parse_run_name(arm.run_name) == arm
    key = partition_key(arm.key, PAIR)
    assert split_partition_key(key) == (arm, PAIR)


def test_spellings() -> None:
    assert Arm("oracle", "solo").key == "oracle/solo" == str(Arm("oracle", "solo"))
    assert Arm("oracle", "solo").run_name == "oracle-solo"
    assert Arm("nano", "coop-comm", 2).key == "nano/coop-comm/r2"
    assert Arm("nano", "coop-comm", 2).run_name == "nano-coop-comm-r2"
    assert partition_key("oracle/solo", PAIR) == f"oracle/solo|{PAIR}"


def test_partition_keys_work_on_columns() -> None:
    import pandas as pd

    keys = partition_key(pd.Series(["a/solo", "b/team/r3"]), pd.Series(["p1", "p2"]))
    assert list(keys) == ["a/solo|p1", "b/team/r3|p2"]


@pytest.mark.parametrize(
    ("name", "arm"),
    [
        # the longest setting wins: `coop-git-nocomm`, not `coop-git` + junk
        ("x-coop-git-nocomm", Arm("x", "coop-git-nocomm")),
        ("x-coop-git-nocomm-r3", Arm("x", "coop-git-nocomm", 3)),
        ("x-coop-comm-r2", Arm("x", "coop-comm", 2)),
        ("x-coop-git", Arm("x", "coop-git")),
        # experiment names may hold setting-like words, only not `-`
        ("solo-solo", Arm("solo", "solo")),
        ("team.coop_comm-team", Arm("team.coop_comm", "team")),
        ("r2-solo-r2", Arm("r2", "solo", 2)),
    ],
)
def test_run_names_holding_setting_like_parts(name: str, arm: Arm) -> None:
    assert parse_run_name(name) == arm
    assert arm.run_name == name


@pytest.mark.parametrize(
    "name",
    [
        "nano_msg_2",  # a fork's own name: imported, never parsed
        "oracle",
        "oracle-coop",  # upstream's setting, not ours
        "command-a-solo",  # `-` in the experiment
        "oracle-solo-r1",  # repeat 1 has no suffix
        "oracle-solo-r0",
        "oracle-solo-r02",
        "oracle-solo-r1000",
        "oracle-solo-",
        "-solo",
        "oracle-SOLO",
        "oracle/solo",
        "oracle-solo\n",
    ],
)
def test_names_the_platform_did_not_give_are_no_arm(name: str) -> None:
    assert parse_run_name(name) is None


@pytest.mark.parametrize(
    "key",
    [
        "oracle",
        "oracle-solo",
        "oracle/solo/r1",
        "oracle/solo/r0",
        "oracle/solo/2",
        "oracle/solo/r1000",
        "command-a/solo",
        "oracle/solo/",
        "/solo",
        "oracle//solo",
        "oracle/solo|x",
        "",
    ],
)
def test_invalid_arm_keys_are_refused(key: str) -> None:
    with pytest.raises(ArmKeyError, match="invalid arm"):
        parse_arm(key)


def test_an_arm_key_with_an_unknown_setting_names_the_setting() -> None:
    with pytest.raises(UnknownSettingError, match="unknown setting 'coop'"):
        parse_arm("oracle/coop")


@pytest.mark.parametrize(
    ("experiment", "setting", "repeat"),
    [
        ("a-b", "solo", 1),
        ("", "solo", 1),
        ("a/b", "solo", 1),
        ("a|b", "solo", 1),
        ("_a", "solo", 1),
        ("x" * 65, "solo", 1),
        ("a", "solo", 0),
        ("a", "solo", 1000),
        ("a", "solo", True),
        ("a", "solo", 2.0),
    ],
)
def test_arms_refuse_what_no_key_could_spell(experiment: str, setting: str, repeat) -> None:
    with pytest.raises(ArmKeyError):
        Arm(experiment, setting, repeat)


def test_arm_with_an_unknown_setting() -> None:
    with pytest.raises(UnknownSettingError):
        Arm("a", "coop")


@pytest.mark.parametrize("key", [PAIR, "oracle/solo", "oracle-solo|" + PAIR])
def test_split_refuses_what_is_no_partition_key(key: str) -> None:
    with pytest.raises(ArmKeyError):
        split_partition_key(key)


def test_arms_sort_by_experiment_setting_repeat() -> None:
    arms = [Arm("b", "solo"), Arm("a", "team"), Arm("a", "solo", 2), Arm("a", "solo")]
    assert sorted(arms) == [
        Arm("a", "solo"),
        Arm("a", "solo", 2),
        Arm("a", "team"),
        Arm("b", "solo"),
    ]
