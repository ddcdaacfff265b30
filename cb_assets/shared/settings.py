"""The CooperBench settings as data: upstream's flags, log subtree and result shape of each.

Upstream 0.0.29 has three `--setting` values (solo, coop, team) and two coop switches
(`--git` for a shared remote, `--no-messaging`). Which switches a run used is written to no
upstream file, so the platform names every combination it runs as a setting of its own and
gives each its own upstream run name: two settings never share a log tree.
"""

from dataclasses import dataclass


class UnknownSettingError(ValueError):
    """A setting name that is not one of SETTING_NAMES."""


@dataclass(frozen=True)
class Setting:
    name: str
    upstream: str  # the value of `cooperbench run --setting`, and the log subtree it writes
    messaging: bool
    git: bool = False

    @property
    def cli_flags(self) -> list[str]:
        flags = ["--setting", self.upstream]
        if self.git:
            flags.append("--git")
        if self.upstream != "solo" and not self.messaging:
            flags.append("--no-messaging")
        return flags

    @property
    def agent_key(self) -> str:
        """Where result.json keeps its agent blocks: `agent` (solo) or `agents`."""
        return "agent" if self.upstream == "solo" else "agents"

    @property
    def is_coop(self) -> bool:
        """Two or more agents, whose pass rate is compared with solo's."""
        return self.upstream != "solo"


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("solo", "solo", messaging=False),
        Setting("coop-comm", "coop", messaging=True),
        Setting("coop-nocomm", "coop", messaging=False),
        Setting("coop-git", "coop", messaging=True, git=True),
        Setting("coop-git-nocomm", "coop", messaging=False, git=True),
        Setting("team", "team", messaging=True),
    )
}
SETTING_NAMES = tuple(SETTINGS)
DEFAULT_SETTINGS = ("solo", "coop-comm", "coop-nocomm")
UPSTREAM_SETTINGS = ("solo", "coop", "team")  # what result.json's `setting` may say
# team's ablation switches: `team_options: [no-task-list]` runs `--team-no-task-list`
TEAM_OPTIONS = ("no-task-list", "no-scratchpad", "no-mcp", "no-auto-refresh", "no-protocol")


def get_setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except (KeyError, TypeError):
        raise UnknownSettingError(
            f"unknown setting {name!r}: expected one of {', '.join(SETTING_NAMES)}"
        ) from None
