"""Services tests start or need: a dataset on disk, free ports, HTTP servers coming up.

A test that needs a service fails (not skips) when CI is set and the service is
missing: a green CI must mean the feature ran.
"""

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cb_assets.bottle.services import free_port  # noqa: F401 - the tests' one free_port
from cb_assets.config import PROJECT_ROOT


def require(condition: bool, reason: str) -> None:
    """Skip the test unless `condition`; under CI, fail it instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def shared_dataset_dir() -> Path:
    """The CooperBench dataset the tests read (`CB_TEST_DATASET_DIR` overrides it)."""
    return Path(
        os.environ.get(
            "CB_TEST_DATASET_DIR", PROJECT_ROOT.parent / "shared" / "cooperbench-dataset"
        )
    )


def real_logs_dir() -> Path:
    """Real upstream run directories (read-only; README.md there), next to the dataset."""
    return PROJECT_ROOT.parent / "shared" / "real-logs"


def require_real_logs() -> Path:
    """The real run directories; skip without them (fail under CI)."""
    root = real_logs_dir()
    require(root.is_dir(), f"no real upstream logs at {root}")
    return root


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until `url` answers; fail with the end of `log` if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer; {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
