"""Find runs whose process died without telling the instance (SIGKILL, OOM, a reboot).

Dagster marks a run failed when its process reports the failure; a process killed
outright reports nothing and its run would read STARTED forever. What owns a run is its
run worker: the process Dagster's run launcher started for it, which lives until the run
ends, through every step and every retry. The project's `WarmRunLauncher` tags each run
with its worker's pid and host; Dagster's default launcher announces the pid in the run's
event log ("Started process for run (pid: N)"). A run executed in the calling process
(`execute_in_process`, tests) has neither; `run_results` tags it with its own pid and
host. Liveness is judged only for processes of this host: run workers of another
launcher (containers, another machine) are not ours to judge.
"""

import os
import socket

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.launcher import DefaultRunLauncher

from cb_assets.run_launcher.launcher import HOST_TAG, PID_TAG

_STARTED_PROCESS = "Started process for run"


def tag_current_process(context: dg.AssetExecutionContext) -> None:
    """For a run its launcher did not tag: this process owns it."""
    if PID_TAG in context.run.tags:
        return
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


def run_worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The pid of the process that owns `run` on this host, or None if it is not known
    (not started yet, or not a process of this host)."""
    if isinstance(instance.run_launcher, DefaultRunLauncher):
        records = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20
        ).records
        for record in records:
            event = record.event_log_entry
            data = event.dagster_event.event_specific_data if event.dagster_event else None
            pid = getattr(data, "metadata", {}).get("pid")
            if pid is not None and event.user_message.startswith(_STARTED_PROCESS):
                return int(pid.value)
    if run.tags.get(HOST_TAG) == socket.gethostname() and PID_TAG in run.tags:
        return int(run.tags[PID_TAG])
    return None


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every STARTED run whose owning process on this host is gone."""
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = run_worker_pid(instance, run)
        if pid is None or _alive(pid):
            continue
        latest = instance.get_run_by_id(run.run_id)  # it may have ended while we looked
        if latest is None or latest.status != dg.DagsterRunStatus.STARTED:
            continue
        instance.report_run_failed(
            run,
            f"the process executing this run (pid {pid}) died "
            "without reporting; marked failed by cb_assets",
        )
        reaped.append(run.run_id)
    return reaped
