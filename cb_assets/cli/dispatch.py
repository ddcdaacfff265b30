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
    from dagster._core.run_coordinator import QueuedRunCoordinator

    if daemon_running(instance):  # the queue it drains: the UI's runs wait there too
        yield (
            "the running Dagster daemon's run queue",
            lambda run_id: instance.submit_run(run_id, None),
        )
        return
    if isinstance(instance.run_coordinator, QueuedRunCoordinator):  # no daemon drains it
        how = "this command, through the instance's run launcher (no daemon is running)"
        send = instance.launch_run
    else:
        how, send = "the instance's run coordinator", instance.submit_run
    prestart = getattr(instance.run_launcher, "prestart", None)
    if prestart is not None:
        prestart()  # the warm process starts while the rest sets up
    with contextlib.ExitStack() as stack:
        workspace = None
        if getattr(instance.run_launcher, "needs_workspace", True):
            workspace = stack.enter_context(_workspace(instance))  # e.g. Dagster's default
        yield how, lambda run_id: send(run_id, workspace)


@contextlib.contextmanager
def _workspace(instance: dg.DagsterInstance) -> Iterator[object]:
    """The code location served as the daemon serves it (a code server), for launchers
    that launch through one."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    target = WorkspaceFileTarget(paths=[str(PROJECT_ROOT / "workspace.yaml")])
    with WorkspaceProcessContext(instance, target) as context:
        yield context.create_request_context()
