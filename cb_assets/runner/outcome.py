"""What starting a cooperbench process came to: its result, or why it could not start.

Shared by both launchers (a fresh process, the fork server) and their callers.
"""

import signal
from dataclasses import dataclass
from pathlib import Path


class LaunchError(RuntimeError):
    """The cooperbench process could not be started or did not finish in time."""


@dataclass(frozen=True)
class LaunchResult:
    exit_code: int
    log_path: Path
    timed_out: bool = False
    killed_by: str | None = None
    """The signal that ended the process (e.g. "SIGKILL"), None if it exited by itself."""

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        if len(text) <= max_chars:
            return text
        # start at a line: a cut through a secret would leave a tail no scrubber recognises
        tail = text[-max_chars:]
        return tail.partition("\n")[2] or tail


def signal_name(exit_code: int) -> str | None:
    """The signal a negative exit code (subprocess's convention) stands for."""
    if exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"SIG{-exit_code}"
