"""`WarmRunLauncher`: the instance's run launcher (see dagster.yaml `run_launcher`)."""

import os
import signal
import socket

from dagster import _check as check
from dagster._core.events import EngineEventData
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

PID_TAG, HOST_TAG = "cb_assets/pid", "cb_assets/host"


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Forks every run worker from a warm process of this launching process (see the package
    docstring). Tags the run with the worker's pid and host: what owns the run."""

    needs_workspace = False  # a worker loads its job from the run's code origin

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._clients: dict[str, object] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict):
        return cls(inst_data=inst_data)

    def _client(self):
        from cb_assets.run_launcher.client import WarmServerClient

        root = self._instance.root_directory
        if root not in self._clients:
            self._clients[root] = WarmServerClient(root)
        return self._clients[root]

    def prestart(self) -> None:
        """Start this process's warm process now, without waiting for it to listen."""
        self._client().start(wait=False)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        check.invariant(run.job_code_origin is not None, f"run {run.run_id} has no code origin")
        pid = self._client().start_worker(run.run_id, serialize_value(self._instance.get_ref()))
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(pid), HOST_TAG: socket.gethostname()})
        self._instance.report_engine_event(
            f"Forked run worker (pid: {pid}) from the warm process.",
            run,
            EngineEventData.in_process(pid),
            cls=self.__class__,
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or run.tags.get(HOST_TAG) != socket.gethostname():
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(int(run.tags[PID_TAG]), signal.SIGTERM)  # the worker interrupts its steps
        except (KeyError, ValueError, ProcessLookupError):
            return False
        return True
