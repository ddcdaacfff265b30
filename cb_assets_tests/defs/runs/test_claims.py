"""Partition claims: one holder at a time across processes, released when a holder dies."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cb_assets.defs.runs import claims

HOLD = """
import sys, time
from pathlib import Path
from cb_assets.defs.runs import claims
with claims.claim(Path(sys.argv[1]), sys.argv[2], wait_seconds=5) as held:
    held.start(held.last_attempt + 1, pid=12345)
    print("held", flush=True)
    time.sleep(60)
"""

PARTITION = "oracle/solo/r2|dspy_task-8394-f1_f2"


def _holder(logs: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(logs), PARTITION], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_keeps_others_out_and_is_named(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        waits = []
        with pytest.raises(claims.PartitionBusyError, match="pid 12345"):
            with claims.claim(tmp_path, PARTITION, wait_seconds=0.3, on_wait=waits.append):
                pass
        assert waits and PARTITION in waits[0]
        with claims.claim(tmp_path, "oracle/solo|dspy_task-8394-f1_f2", wait_seconds=0.3):
            pass  # other partitions are free
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_releases_the_claim_and_leaves_its_attempt_in_the_journal(
    tmp_path: Path,
) -> None:
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with claims.claim(tmp_path, PARTITION, wait_seconds=2) as held:
        assert held.last_attempt == 1
        assert held.running == {"attempt": 1, "pid": 12345}
        held.start(2, pid=os.getpid())
        held.finish()
    with claims.claim(tmp_path, PARTITION, wait_seconds=2) as held:
        assert (held.last_attempt, held.running) == (2, None)


def test_a_torn_journal_reads_as_empty(tmp_path: Path) -> None:
    path = claims.claim_path(tmp_path, PARTITION)
    path.parent.mkdir(parents=True)
    path.write_text('{"last_attempt": 3, "runn')
    with claims.claim(tmp_path, PARTITION, wait_seconds=1) as held:
        assert (held.last_attempt, held.running) == (0, None)


def test_a_symlinked_claim_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path = claims.claim_path(tmp_path / "logs", PARTITION)
    path.parent.mkdir(parents=True)
    path.symlink_to(victim)
    with pytest.raises(OSError):
        with claims.claim(tmp_path / "logs", PARTITION, wait_seconds=1):
            pass
    assert victim.read_text() == "keep"


def test_a_claim_file_spells_the_arm_s_slash_as_plus(tmp_path: Path) -> None:
    path = claims.claim_path(tmp_path, PARTITION)
    assert path.name == "oracle+solo+r2|dspy_task-8394-f1_f2.json"
    assert path.parent == claims.claim_path(tmp_path, "x/solo|p").parent
    assert path.parent.is_relative_to(tmp_path)


@pytest.mark.parametrize("bad", ["", "..", ".", "/", "a+b/solo|p", "x/solo|p\0"])
def test_keys_that_are_no_file_name_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid partition key"):
        claims.claim_path(tmp_path, bad)
