"""The instance, code location and daemon a command works with, and its first checks."""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

from cb_assets import config
from cb_assets.cli.code_location import CodeLocationClient, resource_run_config
from cb_assets.cli.dispatch import dispatcher
from cb_assets.cli.launch import run_job
from cb_assets.shared.experiments import Registry


def use_project_instance() -> None:
    """DAGSTER_HOME as `config.dagster_home` decides: DAGSTER_HOME, else under CB_DATA_DIR
    when that is set, else the project root."""
    config.export_dagster_home()
    os.chdir(config.PROJECT_ROOT)  # the project's dagster.yaml's paths are relative to it


@dataclass
class Project:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    location: CodeLocationClient
    pairs: list[str]
    registry: Registry


def _start_fork_server() -> None:
    """The cooperbench fork server starts (an ~8 s import) while the rest sets up; a failure
    here is reported by the first pair-run, which tries again and waits."""
    if config.launcher() == "forkserver":
        from cb_assets.runner.forkserver import socket_path_for, start_server

        with contextlib.suppress(Exception):
            start_server(socket_path_for(config.logs_dir()), config.logs_dir(), wait=False)


def stop_fork_server() -> None:
    from cb_assets.runner.forkserver import socket_path_for, stop_server

    stop_server(socket_path_for(config.logs_dir()))


@contextlib.contextmanager
def open_project(settings: list[str], *, start_runners: bool) -> Iterator[Project | None]:
    """The project, its pairs registered by a run of `register_pairs` — or None after one
    line saying what is wrong. With `start_runners`, the fork server (and the run workers'
    warm process, when this command launches runs) start at once, in the background."""
    use_project_instance()
    if start_runners:
        _start_fork_server()
    instance = dg.DagsterInstance.get()
    with dispatcher(instance) as (how, dispatch):
        yield from _opened(instance, how, dispatch, settings)


def _opened(
    instance: dg.DagsterInstance, how: str, dispatch: Callable[[str], None], settings: list[str]
) -> Iterator[Project | None]:
    from cb_assets.definitions import defs
    from cb_assets.defs.runs.resources import RedisUnavailableError
    from cb_assets.defs.runs.upgrade import upgrade
    from cb_assets.run_launcher.liveness import fail_dead_runs
    from cb_assets.shared.dataset import DatasetError
    from cb_assets.shared.experiments import RegistryError
    from cb_assets.shared.settings import get_setting

    d = defs()
    runner = d.resources["runner"]
    print(f"cb-assets: instance {instance.root_directory}, DuckDB {config.duckdb_path()}")
    for run_id in fail_dead_runs(instance):
        print(f"cb-assets: run {run_id} had died without reporting; marked it failed")
    try:  # the mistakes a user makes first, each reported in one line
        registry = d.resources["experiments"].load()
        pairs = [p.key for p in runner.dataset.pairs()]
        if any(get_setting(s).messaging for s in settings):
            runner.check_redis()
        for line in upgrade(instance, config.duckdb_path()):
            print(f"cb-assets: upgraded from an earlier release: {line}")
    except (DatasetError, RedisUnavailableError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        yield None
        return
    location = CodeLocationClient(instance, dispatch, resource_run_config(d))
    print(f"cb-assets: runs launched by {how}")
    first = run_job(location, instance, "register_pairs")
    if first.status != dg.DagsterRunStatus.SUCCESS:
        from cb_assets.cli.follow import failure_reasons

        (why,) = failure_reasons(instance, first, ["pairs"]).values()
        print(f"error: registering the pairs failed (run {first.run_id}): {why}", file=sys.stderr)
        yield None
        return
    yield Project(d, instance, location, pairs, registry)
