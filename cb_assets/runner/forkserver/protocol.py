"""What a fork server accepts and answers: the request line, its checks, the exit reply.

Both ends use it: the client to build a request the server will take and to read its
errors, the server to refuse anything else (see the package docstring for the protocol).
"""

import json
import os
from dataclasses import dataclass
from typing import Any

from cb_assets.runner.outcome import signal_name
from cb_assets.shared.logs_layout import ATTEMPTS_DIR

LOCK_FD_ENV = "CB_FORKSERVER_LOCK_FD"  # the start lock, held by a server until it listens
MAX_LINE = 1 << 20  # longest request (or reply) line accepted, in bytes
RUN_KEYS = frozenset({"fingerprint", "argv", "env", "log_path"})
SUBCOMMANDS = ("run", "eval")
RESTART = ("stale", "retiring")  # errors after which the client starts a new server


class Refused(Exception):
    """A request the server answers with {"error": …} and drops."""

    def __init__(self, message: str, **extra: str) -> None:
        super().__init__(message)
        self.reply = {"error": message, **extra}


@dataclass
class Request:
    fingerprint: str
    argv: list[str]
    env: dict[str, str]
    log_path: str
    log_dir: str  # os.path.abspath of argv's --log-dir


RETIRE = object()


def log_dir_argument(argv: list[str]) -> str:
    """The value of argv's one `--log-dir <dir>`. ValueError if it is missing, repeated, or
    spelt another way argparse accepts (`--log-dir=…`, an abbreviation such as `--log`),
    which could hide a second value."""
    values = []
    i = 1
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if len(name) > 2 and name.startswith("--") and "--log-dir".startswith(name):
            if argv[i] != "--log-dir" or i + 1 == len(argv):
                raise ValueError(f"--log-dir must be given as `--log-dir <dir>`, not {argv[i]!r}")
            values.append(argv[i + 1])
            i += 2
            continue
        i += 1
    if len(values) != 1:
        raise ValueError(f"argv must give --log-dir exactly once (it gives it {len(values)} times)")
    return values[0]


def _is_str(value: object) -> bool:
    return isinstance(value, str) and "\0" not in value


def parse_request(line: bytes) -> Request | object:
    """A run request, or RETIRE; Refused for anything else."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):
        raise Refused("the request is not a JSON line") from None
    if request == {"op": "retire"}:
        return RETIRE
    if not isinstance(request, dict) or set(request) != RUN_KEYS:
        raise Refused(f"a request is an object with exactly the keys {sorted(RUN_KEYS)}")
    fp, argv, env, log_path = (request[k] for k in ("fingerprint", "argv", "env", "log_path"))
    if not _is_str(fp) or not _is_str(log_path):
        raise Refused("fingerprint and log_path must be strings")
    if not isinstance(argv, list) or not argv or not all(_is_str(a) for a in argv):
        raise Refused("argv must be a non-empty list of strings")
    if not isinstance(env, dict) or not all(
        _is_str(k) and k and "=" not in k and _is_str(v) for k, v in env.items()
    ):
        raise Refused("env must map variable names to strings")
    if argv[0] not in SUBCOMMANDS:
        raise Refused(f"argv must start with one of {', '.join(SUBCOMMANDS)}, not {argv[0]!r}")
    try:
        log_dir = os.path.abspath(log_dir_argument(argv))
    except ValueError as exc:
        raise Refused(str(exc)) from None
    attempts = os.path.join(log_dir, ATTEMPTS_DIR) + os.sep
    if not os.path.abspath(log_path).startswith(attempts):
        raise Refused(f"log_path must lie under {attempts}")
    return Request(fp, argv, env, log_path, log_dir)


def exit_reply(status: int) -> dict[str, Any]:
    """The exit reply for a wait status: how the child ended."""
    code = os.waitstatus_to_exitcode(status)  # negative: the signal that killed it
    return {"exit_code": code, "signal": signal_name(code)}
