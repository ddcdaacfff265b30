"""Fixtures only: a real Redis, a small dataset, a platform in a temp folder, a Docker
engine and a registry. Helpers live in cb_assets_tests.support.

A test that needs a service fails (not skips) when CI is set and the service is
missing: a green CI must mean the feature ran.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from cb_assets.bottle import services
from cb_assets_tests.support.platform import Platform, open_platform
from cb_assets_tests.support.services import require, shared_dataset_dir

# litellm fetches its model price map from GitHub on import unless told to use its bundled
# copy; a test that imports cooperbench in-process must not send a DNS query off the machine.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def lite_dataset() -> Path:
    root = shared_dataset_dir()
    require((root / "subsets" / "lite.json").is_file(), f"no CooperBench dataset at {root}")
    return root


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    redis = services.start_redis(tmp_path_factory.mktemp("redis"))
    yield redis.address
    redis.stop(timeout=10)


@pytest.fixture(scope="session")
def fork_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One fork server socket for the whole session: cooperbench is imported once (a test
    with another logs root gets a server forked from the last one). The socket is in a
    private directory (mode 0700, as the fork server requires), its path short because unix
    socket paths are capped at ~100 bytes."""
    from cb_assets.runner.forkserver import stop_server

    private = Path(tempfile.mkdtemp(prefix="cbfs-", dir="/tmp"))
    path = private / "fork.sock"
    yield path
    stop_server(path)
    shutil.rmtree(private, ignore_errors=True)


@pytest.fixture
def make_platform(
    tmp_path: Path,
    lite_dataset: Path,
    redis_url: str,
    fork_socket: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator:
    """Factory of platforms for one test (see `open_platform`)."""
    with ExitStack() as stack:

        def make(
            n_pairs: int = 2,
            launcher: str = "forkserver",
            experiments: Path | None = None,
            experiment: str = "oracle",
        ) -> Platform:
            root = tmp_path / f"platform{len(stack._exit_callbacks)}"
            return stack.enter_context(
                open_platform(
                    root,
                    lite_dataset,
                    redis_url,
                    fork_socket,
                    monkeypatch,
                    n_pairs,
                    launcher,
                    experiments,
                    experiment,
                )
            )

        yield make


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Docker engine: `CB_TEST_DOCKER_HOST` if it answers, else a dockerd of our own
    (the bottle's: vfs storage, no iptables, no bridge, so containers get loopback only)."""
    import docker

    given = os.environ.get("CB_TEST_DOCKER_HOST")
    if given:
        docker.DockerClient(base_url=given).ping()
        yield given
        return
    require(
        shutil.which("dockerd") is not None, "dockerd is not installed (apt-get install docker.io)"
    )
    require(os.geteuid() == 0, "starting dockerd needs root")
    try:
        engine = services.start_engine(tmp_path_factory.mktemp("dockerd"))
    except services.ServiceError as exc:
        pytest.fail(str(exc))
    yield engine.address
    engine.stop()


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on 127.0.0.1, which the engine trusts."""
    require(
        shutil.which("docker-registry") is not None,
        "docker-registry is not installed (apt-get install docker-registry)",
    )
    registry = services.start_registry(tmp_path_factory.mktemp("registry"))
    yield registry.address
    registry.stop(timeout=30)
