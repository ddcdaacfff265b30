"""The bottle model's scripted policy: what a competent engineer would do with a bottle task,
one bash command per turn, decided from the conversation alone (the server keeps no state).

Look at the repository; in coop with messaging, tell the colleague what it is taking
through the agent's own `send_message`; apply the gold patch of each feature it was given
(a second one that no longer applies is left out, as a hurried engineer would); commit,
open the pull request with the `gh` upstream installs; submit.
"""

import base64
import re
from dataclasses import dataclass
from pathlib import Path

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
MODES = {"solo": "solo", "coop-comm": "comm", "coop-nocomm": "nocomm"}  # setting -> key part
_AGENT = re.compile(r"You are \*\*(\w+)\*\*\. Your colleague is (\w+)")


@dataclass(frozen=True)
class Feature:
    repo: str
    task_id: int
    feature_id: int
    description: str
    patch: str

    @property
    def title(self) -> str:
        found = re.search(r"\*\*Title\*\*:\s*(.+)", self.description)
        return found.group(1).strip() if found else f"feature {self.feature_id}"

    @property
    def files(self) -> list[str]:
        return sorted(set(re.findall(r"^\+\+\+ b/(\S+)", self.patch, re.MULTILINE)))


@dataclass(frozen=True)
class Action:
    thought: str
    command: str


def load_features(dataset_dir: Path) -> list[Feature]:
    """Every feature of every task under `dataset_dir` (upstream's layout)."""
    found = []
    for md in sorted(dataset_dir.glob("*/task*/feature*/feature.md")):
        task, feature = md.parent.parent, md.parent
        found.append(
            Feature(
                repo=task.parent.name,
                task_id=int(task.name.removeprefix("task")),
                feature_id=int(feature.name.removeprefix("feature")),
                description=md.read_text(encoding="utf-8").strip(),
                patch=(feature / "feature.patch").read_text(encoding="utf-8"),
            )
        )
    return found


@dataclass(frozen=True)
class Brief:
    """What the first user message asked for."""

    features: tuple[Feature, ...]
    agent_id: str  # "solo" when there is no colleague
    colleague: str | None
    messaging: bool

    @property
    def key(self) -> str:
        """Names this conversation's kind: the same pair, agent and setting on every attempt."""
        setting = (
            "solo" if self.colleague is None else ("coop-comm" if self.messaging else "coop-nocomm")
        )
        return conversation_key(setting, [f.feature_id for f in self.features], self.agent_id)


def conversation_key(setting: str, asked: list[int], agent_id: str) -> str:
    """`<mode>:<features asked, comma-separated>:<agent>`: a solo agent is asked both of a
    pair's features, agent1 the first, agent2 the second."""
    return f"{MODES[setting]}:{','.join(map(str, asked))}:{agent_id}"


def read_brief(messages: list[dict], features: list[Feature]) -> Brief:
    task = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    mine = tuple(f for f in features if f.description and f.description in task)
    if not mine:
        raise ValueError("the task names no feature of the bottle's dataset")
    who = _AGENT.search(task)
    # the coop template has this section only when messaging is on (`send_message` is
    # mentioned either way)
    messaging = who is not None and "## Messaging" in task
    if who is None:
        return Brief(mine, "solo", None, False)
    return Brief(mine, who.group(1), who.group(2), messaging)


def plan(brief: Brief) -> list[Action]:
    """Every turn of the conversation, in order."""
    steps = [
        Action(
            "Let me look at the repository and its state first.",
            "cd /workspace/repo && hostname && git status --short && git log --oneline -1 "
            "&& ls textkit tests",
        )
    ]
    if brief.messaging and brief.colleague:
        files = sorted({f for feature in brief.features for f in feature.files})
        titles = "; ".join(f.title for f in brief.features)
        steps.append(
            Action(
                f"I'll tell {brief.colleague} what I am taking so we do not collide.",
                f"send_message {brief.colleague} <<'MSG'\n"
                f"Hi {brief.colleague}, {brief.agent_id} here. I am implementing: {titles}. "
                f"I will edit {', '.join(files)}. Which files are you changing?\nMSG",
            )
        )
    for feature in brief.features:
        encoded = base64.b64encode(feature.patch.encode()).decode()
        steps.append(
            Action(
                f"Now I implement {feature.title} in {', '.join(feature.files)}.",
                f"cd /workspace/repo && echo {encoded} | base64 -d | git apply - "
                "&& git status --short",
            )
        )
    titles = "; ".join(f.title for f in brief.features)
    steps.append(
        Action(
            "The change is in; I commit it and open my pull request.",
            f"cd /workspace/repo && git add -A && git commit -q -m {_quote(titles)} "
            f"&& gh pr create --title {_quote(titles)} --body 'Implements the feature.'",
        )
    )
    steps.append(Action("My pull request is open; I submit.", SUBMIT))
    return steps


def next_action(messages: list[dict], features: list[Feature]) -> tuple[Brief, int, Action]:
    """The brief, the turn number (0-based) and what to do on this turn; past the plan's
    end the policy submits again (the agent nudges an agent that has not submitted)."""
    brief = read_brief(messages, features)
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    steps = plan(brief)
    return brief, turn, steps[min(turn, len(steps) - 1)]


def container_of(messages: list[dict]) -> str | None:
    """The agent's container (its short id is the hostname the first command printed)."""
    for m in messages:
        if m.get("role") == "tool":
            found = re.search(r"(?<![0-9a-f])([0-9a-f]{12})(?![0-9a-f])", str(m.get("content")))
            if found:
                return found.group(1)
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
