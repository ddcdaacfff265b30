"""Forking a run's child from the fork server, and the child's life until it exits.

The child dies with the server (PR_SET_PDEATHSIG), leads its own process group (so the
server can kill all a run started), drops the server's descriptors and signal handlers,
takes the request's environment and log file, and becomes `cooperbench <argv>`.
"""

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from cb_assets.runner.forkserver.protocol import Request

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
PR_SET_PDEATHSIG = 1


def fork() -> int:
    """os.fork, the child starting with SIGTERM and SIGINT blocked: they stay pending until
    it has replaced the server's handlers, so none is lost in between."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    return pid


def load_prctl() -> Any:
    """libc's prctl, or None off Linux (loaded before forking: a child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    prctl.restype = ctypes.c_int
    return prctl


def become_child(
    request: Request,
    log_fd: int,
    *,
    server_pid: int,
    prctl: Any,
    close_server: Callable[[], None],
) -> NoReturn:
    """In the forked child: become the cooperbench process for one pair; never return.
    `close_server` closes the server's descriptors (its sockets, pipes and selector)."""

    def body() -> int:
        if prctl is not None and prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != server_pid:
            os._exit(1)  # the server died before the death signal was armed
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by fork
        close_server()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(devnull)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(request.env)
        return _run_cli(request.argv)

    exit_after(body)


def exit_after(body: Callable[[], int]) -> NoReturn:
    """In a forked process: run `body` and `_exit` with its code (1 if it raised, after
    printing the traceback). A fork must never return or unwind into its parent's code."""
    code = 1
    try:
        code = body()
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_cli(argv: list[str]) -> int:
    """In the forked child: be `cooperbench <argv>`; its exit code."""
    from cb_assets.agents.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    return code if 0 <= code <= 255 else 1
