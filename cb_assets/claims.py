"""At most one live attempt per partition, across processes and Dagster runs.

A partition is claimed by an exclusive `flock` on its claim file,
`<logs>/_attempts/claims/<partition>.json`. The kernel drops the lock when the
holder dies (SIGKILL, OOM), so a crashed holder never blocks anyone. The file is
also the partition's attempt journal:

- `last_attempt`: the highest attempt number handed out, so numbers stay unique
  even when two commands run the same partition;
- `running`: the attempt under way. It is written before the attempt starts and
  cleared once its row is committed to DuckDB; a claimant that finds it set knows
  that attempt's holder died (or failed to record it) and records it first.
"""

import fcntl
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cb_assets.attempts import ATTEMPTS_DIR

CLAIMS_DIR = "claims"


class PartitionBusyError(TimeoutError):
    """Another process held the partition's claim for longer than this one would wait."""


@dataclass
class Claim:
    """A held claim: read and update the partition's attempt journal through it."""

    path: Path
    fd: int
    last_attempt: int
    running: dict[str, Any] | None

    def _write(self) -> None:
        data = json.dumps({"last_attempt": self.last_attempt, "running": self.running}).encode()
        # no fsync: the journal must outlive its process, not the machine
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def start(self, attempt: int, **facts: Any) -> None:
        """Journal attempt `attempt` as under way (before it starts)."""
        self.last_attempt = max(self.last_attempt, attempt)
        self.running = {"attempt": attempt, **facts}
        self._write()

    def finish(self) -> None:
        """The attempt under way has been recorded: clear it from the journal."""
        self.running = None
        self._write()


def claim_path(logs_root: Path, partition: str) -> Path:
    if "/" in partition or partition in ("", ".", ".."):
        raise ValueError(f"invalid partition key {partition!r}")
    return logs_root / ATTEMPTS_DIR / CLAIMS_DIR / f"{partition}.json"


def _read(fd: int, path: Path) -> tuple[int, dict[str, Any] | None]:
    raw = os.pread(fd, 1 << 16, 0)
    if not raw.strip():
        return 0, None
    try:
        data = json.loads(raw)
        return int(data.get("last_attempt") or 0), data.get("running") or None
    except (ValueError, TypeError, AttributeError):
        # a journal torn by a full disk: its numbers are also in run_attempts
        return 0, None


def _holder(path: Path) -> str:
    try:
        running = json.loads(path.read_bytes()).get("running") or {}
    except (OSError, ValueError, AttributeError):
        return ""
    facts = ", ".join(f"{k} {running[k]}" for k in ("pid", "dagster_run_id") if k in running)
    return f" ({facts})" if facts else ""


@contextmanager
def claim(
    logs_root: Path,
    partition: str,
    *,
    wait_seconds: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Claim]:
    """Hold `partition`'s claim for the block, waiting for a live holder to finish."""
    path = claim_path(logs_root, partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait_seconds
        told, delay = False, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PartitionBusyError(
                        f"{partition} is being run by another process{_holder(path)}; "
                        f"gave up waiting after {wait_seconds:.0f}s"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"{partition} is being run by another process{_holder(path)}; waiting")
                    told = True
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 1.5, 1.0)
        last, running = _read(fd, path)
        yield Claim(path, fd, last, running)
    finally:
        os.close(fd)
