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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cb_assets.defs.storage import file_locks
from cb_assets.shared.logs_layout import ATTEMPTS_DIR

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
        # Write, then cut what is left of a longer earlier journal: a kill or a full disk in
        # between leaves the new journal followed by stale bytes, which `_read` ignores,
        # never an empty one. No fsync: it must outlive its process, not the machine.
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

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
    """The claim file of `partition`: its key with the arm's `/` spelled `+` (no key holds
    a `+`, so two keys never share a file)."""
    if "+" in partition or "\0" in partition or partition.strip("/.") == "":
        raise ValueError(f"invalid partition key {partition!r}")
    return logs_root / ATTEMPTS_DIR / CLAIMS_DIR / f"{partition.replace('/', '+')}.json"


def _read(fd: int) -> tuple[int, dict[str, Any] | None]:
    raw = os.pread(fd, 1 << 16, 0).decode("utf-8", "replace").strip()
    if not raw:
        return 0, None
    try:
        data, _ = json.JSONDecoder().raw_decode(raw)  # stale bytes may follow: see _write
        last = int(data.get("last_attempt") or 0)
        running = data.get("running") or None
        if running is not None and not isinstance(running.get("attempt"), int):
            raise ValueError("running attempt without a number")
        return last, running
    except (ValueError, TypeError, AttributeError):
        # a journal torn some other way: attempt numbers are also in run_attempts
        return 0, None


def _holder(fd: int) -> str:
    _, running = _read(fd)
    facts = ", ".join(
        f"{k} {running[k]}" for k in ("pid", "dagster_run_id") if k in (running or {})
    )
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

        def tell() -> None:
            if on_wait is not None:
                on_wait(f"{partition} is being run by another process{_holder(fd)}; waiting")

        if not file_locks.acquire(fd, fcntl.LOCK_EX, wait_seconds, max_delay=1.0, on_wait=tell):
            raise PartitionBusyError(
                f"{partition} is being run by another process{_holder(fd)}; "
                f"gave up waiting after {wait_seconds:.0f}s"
            )
        last, running = _read(fd)
        yield Claim(path, fd, last, running)
    finally:
        os.close(fd)
