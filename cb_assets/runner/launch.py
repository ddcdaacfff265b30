"""Run the wrapped cooperbench CLI for one pair, in a fresh process or a forked one.

`subprocess` starts `python -m cb_assets.agents.cli` for every pair and pays
cooperbench's import time (about 8 s) each time. `forkserver` forks every pair
from a long-lived process that imported cooperbench once; each pair still gets its
own process, environment and exit code, so isolation and crash handling are the same.
"""

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cb_assets import config
from cb_assets.runner.outcome import LaunchError, LaunchResult, signal_name


def child_env(base: Mapping[str, str], passthrough: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(passthrough)
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_in_subprocess(
    argv: list[str],
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    hold_fds: tuple[int, ...] = (),
) -> LaunchResult:
    """Run the wrapped CLI in a fresh process. `hold_fds` (a partition claim) are inherited
    by it, so a lock on them lasts as long as the child does, even if this process is
    killed and the child, in its own session, goes on."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # 0600: providers echo keys into error messages, and these logs keep them verbatim
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cb_assets.agents.cli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            pass_fds=hold_fds,
        )
        try:
            code = proc.wait(timeout=timeout)
            return LaunchResult(code, log_path, killed_by=signal_name(code))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return LaunchResult(-9, log_path, timed_out=True)
        except BaseException:
            os.killpg(proc.pid, 9)  # a cancelled Dagster step must not leave agents behind
            raise


def launch(
    launcher: str,
    argv: list[str],
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    socket_path: Path,
    hold_fds: tuple[int, ...] = (),
) -> LaunchResult:
    """Run one pair's CLI with `launcher`. A fork-server child dies with the connection of
    the process that asked for it, so only a fresh process needs `hold_fds`."""
    if launcher == "subprocess":
        return run_in_subprocess(argv, env, log_path, timeout, hold_fds)
    if launcher == "forkserver":
        from cb_assets.runner.forkserver import run_via_forkserver

        return run_via_forkserver(socket_path, argv, env, log_path, timeout)
    raise LaunchError(
        f"unknown launcher {launcher!r}: expected one of {', '.join(config.LAUNCHERS)}"
    )
