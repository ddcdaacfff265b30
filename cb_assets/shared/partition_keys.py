"""How a pair-run is named: its arm (experiment, setting, repeat), its partition key and its
upstream run name. Spelled here only.

An arm is one experiment in one setting at one repeat: `oracle/solo`, `nano/coop-comm/r2`
(repeat 1 has no suffix, so data written before repeats existed keeps its names). A
run_results partition is an arm × a pair; Dagster spells that MultiPartitionKey
`<arm>|<pair>` (its dimension names sort: arm, then pair). The upstream run name of an arm
is `<experiment>-<setting>[-r<k>]`, e.g. `oracle-coop-nocomm`, `nano-solo-r3`.
"""

import re
from dataclasses import dataclass

from cb_assets.shared.settings import SETTING_NAMES, get_setting

SEPARATOR = "|"
ARM_SEPARATOR = "/"
# no `-` (run names join with it), `/` or `|` (keys do): an experiment name is one token
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]{0,63}")
MAX_REPEAT = 999
_SETTING_ALTERNATIVES = "|".join(re.escape(s) for s in sorted(SETTING_NAMES, key=len, reverse=True))
_RUN_NAME = re.compile(
    rf"(?P<experiment>{EXPERIMENT_NAME.pattern})-(?P<setting>{_SETTING_ALTERNATIVES})"
    r"(?:-r(?P<repeat>[2-9]|[1-9][0-9]{1,2}))?"
)
_ARM = re.compile(
    rf"(?P<experiment>{EXPERIMENT_NAME.pattern})/(?P<setting>[a-z-]+)"
    r"(?:/r(?P<repeat>[2-9]|[1-9][0-9]{1,2}))?"
)


class ArmKeyError(ValueError):
    """A string that does not name an arm."""


def check_experiment_name(name: object) -> str | None:
    """What is wrong with `name` as an experiment name, or None."""
    if isinstance(name, str) and ".." in name:  # Dagster reads `...` in a key as a range
        return f"{name!r} is not an experiment name: it holds `..`"
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        return (
            f"{name!r} is not an experiment name: up to 64 letters, digits, `_` and `.`, "
            "starting with a letter or digit (no `-`: run names join with it)"
        )
    return None


@dataclass(frozen=True, order=True)
class Arm:
    experiment: str
    setting: str
    repeat: int = 1

    def __post_init__(self) -> None:
        problem = check_experiment_name(self.experiment)
        if problem:
            raise ArmKeyError(problem)
        get_setting(self.setting)
        if (
            isinstance(self.repeat, bool)
            or not isinstance(self.repeat, int)
            or not (1 <= self.repeat <= MAX_REPEAT)
        ):
            raise ArmKeyError(f"repeat {self.repeat!r}: expected a whole number 1–{MAX_REPEAT}")

    @property
    def key(self) -> str:
        parts = [self.experiment, self.setting] + ([f"r{self.repeat}"] if self.repeat > 1 else [])
        return ARM_SEPARATOR.join(parts)

    @property
    def run_name(self) -> str:
        suffix = f"-r{self.repeat}" if self.repeat > 1 else ""
        return f"{self.experiment}-{self.setting}{suffix}"

    def __str__(self) -> str:
        return self.key


def parse_arm(key: str) -> Arm:
    match = _ARM.fullmatch(key) if isinstance(key, str) else None
    if not match:
        raise ArmKeyError(
            f"invalid arm {key!r}: expected <experiment>/<setting>[/r<k>], e.g. oracle/solo "
            "or nano/coop-comm/r2"
        )
    return Arm(match["experiment"], match["setting"], int(match["repeat"] or 1))


def parse_run_name(name: str) -> Arm | None:
    """The arm whose upstream run name is `name`, or None for a name the platform did not
    give (`nano_msg_2`: bring such runs in with `cb-assets import`)."""
    match = _RUN_NAME.fullmatch(name)
    if not match:
        return None
    return Arm(match["experiment"], match["setting"], int(match["repeat"] or 1))


def partition_key[T](arm: T, pair: T) -> T:
    """The partition key of `pair` in `arm` (an arm key); element-wise for columns (T: a str,
    or a column of them)."""
    return arm + SEPARATOR + pair  # type: ignore[operator]


def split_partition_key(key: str) -> tuple[Arm, str]:
    """(arm, pair key) of a partition key."""
    arm, sep, pair = key.partition(SEPARATOR)
    if not sep:
        raise ArmKeyError(f"{key!r} is not an `<arm>|<pair>` partition key")
    return parse_arm(arm), pair
