"""The `replay` offline agent: recorded durations and costs, the gold patch.

A pair-run of `replay` takes as long as the same pair took in a recorded run, divided by a
scale factor, and reports that run's cost, steps and tokens per agent, while submitting the
dataset's gold patch exactly as `oracle` does (messages included when messaging is on). It
makes heavy-tailed real-agent timings reproducible offline, so a scheduler can be measured
against them (`bench/replay.py`).

Its configuration is upstream's agent config file (`--agent-config`, the experiment's
`agent_config`), which upstream merges into the `config` every agent receives:

    replay_tree: ../shared/real-logs/nano_msg_1   # relative paths: to this file's folder
    replay_scale: 100                             # sleep duration_seconds / 100 (default 1)

The tree is upstream's layout: either one run folder (`<tree>/<solo|coop|team>/<repo>/
<task>/f<a>_f<b>/result.json`) or a logs root holding run folders, searched in name order.
The recording is found by the pair (repo, task, features) and the setting's kind (the
`solo`/`coop`/`team` folder upstream writes this pair-run under). A pair the tree lacks, or
an unusable tree or result.json, is an error whose one line starts with `replay:` and names
the tree and the pair; upstream reports it as the agent's `Error`.

Registered in `offline.py` beside the other offline agents (where the platform's pre-flight
reads the offline agents' names); this module holds its logic.
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cooperbench.agents import AgentResult

from cb_assets.agents.log_dirs import pair_from_log_dir

TREE_KEY = "replay_tree"
SCALE_KEY = "replay_scale"
DEFAULT_SCALE = 1.0
RESULT = "result.json"
RUN_KINDS = ("solo", "coop", "team")  # the folders upstream writes a run's pairs under
_COUNTS = ("steps", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


class ReplayError(RuntimeError):
    """The replay cannot happen: no tree, a pair the tree lacks, a bad result.json."""

    def __init__(self, text: str) -> None:
        super().__init__(f"replay: {text}")


@dataclass(frozen=True)
class ReplayConfig:
    tree: Path
    scale: float


@dataclass(frozen=True)
class Recording:
    """One recorded pair-run: where it was read, how long it took, its agents' blocks."""

    path: Path
    duration_seconds: float
    blocks: dict[str, dict[str, Any]]  # agent id (`solo` for a solo run) → its block


def replay_config(config: dict[str, Any] | None, agent_config: str | None) -> ReplayConfig:
    """The tree and scale from the agent config upstream merged into `config`."""
    config = config or {}
    source = f"agent config {agent_config}" if agent_config else "no agent config given"
    raw_tree = config.get(TREE_KEY)
    if not isinstance(raw_tree, str) or not raw_tree.strip():
        raise ReplayError(
            f"{TREE_KEY} is not set ({source}); give the agent a config file with "
            f"`{TREE_KEY}: <logs tree>` (upstream's --agent-config, the experiment's agent_config)"
        )
    tree = Path(raw_tree).expanduser()
    if not tree.is_absolute() and agent_config:
        # relative to the file that says it, not to whichever folder the runner started in
        tree = Path(agent_config).resolve().parent / tree
    raw_scale = config.get(SCALE_KEY, DEFAULT_SCALE)
    if (
        isinstance(raw_scale, bool)
        or not isinstance(raw_scale, int | float)
        or not math.isfinite(raw_scale)
        or raw_scale <= 0
    ):
        raise ReplayError(f"{SCALE_KEY}={raw_scale!r} ({source}): expected a positive number")
    if not tree.is_dir():
        raise ReplayError(f"{TREE_KEY} {tree} is not a folder ({source})")
    return ReplayConfig(tree=tree.resolve(), scale=float(raw_scale))


