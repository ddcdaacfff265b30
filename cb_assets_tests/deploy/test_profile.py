"""The scale-out profile loads and validates: PostgreSQL storage, the Docker launcher, the
queue, the shared folders (test_scale_out_launch.py launches it for real)."""

import re

import dagster as dg
from dagster_docker import DockerRunLauncher
from dagster_postgres import PostgresRunStorage

from cb_assets.bottle import code_image
from cb_assets.bottle.scale_out import Stack, write_home
from cb_assets.config import PROJECT_ROOT
from cb_assets.definitions import defs

PROFILE = PROJECT_ROOT / "deploy" / "docker"


def test_profile_instance_launches_runs_in_containers(postgres_service, monkeypatch) -> None:
    monkeypatch.setenv("CB_CODE_IMAGE", "cb-assets:test")
    monkeypatch.setenv("CB_RUN_NETWORK", "none")
    monkeypatch.setenv("CB_POSTGRES_URL", postgres_service.address)
    with dg.DagsterInstance.from_config(str(PROFILE)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.image == "cb-assets:test" and launcher.networks == ["none"]
        assert "COHERE_API_KEY" in launcher.env_vars  # by name: the value never enters config
        assert "CB_POSTGRES_URL" in launcher.env_vars  # the run worker opens the same storage
        volumes = launcher.container_kwargs["volumes"]
        assert "/srv/cb-assets/data:/srv/cb-assets/data" in volumes  # same path inside
        assert "/run/cb-assets/postgres:/run/cb-assets/postgres" in volumes
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 16


def test_a_stack_moves_the_shared_folders(tmp_path, postgres_service, monkeypatch) -> None:
    stack = Stack(
        tmp_path / "data",
        tmp_path / "dataset",
        postgres_service.socket_dir,
        tmp_path / "docker.sock",
        max_concurrent_runs=3,
    )
    home = write_home(tmp_path / "home", stack)
    text = (home / "dagster.yaml").read_text()
    assert "/srv/cb-assets" not in text and "/run/cb-assets" not in text
    monkeypatch.setenv("CB_POSTGRES_URL", postgres_service.address)
    monkeypatch.setenv("CB_CODE_IMAGE", "cb-assets:test")
    monkeypatch.setenv("CB_RUN_NETWORK", "none")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        volumes = instance.run_launcher.container_kwargs["volumes"]
        assert f"{tmp_path / 'data'}:{tmp_path / 'data'}" in volumes
        assert f"{tmp_path / 'dataset'}:{tmp_path / 'dataset'}:ro" in volumes
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 3


def test_local_instance_bounds_runs_and_pools(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # its storage paths are relative
    with dg.DagsterInstance.from_config(str(PROJECT_ROOT)) as instance:
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 8
        assert concurrency.pool_config.default_pool_limit == 4


def test_isolated_steps_job_uses_the_docker_executor() -> None:
    job = defs().resolve_job_def("run_results_in_containers")
    assert job.executor_def.name == "docker"
    assert job.partitions_def is not None
    assert "run_results" in [n.name for n in job.nodes]


def test_dockerfile_names_no_outside_image_and_the_image_holds_the_code() -> None:
    dockerfile = (PROFILE / "Dockerfile").read_text()
    # the base is built on this machine (cb_assets/bottle/code_image.py), never pulled
    assert re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE) == ["${ENV_IMAGE}"]
    assert re.findall(r"^COPY (.+)$", dockerfile, flags=re.MULTILINE) == [". ./"]
    # what is staged for that COPY exists; the code reads experiments.yaml at the project
    # root (config.experiments_file): an image without it could run no experiment
    for name in (*code_image.CODE_FILES, *code_image.CODE_TREES):
        assert (PROJECT_ROOT / name).exists(), name
    assert "experiments.yaml" in code_image.CODE_FILES
    assert "deploy/docker/dagster.yaml" in code_image.CODE_FILES


def test_the_storage_url_is_read_through_config(monkeypatch) -> None:
    from cb_assets import config

    monkeypatch.delenv("CB_POSTGRES_URL", raising=False)
    assert config.postgres_url() is None
    monkeypatch.setenv("CB_POSTGRES_URL", "postgresql+psycopg2://cb@/dagster?host=/run/x")
    assert config.postgres_url() == "postgresql+psycopg2://cb@/dagster?host=/run/x"
