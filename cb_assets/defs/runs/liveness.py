"""Find runs whose process died without telling the instance (SIGKILL, OOM, a reboot).

Dagster marks a run failed when its process reports the failure; a process killed
outright reports nothing and its run would read STARTED forever. `run_results`
tags each run with the pid and host executing it, so a dead one can be told apart
from a slow one and marked failed — then its partition reads as failed and the
next backfill picks it up.
"""

import os
import socket

import dagster as dg

PID_TAG, HOST_TAG = "cb_assets/pid", "cb_assets/host"


def tag_current_process(context: dg.AssetExecutionContext) -> None:
    context.instance.add_run_tags(
        context.run.run_id, {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every STARTED run on this host whose process is gone; return their ids."""
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid, run_host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid is None or run_host != host or _alive(int(pid)):
            continue
        instance.report_run_failed(
            run,
            f"the process executing this run (pid {pid}) died "
            "without reporting; marked failed by cb_assets",
        )
        reaped.append(run.run_id)
    return reaped
