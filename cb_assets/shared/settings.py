"""The three CooperBench settings and the partition keys built from them.

Upstream knows only `solo` and `coop`; coop-comm and coop-nocomm differ by the
`--no-messaging` flag, which no upstream file records. The platform records it
itself, and gives every setting its own run name so the two coop settings never
share a log tree.
"""

from dataclasses import dataclass

SETTING_NAMES = ("solo", "coop-comm", "coop-nocomm")


class UnknownSettingError(ValueError):
    """A setting name that is not one of SETTING_NAMES."""


@dataclass(frozen=True)
class Setting:
    name: str
    upstream: str  # the value of `cooperbench run --setting`
    messaging: bool

    @property
    def cli_flags(self) -> list[str]:
        flags = ["--setting", self.upstream]
        if self.upstream == "coop" and not self.messaging:
            flags.append("--no-messaging")
        return flags


SETTINGS: dict[str, Setting] = {
    "solo": Setting("solo", "solo", messaging=False),
    "coop-comm": Setting("coop-comm", "coop", messaging=True),
    "coop-nocomm": Setting("coop-nocomm", "coop", messaging=False),
}


def get_setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise UnknownSettingError(
            f"unknown setting {name!r}: expected one of {', '.join(SETTING_NAMES)}"
        ) from None


def run_name_for(experiment: str, setting: str) -> str:
    """One upstream run name per setting, e.g. `oracle-coop-nocomm`."""
    return f"{experiment}-{get_setting(setting).name}"
