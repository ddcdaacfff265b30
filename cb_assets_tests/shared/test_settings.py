import pytest

from cb_assets.shared.settings import SETTING_NAMES, UnknownSettingError, get_setting, run_name_for


def test_cli_flags_per_setting() -> None:
    assert get_setting("solo").cli_flags == ["--setting", "solo"]
    assert get_setting("coop-comm").cli_flags == ["--setting", "coop"]
    assert get_setting("coop-nocomm").cli_flags == ["--setting", "coop", "--no-messaging"]


def test_every_setting_gets_its_own_run_name() -> None:
    names = {run_name_for("command-a", s) for s in SETTING_NAMES}
    assert names == {"command-a-solo", "command-a-coop-comm", "command-a-coop-nocomm"}


def test_unknown_setting_is_a_clear_error() -> None:
    with pytest.raises(UnknownSettingError, match="unknown setting 'coop'.*solo, coop-comm"):
        get_setting("coop")
