"""Turn upstream's per-pair log files into rows.

Every error names the file and the key at fault, so one bad file is easy to
find and never takes other partitions down with it. Files are read only as
regular files (a FIFO, device, socket or directory is refused before a byte is
read, without blocking) and never past a size limit; values that DuckDB could
not store — numbers outside int64, negative or non-finite amounts, text that is
not valid UTF-8 — are refused here, as bad input, rather than failing later.
"""

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.result_shape import COOP_KEY, SOLO_KEY
from cb_assets.shared.secrets import scrub
from cb_assets.shared.settings import UPSTREAM_SETTINGS, Setting, get_setting

MAX_RESULT_BYTES = 5 * 1024 * 1024  # result.json is a few KB; anything huge is not upstream's
INT64_MAX = 2**63 - 1

# Non-blocking, so opening a FIFO or a device returns at once; no following of a final
# symlink, so what is opened is what was checked (see _open).
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
}
# A lone surrogate can only come from a \uD800-\uDFFF escape: raw bytes are decoded strictly.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _printable(text: str) -> str:
    """`text` with control characters and lone surrogates as visible escapes (\\x1b, \\ud800)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class ResultFileError(ValueError):
    """A result or conversation file that cannot be read as upstream writes it."""

    def __init__(self, path: Path, problem: str) -> None:
        # a problem quotes the file's values: keep it short and free of secrets
        problem = scrub(problem)
        if len(problem) > 600:
            problem = problem[:600] + "…"
        super().__init__(_printable(f"{path}: {problem}"))
        self.path = path


def file_kind(mode: int) -> str:
    """What an `st_mode` is, for messages: 'a FIFO', 'a directory', …"""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _escapes(path: Path, root: Path) -> bool:
    """Does a symlink — the file or its pair folder — lead out of `root`? Only links are
    resolved: resolving every path costs a system call per component, per file."""
    if not (os.path.islink(path) or os.path.islink(os.path.dirname(path))):
        return False
    try:
        return not path.resolve().is_relative_to(root.resolve())
    except (RuntimeError, OSError):  # a symlink loop
        raise ResultFileError(path, "is a symbolic link that does not resolve (a loop)") from None


def _open(path: Path) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno != errno.ELOOP or not os.path.islink(path):
            raise
    # A symlink (read_json_file has checked that it stays inside the logs root): open what it
    # names, again without following a link in the last step.
    return os.open(os.path.realpath(path), _OPEN_FLAGS)


def _open_error(path: Path, exc: OSError) -> Exception:
    """The clear error for a file that cannot be opened, or `exc` itself when retrying may
    help (an I/O error, too many open files)."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ResultFileError(path, "file not found")
    if exc.errno == errno.ELOOP:
        return ResultFileError(path, "is a symbolic link that does not resolve (a loop)")
    if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
        try:
            kind = file_kind(os.stat(path).st_mode)
        except OSError:
            kind = "a socket or device"
        return ResultFileError(path, f"is {kind}, not a regular file")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ResultFileError(path, "permission denied")
    return exc


