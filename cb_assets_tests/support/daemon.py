"""A real dagster-daemon over a platform in a temp folder with its own instance home."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from cb_assets.config import PROJECT_ROOT, instance_yaml
from cb_assets_tests.support.platform import platform_env
from cb_assets_tests.support.synthetic import make_subset_dataset


def write_instance_yaml(home: Path, data_dir: Path) -> None:
    """The project's dagster.yaml (warm run launcher, queue, pools), folders under data_dir."""
    (home / "dagster.yaml").write_text(instance_yaml(data_dir))


def wait_for(predicate, timeout: float, what: str):
    """predicate()'s first truthy value, polled every second; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def daemon_env(tmp_path, lite_dataset, redis_url, fork_socket, n_pairs: int, **extra: str):
    """A platform under `tmp_path` with its own instance home; its environment and home."""
    home = tmp_path / "dagster"
    home.mkdir()
    write_instance_yaml(home, tmp_path / "data")
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=n_pairs)
    env = {
        **os.environ,
        **platform_env(tmp_path, dataset, redis_url),
        "DAGSTER_HOME": str(home),
        "CB_FORKSERVER_SOCKET": str(fork_socket),
        **extra,
    }
    return env, home, dataset


def start_daemon(env: dict, log: Path) -> subprocess.Popen:
    """`dagster-daemon run` in a session of its own (see `stop_daemon`), output to `log`."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(daemon: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the daemon's process group (it and the processes it started), then wait."""
    os.killpg(daemon.pid, signal.SIGTERM)
    daemon.wait(timeout=timeout)


BUSY = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)


def busy_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(statuses=list(BUSY))))


def kill_run_workers(instance: dg.DagsterInstance) -> None:
    """SIGKILL the workers of runs still going. Workers are sessions of their own and
    outlive the daemon by design; a test must not leave any to use the shared fork server
    (a client of another logs root makes it hand over, and the next test's runs hear
    "stale")."""
    for run in busy_runs(instance):
        with contextlib.suppress(KeyError, ValueError, ProcessLookupError):
            os.kill(int(run.tags["cb_assets/pid"]), signal.SIGKILL)
