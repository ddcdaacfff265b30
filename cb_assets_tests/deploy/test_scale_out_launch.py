"""The scale-out profile launched for real: a private Docker engine (overlay2, see
cb_assets/bottle/scale_out.py; not the session's vfs one, on which every run container
would start with a full copy of the image), a throwaway PostgreSQL
on a Unix socket, the code image built on this machine (or reused from the cache), a real
`dagster-daemon` on the profile's instance, and `cb-assets materialize` submitting runs
into its queue. Every run executes in a container with network `none`; the instance
storage is reached through the mounted socket folder, DuckDB and logs through the shared
data folder mounted at the same path.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import docker
import pytest
from dagster._core.storage.tags import DOCKER_IMAGE_TAG
from dagster_docker.docker_run_launcher import DOCKER_CONTAINER_ID_TAG
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from cb_assets.bottle.code_image import ensure_code_image
from cb_assets.bottle.scale_out import Stack, environment, start_engine, write_home
from cb_assets.cli.dispatch import daemon_running
from cb_assets.config import PROJECT_ROOT, bottle_cache_dir
from cb_assets.defs.storage import duckdb_access
from cb_assets_tests.support.services import require

PAIRS = 11
SETTINGS = ("solo", "coop-nocomm")  # offline and without messaging: no Redis needed
MAX_RUNS = 2  # the queue's bound on run containers; the command keeps 4 runs in flight
EXPERIMENT = "scaleout"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("CB_TEST_DOCKER_HOST")
    if given:
        docker.DockerClient(base_url=given).ping()
        yield given
        return
    require(shutil.which("dockerd") is not None, "dockerd is missing (apt-get install docker.io)")
    require(os.geteuid() == 0, "the scale-out stack starts dockerd: root only")
    service = start_engine(tmp_path_factory.mktemp("engine"))
    yield service.address
    service.stop()


def _registry(path: Path) -> Path:
    path.write_text(
        "experiments:\n"
        f"  - name: {EXPERIMENT}\n"
        "    agent: oracle\n"
        "    model: oracle\n"
        f"    settings: [{', '.join(SETTINGS)}]\n"
    )
    return path


def _wait_for_daemon(home: Path, env: dict[str, str], daemon: subprocess.Popen, log: Path) -> None:
    saved = dict(os.environ)
    os.environ.update(env)  # the instance's yaml reads CB_POSTGRES_URL and the image by env
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 240
            while not daemon_running(instance):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"dagster-daemon did not heartbeat; {log}:\n{log.read_text()[-3000:]}"
                    )
                time.sleep(1)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _interval(container) -> tuple[datetime, datetime]:
    state = container.attrs["State"]
    return (
        datetime.fromisoformat(state["StartedAt"][:26].rstrip("Z")),
        datetime.fromisoformat(state["FinishedAt"][:26].rstrip("Z")),
    )


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        most = max(most, current)
    return most


def test_runs_execute_in_containers_through_the_daemon_queue(
    tmp_path: Path, engine: str, lite_dataset: Path, postgres_service
) -> None:
    docker_host = engine
    require(
        shutil.which("debootstrap") is not None,
        "debootstrap is missing (apt-get install debootstrap)",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    client = docker.DockerClient(base_url=docker_host, timeout=1800)
    started = time.monotonic()
    image = ensure_code_image(client, bottle_cache_dir(), PROJECT_ROOT, logs)
    image_seconds = time.monotonic() - started

    data = tmp_path / "data"  # the shared volume: the same path on the host and in every run
    data.mkdir()
    stack = Stack(
        data,
        lite_dataset.resolve(),
        postgres_service.socket_dir,
        Path(docker_host.removeprefix("unix://")),
        max_concurrent_runs=MAX_RUNS,
    )
    home = write_home(data / "dagster-home", stack)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "DAGSTER_"))}
    env.update(
        environment(
            stack,
            home,
            postgres_url=postgres_service.address,
            code_image=image.name,
            experiments=_registry(data / "experiments.yaml"),
            docker_host=docker_host,
        )
    )
    daemon_log = logs / "daemon.log"
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=daemon_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_daemon(home, env, daemon, daemon_log)
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cb_assets.cli",
                "materialize",
                "--experiment",
                EXPERIMENT,
                "--pairs",
                str(PAIRS),
                "--images",
                "no",
                "--concurrency",
                "4",
            ],  # fmt: skip
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        seconds = time.monotonic() - started
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-6000:] + daemon_log.read_text()[-3000:]
        assert "the running Dagster daemon's run queue" in out, out[-3000:]
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            runs = instance.get_runs()
            assert runs
            containers = []
            for run in runs:
                assert run.status == dg.DagsterRunStatus.SUCCESS, (run.job_name, run.status)
                assert run.tags[DOCKER_IMAGE_TAG] == image.name
                container = client.containers.get(run.tags[DOCKER_CONTAINER_ID_TAG])
                assert container.labels["dagster/run_id"] == run.run_id
                assert container.attrs["HostConfig"]["NetworkMode"] == "none"
                assert container.attrs["State"]["ExitCode"] == 0
                containers.append(container)
            materialized = instance.get_materialized_partitions(dg.AssetKey("run_results"))
            # what the queue counts: a run from STARTED to its end, as the instance records it
            run_spans = [
                (datetime.fromtimestamp(r.start_time), datetime.fromtimestamp(r.end_time))
                for r in instance.get_run_records()
            ]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert len(materialized) == PAIRS * len(SETTINGS)
    pair_runs = [r for r in runs if r.job_name == "run_pairs"]
    assert pair_runs, [r.job_name for r in runs]
    most = _most_at_once(run_spans)
    assert 1 <= most <= MAX_RUNS, most  # the queue bounded the runs, not the command's 4
    # a container outlives its run by its process's exit (after RUN_SUCCESS is recorded),
    # so container lifetimes may overlap more: a figure, not the bound
    containers_at_once = _most_at_once([_interval(c) for c in containers])

    with duckdb_access.connect(data / "cooperbench.duckdb", read_only=True) as conn:
        rows, partitions = conn.execute(  # a row per agent: solo has one, coop two
            "select count(*), count(distinct (arm, pair)) from run_results where experiment = ?",
            [EXPERIMENT],
        ).fetchone()
    assert partitions == PAIRS * len(SETTINGS) and rows == PAIRS * 3
    # the queue held runs back: the command had more in flight than the queue let start
    assert "won't launch more" in daemon_log.read_text()
    print(
        f"\nscale-out: {len(runs)} runs in {len(containers)} containers ({len(pair_runs)} of "
        f"run_pairs), {partitions} partitions ({rows} rows) in {seconds:.0f}s, "
        f"at most {most} runs at once "
        f"({containers_at_once} containers alive at once); "
        f"image {image.name} {image.size_bytes / 1e6:.0f} MB (environment {image.env_source}"
        f" {image.env_seconds:.0f}s, code layer {image.code_seconds:.1f}s, "
        f"ready in {image_seconds:.0f}s)"
    )
    for container in containers:
        container.remove(force=True)  # vfs: every container is a full copy of the image
