import pytest

from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import SETTING_NAMES, UnknownSettingError, get_setting


def test_cli_flags_per_setting() -> None:
    assert get_setting("solo").cli_flags == ["--setting", "solo"]
    assert get_setting("coop-comm").cli_flags == ["--setting", "coop"]
    assert get_setting("coop-nocomm").cli_flags == ["--setting", "coop", "--no-messaging"]
    assert get_setting("coop-git").cli_flags == ["--setting", "coop", "--git"]
    assert get_setting("coop-git-nocomm").cli_flags == [
        "--setting", "coop", "--git", "--no-messaging"
    ]  # fmt: skip
    assert get_setting("team").cli_flags == ["--setting", "team"]


def test_every_setting_gets_its_own_run_name() -> None:
    names = {Arm("command_a", s).run_name for s in SETTING_NAMES}
    assert names == {
        "command_a-solo", "command_a-coop-comm", "command_a-coop-nocomm",
        "command_a-coop-git", "command_a-coop-git-nocomm", "command_a-team",
    }  # fmt: skip


def test_unknown_setting_is_a_clear_error() -> None:
    with pytest.raises(UnknownSettingError, match="unknown setting 'coop'.*solo, coop-comm"):
        get_setting("coop")
