"""Waiting for an `flock` with a deadline: the one polling loop the DuckDB lock and the
partition claims share (a blocking `flock` cannot time out)."""

import fcntl
import random
import time
from collections.abc import Callable


def acquire(
    fd: int,
    mode: int,
    wait_seconds: float,
    *,
    max_delay: float,
    on_wait: Callable[[], None] | None = None,
) -> bool:
    """Take `mode` (LOCK_SH or LOCK_EX) on `fd`, polling with jittered backoff up to
    `max_delay`; call `on_wait` once if the lock is taken; False if time ran out."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            if on_wait is not None:
                on_wait()
                on_wait = None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 1.5, max_delay)
