"""The scale-out profile loads and validates (running it needs a Docker host and a code image)."""

import re

import dagster as dg
from dagster_docker import DockerRunLauncher

from cb_assets.config import PROJECT_ROOT
from cb_assets.definitions import defs

PROFILE = PROJECT_ROOT / "deploy" / "docker"


def test_profile_instance_launches_runs_in_containers(monkeypatch) -> None:
    monkeypatch.setenv("CB_CODE_IMAGE", "cb-assets:test")
    monkeypatch.setenv("CB_RUN_NETWORK", "cb-net")
    with dg.DagsterInstance.from_config(str(PROFILE)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, DockerRunLauncher)
        assert launcher.image == "cb-assets:test" and launcher.networks == ["cb-net"]
        assert "COHERE_API_KEY" in launcher.env_vars  # by name: the value never enters config
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 16


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


def test_dockerfile_copies_what_exists() -> None:
    dockerfile = (PROFILE / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in source.split():
            assert (PROJECT_ROOT / path).exists(), path


def test_the_image_holds_the_experiment_registry() -> None:
    # the code reads experiments.yaml at the project root (config.experiments_file): an
    # image without it could run no experiment
    dockerfile = (PROFILE / "Dockerfile").read_text()
    copied = [
        path
        for source in re.findall(r"^COPY (.+) (\S+)$", dockerfile, flags=re.MULTILINE)
        if source[1] == "./"
        for path in source[0].split()
    ]
    assert "experiments.yaml" in copied
