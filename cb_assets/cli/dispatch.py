"""How this command's runs get launched: by the running daemon, or by this command.

With a Dagster daemon serving the instance (`scripts/dev`), runs go to the instance's run
coordinator — the queue the UI's runs wait in — and the daemon launches them. Without
one, the command launches its runs itself through the instance's run launcher (the same
launcher the daemon uses: run workers forked from a warm process, here this command's).
Either way they are ordinary runs of the code location.
"""

import contextlib
from collections.abc import Callable, Iterator

import dagster as dg

from cb_assets.config import PROJECT_ROOT


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


@contextlib.contextmanager
def dispatcher(instance: dg.DagsterInstance) -> Iterator[tuple[str, Callable[[str], None]]]:
    """(how runs are launched, a function that sends a created run on its way)."""
    from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

    if daemon_running(instance):

        def submit(run_id: str) -> None:
            run = instance.get_run_by_id(run_id)
            instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))

        yield "the running Dagster daemon's run queue", submit
        return
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        how = "the instance's run coordinator"
    else:
        how = "this command, through the instance's run launcher (no daemon is running)"
    prestart = getattr(instance.run_launcher, "prestart", None)
    if prestart is not None:
        prestart()  # the warm process starts while the rest sets up
    with contextlib.ExitStack() as stack:
        workspace = None
        if getattr(instance.run_launcher, "needs_workspace", True):
            workspace = stack.enter_context(_workspace(instance))  # e.g. Dagster's default

        def launch(run_id: str) -> None:
            if isinstance(instance.run_coordinator, QueuedRunCoordinator):
                instance.launch_run(run_id, workspace)
            else:
                instance.submit_run(run_id, workspace)

        yield how, launch


@contextlib.contextmanager
def _workspace(instance: dg.DagsterInstance) -> Iterator[object]:
    """The code location served as the daemon serves it (a code server), for launchers
    that launch through one."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(PROJECT_ROOT / "workspace.yaml")])
    with WorkspaceProcessContext(instance, target) as context:
        yield context.create_request_context()