def read_regular_file(path: Path, max_bytes: int = MAX_RESULT_BYTES) -> bytes:
    """The bytes of `path`, only if it is a regular file of at most `max_bytes`.

    Opened with O_NONBLOCK | O_NOFOLLOW and checked with fstat before reading: a FIFO, a
    device, a socket or a directory is refused at once, and no more than `max_bytes` + 1
    bytes are ever read, so this returns promptly whatever lies at `path`."""
    try:
        fd = _open(path)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ResultFileError(path, f"is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise ResultFileError(
                path, f"file is {info.st_size} bytes, over the {max_bytes}-byte limit"
            )
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise ResultFileError(path, f"file grew over the {max_bytes}-byte limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


class _Invalid:
    """Stands in for a value the JSON parser met but no row may hold (NaN, 1e400, …)."""

    def __init__(self, text: str, problem: str) -> None:
        self.text, self.problem = text, problem


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_text(value: str, path: Path, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ResultFileError(
            path,
            f"invalid key '{where}': not valid UTF-8 text (lone surrogate "
            f"{value[exc.start]!r} at character {exc.start})",
        ) from None


def _check_tree(data: Any, path: Path, check_text: bool) -> None:
    """Raise for the first stand-in, or (with `check_text`) lone surrogate, naming its key."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _Invalid):
            raise ResultFileError(
                path, f"invalid key '{where or '(top level)'}': {value.text} {value.problem}"
            )
        if isinstance(value, str):
            if check_text:
                _check_text(value, path, where or "(top level)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if check_text:
                    _check_text(key, path, _key(where, key))
                stack.append((_key(where, key), item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def parse_json(raw: bytes, path: Path, *, check_text: bool = True) -> Any:
    """Strict JSON: UTF-8; no NaN, Infinity or numbers beyond a float's range; and, with
    `check_text`, no lone surrogate (e.g. "\\ud800") in any string or key — Python accepts
    them all, DuckDB and UTF-8 do not. Errors name `path` and the key at fault."""
    bad: list[_Invalid] = []

    def invalid(text: str, problem: str) -> _Invalid:
        bad.append(_Invalid(text, problem))
        return bad[-1]

    def parse_float(text: str) -> float | _Invalid:
        value = float(text)
        return value if math.isfinite(value) else invalid(text, "is out of range for a float")

    def parse_int(text: str) -> int | _Invalid:
        try:
            return int(text)
        except ValueError:  # over Python's 4300-digit limit
            return invalid(f"{text[:12]}…", f"is an integer of {len(text)} digits")

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(
            text,
            parse_constant=lambda name: invalid(name, "is not a number JSON allows"),
            parse_float=parse_float,
            parse_int=parse_int,
        )
    except json.JSONDecodeError as exc:
        raise ResultFileError(path, f"invalid JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise ResultFileError(path, "invalid JSON (nested too deeply)") from None
    if bad or (check_text and _SURROGATE_ESCAPE.search(raw)):
        _check_tree(data, path, check_text)
    return data


def read_json_file(
    path: Path,
    max_bytes: int = MAX_RESULT_BYTES,
    root: Path | None = None,
    *,
    check_text: bool = True,
) -> Any:
    """Parse a JSON file the way upstream wrote it; `root`, if given, must contain it.

    Only a regular file is read (see read_regular_file) and parsed strictly (see parse_json);
    every problem is a ResultFileError naming the file and, where there is one, the key."""
    if root is not None and _escapes(path, root):
        raise ResultFileError(path, f"resolves to {path.resolve()}, outside the logs root {root}")
    return parse_json(read_regular_file(path, max_bytes), path, check_text=check_text)


def agent_blocks(result: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Agent id → agent block: solo has `agent`, coop has `agents`."""
    if not isinstance(result, dict):
        raise ResultFileError(path, f"expected a JSON object, got {type(result).__name__}")
    setting = result.get("setting")
    if setting == "solo":
        block = result.get(SOLO_KEY)
        if not isinstance(block, dict):
            raise ResultFileError(path, f"missing or invalid key '{SOLO_KEY}' (solo result)")
        return {"solo": block}
    if setting in UPSTREAM_SETTINGS:  # coop and team keep agent id -> block
        blocks = result.get(COOP_KEY)
        if not isinstance(blocks, dict) or not blocks:
            raise ResultFileError(path, f"missing or invalid key '{COOP_KEY}' ({setting} result)")
        for agent_id, block in blocks.items():
            if not isinstance(block, dict):
                raise ResultFileError(path, f"invalid key 'agents.{agent_id}': not an object")
        return blocks
    raise ResultFileError(
        path, f"invalid key 'setting': {setting!r} (expected one of {', '.join(UPSTREAM_SETTINGS)})"
    )


def _number(block: dict[str, Any], key: str, path: Path, where: str) -> int | float | None:
    """The value at `key`: None, or a number that is not negative."""
    value = block.get(key)
    if value is None:
        return None
    name = _key(where, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFileError(path, f"invalid key '{name}': {value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ResultFileError(path, f"invalid key '{name}': {value!r} is not a finite number")
    if value < 0:
        raise ResultFileError(path, f"invalid key '{name}': {value!r} is negative")
    return value


def _count(block: dict[str, Any], key: str, path: Path, where: str) -> int | None:
    """A count (steps, tokens, lines): a whole number from 0 to the int64 maximum, or None."""
    value = _number(block, key, path, where)
    if value is None:
        return None
    if isinstance(value, float) and not value.is_integer():
        raise ResultFileError(path, f"invalid key '{_key(where, key)}': {value!r} is not whole")
    if value > INT64_MAX:
        raise ResultFileError(
            path, f"invalid key '{_key(where, key)}': {value!r} is over the int64 maximum"
        )
    return int(value)


def _amount(block: dict[str, Any], key: str, path: Path, where: str) -> float | None:
    """An amount (dollars, seconds): a finite float, not negative, or None."""
    value = _number(block, key, path, where)
    if value is None:
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        raise ResultFileError(
            path, f"invalid key '{_key(where, key)}': {value!r} is out of range for a float"
        ) from None


def _text(block: dict[str, Any], key: str, path: Path, where: str) -> str | None:
    """A string that will be stored: None, or text DuckDB can hold (valid UTF-8)."""
    value = block.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ResultFileError(path, f"invalid key '{_key(where, key)}': {value!r} is not a string")
    _check_text(value, path, _key(where, key))
    return value


def count_messages(conversation_file: Path, root: Path | None = None) -> int | None:
    """Messages in `conversation.json`, or None when the file does not exist (solo)."""
    if not os.path.lexists(conversation_file):
        return None
    # Only counted, never stored: a message's text may hold anything JSON allows.
    messages = read_json_file(conversation_file, root=root, check_text=False)
    if not isinstance(messages, list):
        raise ResultFileError(conversation_file, "expected a JSON list of messages")
    return len(messages)


def check_identity(result: dict[str, Any], pair: Pair, setting: Setting, path: Path) -> None:
    """The result is of `pair` in `setting` as its folder says: upstream setting, repo, task
    and features (one real public result file holds another pair's features)."""
    if result.get("setting") != setting.upstream:
        raise ResultFileError(
            path,
            f"key 'setting' is {result.get('setting')!r} but {setting.name} runs write "
            f"{setting.upstream!r}",
        )
    features = result.get("features")
    if (
        not isinstance(features, list)
        or len(features) != 2
        or any(isinstance(f, bool) or not isinstance(f, int) for f in features)
        or sorted(features) != [pair.feature_a, pair.feature_b]
    ):
        raise ResultFileError(
            path, f"key 'features' is {features!r}, expected [{pair.feature_a}, {pair.feature_b}]"
        )
    if (result.get("repo"), result.get("task_id")) != (pair.repo, pair.task_id):
        raise ResultFileError(
            path,
            f"keys 'repo'/'task_id' are {result.get('repo')!r}/{result.get('task_id')!r}, "
            f"expected {pair.repo!r}/{pair.task_id!r}",
        )


STANDARD_RESULT_KEYS = frozenset(
    "repo task_id features setting run_id run_name agent_framework model started_at ended_at "
    "duration_seconds agent agents total_cost total_steps messages_sent log_dir".split()
)
STANDARD_AGENT_KEYS = frozenset(
    "feature_id status cost steps input_tokens output_tokens cache_read_tokens "
    "cache_write_tokens patch_lines error".split()
)


def _extra(result: dict[str, Any], block: dict[str, Any]) -> str | None:
    """What upstream's newer settings or a fork wrote beyond the standard keys (team's
    team_role and metrics, a fork's messages_by_kind), as a JSON object; None if nothing."""
    extra = {k: v for k, v in result.items() if k not in STANDARD_RESULT_KEYS}
    extra.update({f"agent.{k}": v for k, v in block.items() if k not in STANDARD_AGENT_KEYS})
    if not extra:
        return None
    return json.dumps(extra, sort_keys=True, default=str, ensure_ascii=False)


def result_rows(
    pair_dir: Path,
    pair: Pair,
    arm: Arm,
    *,
    ran: bool,
    logs_root: Path | None = None,
    image_digest: str | None = None,
    in_dataset: bool = True,
) -> list[dict[str, Any]]:
    """One row per agent of the result in `pair_dir`, checked against the expected pair.

    Every stored value is validated here: counts are whole numbers within int64, amounts
    finite and not negative, strings valid UTF-8, `features` a list of the pair's two ints."""
    path = pair_dir / "result.json"
    setting = get_setting(arm.setting)
    result = read_json_file(path, root=logs_root)
    blocks = agent_blocks(result, path)
    check_identity(result, pair, setting, path)
    messages = count_messages(pair_dir / "conversation.json", root=logs_root)
    messages_sent = _count(result, "messages_sent", path, "")
    if messages_sent is None and setting.is_coop:
        messages_sent = 0
    if setting.is_coop and messages is not None and messages != messages_sent:
        raise ResultFileError(
            path,
            f"key 'messages_sent' is {messages_sent!r} but conversation.json holds "
            f"{messages} messages",
        )
    shared = {
        "model": _text(result, "model", path, ""),
        "agent_framework": _text(result, "agent_framework", path, ""),
        "run_name": _text(result, "run_name", path, ""),
        "run_id": _text(result, "run_id", path, ""),
        "messaging_enabled": setting.messaging,
        "messages_sent": messages_sent,
        "duration_seconds": _amount(result, "duration_seconds", path, "") or 0.0,
        "total_cost": _amount(result, "total_cost", path, "") or 0.0,
        "started_at": _text(result, "started_at", path, ""),
        "ended_at": _text(result, "ended_at", path, ""),
    }
    rows = []
    for agent_id, block in sorted(blocks.items()):
        where = f"agents.{agent_id}" if setting.is_coop else "agent"
        _check_text(agent_id, path, where)
        status = block.get("status")
        if not isinstance(status, str):
            raise ResultFileError(path, f"missing or invalid key '{where}.status': {status!r}")
        _check_text(status, path, f"{where}.status")
        error = block.get("error")
        if error is not None:
            error = str(error)  # upstream writes str(exception); anything else, as text
            _check_text(error, path, f"{where}.error")
        rows.append(
            {
                "experiment": arm.experiment,
                "setting": setting.name,
                "repeat": arm.repeat,
                "arm": arm.key,
                "pair": pair.key,
                "repo": pair.repo,
                "task_id": pair.task_id,
                "feature_a": pair.feature_a,
                "feature_b": pair.feature_b,
                "agent_id": agent_id,
                "feature_id": _count(block, "feature_id", path, where)
                if agent_id != "solo"
                else None,
                "status": status,
                "cost": _amount(block, "cost", path, where) or 0.0,
                "steps": _count(block, "steps", path, where) or 0,
                "input_tokens": _count(block, "input_tokens", path, where) or 0,
                "output_tokens": _count(block, "output_tokens", path, where) or 0,
                "cache_read_tokens": _count(block, "cache_read_tokens", path, where) or 0,
                "cache_write_tokens": _count(block, "cache_write_tokens", path, where) or 0,
                "patch_lines": _count(block, "patch_lines", path, where) or 0,
                "error": None if error is None else scrub(error),
                **shared,
                "result_path": str(path),
                "ran": ran,
                "image": pair.image(),
                "image_digest": image_digest,
                "in_dataset": in_dataset,
                "extra": _extra(result, block),
            }
        )
    return rows


# Explicit nullable dtypes: the first partition written creates the DuckDB table, and
# an all-null column would otherwise be typed from nothing and reject later values.
RUN_RESULT_DTYPES = {
    "experiment": "string",
    "setting": "string",
    "repeat": "Int64",
    "arm": "string",
    "pair": "string",
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
    "in_dataset": "boolean",
    "extra": "string",
}


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(RUN_RESULT_DTYPES))
    return frame.astype(RUN_RESULT_DTYPES)
