"""What a pair-run's materialization shows, so it can be read in the UI without a shell:
its outcome, why it failed, what it cost (failed attempts included), its conversation and
its patches. Also the run tags that tell experiments apart on the Runs page.
"""

import os
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.defs.runs.results import ResultFileError, read_json_file, read_regular_file
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


def conversation_markdown(pair_dir: Path, logs_root: Path | None) -> str | None:
    """The pair-run's messages as markdown, or None when it has none (solo)."""
    path = pair_dir / "conversation.json"
    if not os.path.lexists(path):
        return None
    try:
        messages = read_json_file(path, root=logs_root, check_text=False)
    except ResultFileError as exc:
        return f"(unreadable: {exc})"
    if not isinstance(messages, list) or not messages:
        return "(no messages)"
    lines = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = str(message.get("message", "")).encode("utf-8", "replace").decode("utf-8")
        lines.append(f"**{message.get('from', '?')} → {message.get('to', '?')}**\n\n{text}\n")
    return _fence("\n".join(lines), "markdown") if len(lines) > 20 else "\n".join(lines)


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
    logs_root: Path | None,
) -> dict[str, Any]:
    """Plain values (and markdown strings under keys ending in `_md`) for the UI."""
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
        "conversation_md": conversation_markdown(pair_dir, logs_root),
        "patches_md": patches_markdown(pair_dir),
    }
    return {k: v for k, v in summary.items() if v is not None}
