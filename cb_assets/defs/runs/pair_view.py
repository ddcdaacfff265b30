"""What a pair-run's materialization shows, so it can be read in the UI without a shell:
its outcome, why it failed, what it cost (failed attempts included), its conversation and
its patches. Also the run tags that tell experiments apart on the Runs page.
"""

from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.defs.runs.results import ResultFileError, read_regular_file
from cb_assets.shared.experiments import Experiment
from cb_assets.shared.failures import Verdict
from cb_assets.shared.partition_keys import Arm

MAX_SHOWN_CHARS = 20_000  # per markdown block: the UI stays responsive, the file has the rest
MAX_PATCH_BYTES = 2 * 1024 * 1024


def run_tags(arms: list[Arm], experiments: list[Experiment]) -> dict[str, str]:
    """experiment, agent, model, setting, repeat: one value each, comma-joined for a run
    carrying several."""

    def join(values) -> str:
        return ",".join(dict.fromkeys(str(v) for v in values))

    return {
        "experiment": join(a.experiment for a in arms),
        "agent": join(e.agent for e in experiments),
        "model": join(e.model for e in experiments),
        "setting": join(a.setting for a in arms),
        "repeat": join(a.repeat for a in arms),
    }


def _fence(text: str, language: str = "") -> str:
    if len(text) > MAX_SHOWN_CHARS:
        text = text[:MAX_SHOWN_CHARS] + f"\n… ({len(text) - MAX_SHOWN_CHARS} more characters)"
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"


def conversation_markdown(conversation: pd.DataFrame | None) -> str | None:
    """The pair-run's messages as markdown, from its `conversations` rows (parsed once, with
    the text made storable and scrubbed); None when it has no conversation file (solo)."""
    if conversation is None:
        return None
    if conversation.empty:
        return "(no messages)"
    lines = [
        f"**{_or_unknown(row.sender)} → {_or_unknown(row.recipient)}**\n\n"
        f"{'' if pd.isna(row.text) else row.text}\n"
        for row in conversation.itertuples()
    ]
    return _fence("\n".join(lines), "markdown") if len(lines) > 20 else "\n".join(lines)


def _or_unknown(value: object) -> str:
    return "?" if value is None or pd.isna(value) else str(value)


def patches_markdown(pair_dir: Path) -> str | None:
    """The agents' patches (upstream's *.patch files) as diff blocks, or None."""
    blocks = []
    for patch in sorted(pair_dir.glob("*.patch")):
        try:
            text = read_regular_file(patch, MAX_PATCH_BYTES).decode("utf-8", "replace")
        except (ResultFileError, OSError) as exc:
            text = f"(unreadable: {exc})"
        blocks.append(f"**{patch.name}**\n\n{_fence(text or '(empty)', 'diff')}")
    return "\n\n".join(blocks) or None


def pair_run_summary(
    frame: pd.DataFrame,
    verdict: Verdict,
    *,
    ran: bool,
    attempt: int | None,
    failed_attempts_cost: float,
    pair_dir: Path,
    conversation: pd.DataFrame | None,
) -> dict[str, Any]:
    """Plain values (and markdown strings under keys ending in `_md`) for the UI;
    `conversation` is the pair-run's `conversations` rows, None when it has no file."""
    errors = [
        f"{row.agent_id}: {row.error}"
        for row in frame.itertuples()
        if isinstance(row.error, str) and row.error
    ]
    statuses = ", ".join(f"{r.agent_id} {r.status}" for r in frame.itertuples())
    cost = float(frame["cost"].sum())
    messages = frame["messages_sent"].iloc[0]
    summary: dict[str, Any] = {
        "outcome": verdict.classification,
        "statuses": statuses,
        "failure_reason": "; ".join(errors)[:2000] if errors else (verdict.detail or None),
        "cost": cost,
        "cost_failed_attempts": failed_attempts_cost,
        "cost_with_failed_attempts": cost + failed_attempts_cost,
        "messages_sent": None if pd.isna(messages) else int(messages),
        "ran": ran,
        "attempt": attempt,
        "in_dataset": bool(frame["in_dataset"].iloc[0]),
        "row_count": len(frame),
        "result_file": str(pair_dir / "result.json"),
        "conversation_md": conversation_markdown(conversation),
        "patches_md": patches_markdown(pair_dir),
    }
    return {k: v for k, v in summary.items() if v is not None}
