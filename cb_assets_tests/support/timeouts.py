"""Calls that must return in time, even when blocked opening a FIFO."""

import os
import threading
import time
from pathlib import Path

import pytest


def within(seconds: float, fn, *, fifos: tuple[Path, ...] = ()):
    """fn(), failing the test if it has not returned after `seconds`. A call blocked opening
    one of `fifos` is released first (a writer opens and closes it), so no thread is left
    hanging."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 — handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for _ in range(200):
            if not thread.is_alive():
                break
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            time.sleep(0.05)
        pytest.fail(f"still blocked after {seconds:.0f}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")
