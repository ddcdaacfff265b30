"""The cb-assets command line, run as a user runs it."""

import subprocess
import sys

from cb_assets.config import PROJECT_ROOT


def run_cli(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m cb_assets.cli *args` from the project root, to completion; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cb_assets.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
