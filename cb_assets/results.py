"""Turn upstream's per-pair log files into rows.

Every error names the file and the key at fault, so one bad file is easy to
find and never takes other partitions down with it.
"""

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.dataset import Pair
from cb_assets.settings import Setting

MAX_RESULT_BYTES = 5 * 1024 * 1024  # result.json is a few KB; anything huge is not upstream's


class ResultFileError(ValueError):
    """A result or conversation file that cannot be read as upstream writes it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def _escapes(path: Path, root: Path) -> bool:
    """Does a symlink — the file or its pair folder — lead out of `root`? Only links are
    resolved: resolving every path costs a system call per component, per file."""
    if not (os.path.islink(path) or os.path.islink(os.path.dirname(path))):
        return False
    return not path.resolve().is_relative_to(root.resolve())


def read_json_file(path: Path, max_bytes: int = MAX_RESULT_BYTES, root: Path | None = None) -> Any:
    """Parse a JSON file the way upstream wrote it; `root`, if given, must contain it."""
    if root is not None and _escapes(path, root):
        raise ResultFileError(path, f"resolves to {path.resolve()}, outside the logs root {root}")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise ResultFileError(
                    path, f"file is {size} bytes, over the {max_bytes}-byte limit"
                )
            raw = f.read()
    except FileNotFoundError:
        raise ResultFileError(path, "file not found") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ResultFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ResultFileError(path, f"invalid JSON ({exc.msg}, line {exc.lineno})") from None


def agent_blocks(result: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Agent id → agent block: solo has `agent`, coop has `agents`."""
    if not isinstance(result, dict):
        raise ResultFileError(path, f"expected a JSON object, got {type(result).__name__}")
    setting = result.get("setting")
    if setting == "solo":
        block = result.get("agent")
        if not isinstance(block, dict):
            raise ResultFileError(path, "missing or invalid key 'agent' (solo result)")
        return {"solo": block}
    if setting == "coop":
        blocks = result.get("agents")
        if not isinstance(blocks, dict) or not blocks:
            raise ResultFileError(path, "missing or invalid key 'agents' (coop result)")
        for agent_id, block in blocks.items():
            if not isinstance(block, dict):
                raise ResultFileError(path, f"invalid key 'agents.{agent_id}': not an object")
        return blocks
    raise ResultFileError(path, f"invalid key 'setting': {setting!r} (expected 'solo' or 'coop')")


def _number(block: dict[str, Any], key: str, path: Path, where: str) -> float:
    value = block.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFileError(path, f"invalid key '{where}.{key}': {value!r} is not a number")
    return value


def count_messages(conversation_file: Path, root: Path | None = None) -> int | None:
    """Messages in `conversation.json`, or None when the file does not exist (solo)."""
    if not os.path.lexists(conversation_file):
        return None
    messages = read_json_file(conversation_file, root=root)
    if not isinstance(messages, list):
        raise ResultFileError(conversation_file, "expected a JSON list of messages")
    return len(messages)


def result_rows(
    pair_dir: Path,
    pair: Pair,
    setting: Setting,
    *,
    ran: bool,
    logs_root: Path | None = None,
    image_digest: str | None = None,
) -> list[dict[str, Any]]:
    """One row per agent of the result in `pair_dir`, checked against the expected pair."""
    path = pair_dir / "result.json"
    result = read_json_file(path, root=logs_root)
    blocks = agent_blocks(result, path)
    if result["setting"] != setting.upstream:
        raise ResultFileError(
            path,
            f"key 'setting' is {result['setting']!r} but {setting.name} runs write "
            f"{setting.upstream!r}",
        )
    features = result.get("features")
    if not isinstance(features, list) or sorted(features) != [pair.feature_a, pair.feature_b]:
        raise ResultFileError(
            path, f"key 'features' is {features!r}, expected [{pair.feature_a}, {pair.feature_b}]"
        )
    if (result.get("repo"), result.get("task_id")) != (pair.repo, pair.task_id):
        raise ResultFileError(
            path,
            f"keys 'repo'/'task_id' are {result.get('repo')!r}/{result.get('task_id')!r}, "
            f"expected {pair.repo!r}/{pair.task_id!r}",
        )
    messages = count_messages(pair_dir / "conversation.json", root=logs_root)
    messages_sent = result.get("messages_sent", 0 if setting.upstream == "coop" else None)
    if setting.upstream == "coop" and messages is not None and messages != messages_sent:
        raise ResultFileError(
            path,
            f"key 'messages_sent' is {messages_sent!r} but conversation.json holds "
            f"{messages} messages",
        )
    duration = _number(result, "duration_seconds", path, "result")
    total_cost = _number(result, "total_cost", path, "result")
    rows = []
    for agent_id, block in sorted(blocks.items()):
        where = f"agents.{agent_id}" if setting.upstream == "coop" else "agent"
        status = block.get("status")
        if not isinstance(status, str):
            raise ResultFileError(path, f"missing or invalid key '{where}.status': {status!r}")
        error = block.get("error")
        rows.append(
            {
                "pair": pair.key,
                "setting": setting.name,
                "repo": pair.repo,
                "task_id": pair.task_id,
                "feature_a": pair.feature_a,
                "feature_b": pair.feature_b,
                "agent_id": agent_id,
                "feature_id": block.get("feature_id") if agent_id != "solo" else None,
                "status": status,
                "cost": float(_number(block, "cost", path, where)),
                "steps": int(_number(block, "steps", path, where)),
                "input_tokens": int(_number(block, "input_tokens", path, where)),
                "output_tokens": int(_number(block, "output_tokens", path, where)),
                "cache_read_tokens": int(_number(block, "cache_read_tokens", path, where)),
                "cache_write_tokens": int(_number(block, "cache_write_tokens", path, where)),
                "patch_lines": int(_number(block, "patch_lines", path, where)),
                "error": None if error is None else str(error),
                "model": result.get("model"),
                "agent_framework": result.get("agent_framework"),
                "run_name": result.get("run_name"),
                "run_id": result.get("run_id"),
                "messaging_enabled": setting.messaging,
                "messages_sent": messages_sent,
                "duration_seconds": float(duration),
                "total_cost": float(total_cost),
                "started_at": result.get("started_at"),
                "ended_at": result.get("ended_at"),
                "result_path": str(path),
                "ran": ran,
                "image": pair.image(),
                "image_digest": image_digest,
            }
        )
    return rows


# Explicit nullable dtypes: the first partition written creates the DuckDB table, and
# an all-null column would otherwise be typed from nothing and reject later values.
RUN_RESULT_DTYPES = {
    "pair": "string",
    "setting": "string",
    "repo": "string",
    "task_id": "Int64",
    "feature_a": "Int64",
    "feature_b": "Int64",
    "agent_id": "string",
    "feature_id": "Int64",
    "status": "string",
    "cost": "Float64",
    "steps": "Int64",
    "input_tokens": "Int64",
    "output_tokens": "Int64",
    "cache_read_tokens": "Int64",
    "cache_write_tokens": "Int64",
    "patch_lines": "Int64",
    "error": "string",
    "model": "string",
    "agent_framework": "string",
    "run_name": "string",
    "run_id": "string",
    "messaging_enabled": "boolean",
    "messages_sent": "Int64",
    "duration_seconds": "Float64",
    "total_cost": "Float64",
    "started_at": "string",
    "ended_at": "string",
    "result_path": "string",
    "ran": "boolean",
    "image": "string",
    "image_digest": "string",
    "classification": "string",
    "classification_rule": "string",
}


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(RUN_RESULT_DTYPES))
    return frame.astype(RUN_RESULT_DTYPES)
