"""`cb-assets selfcheck` for real: a Debian root filesystem from the machine's mirror, a Docker
engine with no route out, a registry, Redis and the scripted model server; upstream's own
mini_swe_agent_v2 and `cooperbench eval`; the verdicts drawn from the DuckDB file and the
server's ledger (see cb_assets/bottle/verdicts.py for every promise checked)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.services import require


def test_selfcheck_runs_a_real_experiment_in_a_bottle(tmp_path: Path) -> None:
    for program, package in (
        ("dockerd", "docker.io"),
        ("docker-registry", "docker-registry"),
        ("debootstrap", "debootstrap"),
        ("redis-server", "redis-server"),
    ):
        require(
            shutil.which(program) is not None, f"{program} is missing (apt-get install {package})"
        )
    require(os.geteuid() == 0, "the self-check starts dockerd and runs debootstrap: root only")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "DAGSTER_"))}
    env["CB_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cb_assets.cli", "selfcheck"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    findings = [line for line in out.splitlines() if line.startswith("selfcheck: ")]
    assert findings and not any(line.startswith("selfcheck: FAIL") for line in findings), out
    for promise in (
        "bottle report images_present",
        "bottle report infra_retried",
        "bottle report evals_complete",
        "an evaluation passes",
        "an evaluation fails its tests",
        "a merge conflicts",
        "cost of every attempt equals what the model server served",
        "coop-comm conversations are the agents' own send_message calls",
        "bottle_faults|solo|f1_f2 3 attempt(s), ends infra_error",
        "step limit, never retried",
    ):
        assert any(promise in line and line.startswith("selfcheck: ok") for line in findings), (
            promise,
            findings,
        )
    report = tmp_path / "selfcheck" / "data" / "experiments" / "bottle" / "verification-report.md"
    assert "VERIFIED" in report.read_text()
