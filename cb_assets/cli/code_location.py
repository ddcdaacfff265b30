"""Runs of the code location in workspace.yaml, created and submitted from this process.

The runs are ordinary runs of that code location — the same origin the daemon and the UI
load — so they show on the timeline, their job links work and the UI re-executes them.
The location's snapshots are built in this process (it has imported the definitions
anyway) instead of starting a code server for it.
"""

from collections.abc import Callable, Mapping

import dagster as dg

from cb_assets.config import PROJECT_ROOT


class CodeLocationClient:
    def __init__(
        self,
        instance: dg.DagsterInstance,
        dispatch: Callable[[str], None],
        run_config: Mapping[str, object],
    ) -> None:
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.workspace.load import location_origins_from_yaml_paths

        (origin,) = location_origins_from_yaml_paths([str(PROJECT_ROOT / "workspace.yaml")])
        self._instance, self._dispatch = instance, dispatch
        self._run_config = dict(run_config)
        self._origin = origin
        self._location = InProcessCodeLocationOrigin(
            origin.loadable_target_origin, location_name=origin.location_name
        ).create_location(instance)
        (self._repo,) = self._location.get_repositories().values()
        self._plans: dict[str, object] = {}

    def submit(self, job_name: str, tags: Mapping[str, str]) -> str:
        """Create a run of `job_name` with `tags` and send it on its way (see
        cb_assets.cli.dispatch); its run id."""
        from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

        remote_job = self._repo.get_full_job(job_name)
        if job_name not in self._plans:  # the plan does not depend on the partitions
            self._plans[job_name] = self._location.get_execution_plan(
                remote_job,
                {},
                step_keys_to_execute=None,
                known_state=None,
                instance=self._instance,
            ).execution_plan_snapshot
        plan = self._plans[job_name]
        run = self._instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=self._run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=RemoteJobOrigin(
                RemoteRepositoryOrigin(self._origin, self._repo.name), job_name
            ),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self._repo.asset_graph,
        )
        self._dispatch(run.run_id)
        return run.run_id


def resource_run_config(defs: dg.Definitions) -> dict[str, object]:
    """This process's resource configuration as run config. The runs it submits carry it,
    so whoever launches them (a daemon started with other settings included) runs them with
    this command's settings, and the UI shows and re-executes them with it."""
    resources: dict[str, object] = {}
    for key, resource in defs.resources.items():
        if not isinstance(resource, dg.ConfigurableResource | dg.ConfigurableIOManager):
            continue
        fields = type(resource).model_fields
        resources[key] = {
            "config": {
                field.alias or name: getattr(resource, name)
                for name, field in fields.items()
                if not isinstance(getattr(resource, name), dg.ConfigurableResource)
            }
        }
    return {"resources": resources}