def find_recording(tree: Path, kind: str, repo: str, task_id: int, features: list[int]) -> Path:
    """The result.json of the pair's `kind` run in `tree` (a run folder or a logs root)."""
    features_dir = "_".join(f"f{f}" for f in sorted(features))
    relative = Path(kind, repo, str(task_id), features_dir, RESULT)
    if (tree / "config.json").is_file() or any((tree / k).is_dir() for k in RUN_KINDS):
        runs = [tree]
    else:
        runs = sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith("_"))
    for run in runs:
        if (run / relative).is_file():
            return run / relative
    where = f"{tree}/{relative}" if runs == [tree] else f"any of {len(runs)} run folders"
    raise ReplayError(
        f"no recorded {kind} run of {repo}/{task_id} {features_dir} in the tree {tree} "
        f"(looked for {where})"
    )


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def load_recording(path: Path) -> Recording:
    """A recorded result.json: its duration and its agent blocks, checked."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReplayError(f"{path}: cannot read a recorded result: {exc}") from None
    if not isinstance(data, dict):
        raise ReplayError(f"{path}: expected a JSON object, got {type(data).__name__}")
    duration = data.get("duration_seconds")
    if not _number(duration) or duration < 0:
        raise ReplayError(f"{path}: duration_seconds {duration!r} is not a non-negative number")
    if isinstance(data.get("agent"), dict):
        blocks = {"solo": data["agent"]}
    elif isinstance(data.get("agents"), dict) and data["agents"]:
        blocks = dict(data["agents"])
    else:
        raise ReplayError(f"{path}: no `agent` or `agents` block")
    for agent_id, block in blocks.items():
        if not isinstance(block, dict) or not _number(block.get("cost", 0.0)):
            raise ReplayError(f"{path}: agent {agent_id}: no usable block with a numeric cost")
    return Recording(path=path, duration_seconds=float(duration), blocks=blocks)


def block_for(recording: Recording, agent_id: str, feature_id: int | None) -> dict[str, Any]:
    """This agent's recorded block: the one of its feature, else the one of its id."""
    if "solo" in recording.blocks:  # a solo run's one agent did everything
        return recording.blocks["solo"]
    for block in recording.blocks.values():
        if feature_id is not None and block.get("feature_id") == feature_id:
            return block
    if agent_id in recording.blocks:
        return recording.blocks[agent_id]
    raise ReplayError(
        f"{recording.path}: no agent block for {agent_id} (feature {feature_id}); it has "
        f"{', '.join(sorted(recording.blocks))}"
    )


def run_replay(
    task: str,
    image: str,
    *,
    agent_id: str = "agent",
    agents: list[str] | None = None,
    log_dir: str | None = None,
    config: dict[str, Any] | None = None,
    agent_config: str | None = None,
    gold: Callable[..., AgentResult],
    **kwargs: Any,
) -> AgentResult:
    """One agent of a replayed pair-run (upstream's runner calls it once per agent); `gold`
    is oracle's run (offline.py passes it: this module must not import offline.py, which
    registers replay)."""
    started = time.monotonic()
    settings = replay_config(config, agent_config)
    repo, task_id, features = pair_from_log_dir(log_dir)
    kind = Path(str(log_dir)).parents[2].name  # <run>/<kind>/<repo>/<task>/<pair>
    recording = load_recording(find_recording(settings.tree, kind, repo, task_id, features))
    feature = None
    if agent_id != "solo" and agents and agent_id in agents and len(features) == len(agents):
        feature = features[agents.index(agent_id)]  # upstream's order: agent<i> → features[i-1]
    block = block_for(recording, agent_id, feature)
    gold_result = gold(task, image, agent_id=agent_id, agents=agents, log_dir=log_dir, **kwargs)
    # Sleep to the recorded end, so the gold patch and messages count inside the duration.
    remaining = started + recording.duration_seconds / settings.scale - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    counts = {"steps": gold_result.steps}
    counts.update({name: int(block[name]) for name in _COUNTS if _number(block.get(name))})
    return AgentResult(
        status=gold_result.status,
        patch=gold_result.patch,
        cost=float(block.get("cost", 0.0)),
        messages=gold_result.messages,
        sent_messages=gold_result.sent_messages,
        **counts,
    )
