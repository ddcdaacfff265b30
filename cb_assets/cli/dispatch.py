"""How this command's runs get launched: by the running daemon, or by this command.

With a Dagster daemon serving the instance (`scripts/dev`), runs go to the instance's run
coordinator — the queue the UI's runs wait in — and the daemon launches them. Without
one, the command launches its runs itself through the instance's run launcher (the same
launcher the daemon uses: run workers forked from a warm process, here this command's).
Either way they are ordinary runs of the code location.
"""

from collections.abc import Callable

import dagster as dg


def daemon_running(instance: dg.DagsterInstance) -> bool:
    """True when a daemon drains this instance's run queue (a recent heartbeat)."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._daemon.controller import get_daemon_statuses
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    kind = QueuedRunCoordinatorDaemon.daemon_type()
    return get_daemon_statuses(instance, [kind])[kind].healthy is True


def dispatcher(instance: dg.DagsterInstance) -> tuple[str, Callable[[str], None]]:
    """(how runs are launched, a function that sends a created run on its way)."""
    from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

    if daemon_running(instance):

        def submit(run_id: str) -> None:
            run = instance.get_run_by_id(run_id)
            instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))

        return "the running Dagster daemon's run queue", submit
    if isinstance(instance.run_coordinator, QueuedRunCoordinator):
        prestart = getattr(instance.run_launcher, "prestart", None)
        if prestart is not None:
            prestart()  # the warm process starts while the rest sets up

    def launch(run_id: str) -> None:
        instance.launch_run(run_id, workspace=None)

    return "this command, through the instance's run launcher (no daemon is running)", launch
