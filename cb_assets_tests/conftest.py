"""Shared fixtures: a real Redis, a small dataset, and a platform in a temp folder.

A test that needs a service fails (not skips) when CI is set and the service is
missing: a green CI must mean the feature ran.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from cb_assets.cli.launch import range_tags
from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.synthetic import make_subset_dataset  # noqa: F401  (re-exported for tests)


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def shared_dataset_dir() -> Path:
    return Path(
        os.environ.get(
            "CB_TEST_DATASET_DIR", PROJECT_ROOT.parent / "shared" / "cooperbench-dataset"
        )
    )


@pytest.fixture(scope="session")
def lite_dataset() -> Path:
    root = shared_dataset_dir()
    require((root / "subsets" / "lite.json").is_file(), f"no CooperBench dataset at {root}")
    return root


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from cb_assets_tests.support import local_redis

    require(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    url, proc = local_redis.start(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


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


@dataclass
class Platform:
    """A platform configured by environment, as users configure it, inside tmp_path."""

    root: Path
    dataset_dir: Path
    instance: dg.DagsterInstance

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "cooperbench.duckdb"

    def defs(self) -> dg.Definitions:
        from cb_assets.definitions import defs

        return defs()

    def materialize(
        self,
        selection: list[str],
        partition_key: str | None = None,
        run_config: dict | None = None,
        raise_on_error: bool = False,
        partition_range: tuple[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `selection` for one partition, or for a range (first, last) in one run."""
        d = self.defs()
        return dg.materialize(
            list(d.assets),
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources=d.resources,
            raise_on_error=raise_on_error,
            run_config=run_config,
            tags=range_tags(*partition_range) if partition_range else None,
        )

    def query(self, sql: str) -> list[tuple]:
        from cb_assets.defs.storage import duckdb_access

        with duckdb_access.connect(self.duckdb_path, read_only=True) as conn:
            return conn.execute(sql).fetchall()


def platform_env(
    root: Path,
    dataset_dir: Path,
    redis_url: str,
    subset: str = "test",
    launcher: str = "forkserver",
) -> dict[str, str]:
    return {
        "CB_DATA_DIR": str(root / "data"),
        "CB_DATASET_DIR": str(dataset_dir),
        "CB_SUBSET": subset,
        "CB_REDIS_URL": redis_url,
        "CB_LAUNCHER": launcher,
        "CB_EXPERIMENT": "oracle",
        "CB_AGENT": "oracle",
        "CB_MODEL": "oracle",
    }


@contextmanager
def open_platform(
    root: Path,
    lite_dataset: Path,
    redis_url: str,
    fork_socket: Path,
    mp: pytest.MonkeyPatch,
    n_pairs: int = 2,
    launcher: str = "forkserver",
) -> Iterator[Platform]:
    """A platform over the first `n_pairs` lite pairs, configured by environment as users
    configure it, with its own DuckDB file and Dagster instance under `root`."""
    dataset = make_subset_dataset(lite_dataset, root / "dataset", n_pairs)
    for key, value in platform_env(root, dataset, redis_url, launcher=launcher).items():
        mp.setenv(key, value)
    mp.setenv("CB_FORKSERVER_SOCKET", str(fork_socket))
    (root / "dagster").mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        yield Platform(root=root, dataset_dir=dataset, instance=instance)


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

        def make(n_pairs: int = 2, launcher: str = "forkserver") -> Platform:
            root = tmp_path / f"platform{len(stack._exit_callbacks)}"
            return stack.enter_context(
                open_platform(
                    root, lite_dataset, redis_url, fork_socket, monkeypatch, n_pairs, launcher
                )
            )

        yield make


def run_results_meta(result: dg.ExecuteInProcessResult) -> dict:
    """Metadata values of the run_results materialization (not run_attempts') of a run."""
    [meta] = [
        m.metadata
        for m in result.asset_materializations_for_node("run_results")
        if m.asset_key == dg.AssetKey("run_results")
    ]
    return {k: v.value for k, v in meta.items()}


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until `url` answers; fail with the end of `log` if `proc` exits or time runs out."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{url} did not answer; {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


def gave_up_after_retries(result: dg.ExecuteInProcessResult) -> str:
    """The failure message of a step that the RetryPolicy retried twice before it gave up."""
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.event_specific_data.error.message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Docker engine: `CB_TEST_DOCKER_HOST` if it answers, else a dockerd of our own
    (vfs storage, no iptables, no bridge: containers run with --network none)."""
    import docker

    given = os.environ.get("CB_TEST_DOCKER_HOST")
    if given:
        docker.DockerClient(base_url=given).ping()
        yield given
        return
    dockerd = shutil.which("dockerd")
    require(dockerd is not None, "dockerd is not installed (apt-get install docker.io)")
    require(os.geteuid() == 0, "starting dockerd needs root")
    root = Path(tempfile.mkdtemp(prefix="cbd-", dir="/tmp"))  # short: unix socket paths
    host = f"unix://{root}/docker.sock"
    log = open(tmp_path_factory.mktemp("dockerd") / "dockerd.log", "wb")
    proc = subprocess.Popen(
        [
            dockerd,
            "--storage-driver=vfs",
            "--iptables=false",
            "--bridge=none",
            "-H",
            host,
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--pidfile",
            str(root / "docker.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            docker.DockerClient(base_url=host, timeout=5).ping()
            break
        except docker.errors.DockerException:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start; see {log.name}")
            time.sleep(0.3)
    yield host
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on 127.0.0.1, which the engine trusts."""
    binary = shutil.which("docker-registry")
    require(
        binary is not None, "docker-registry is not installed (apt-get install docker-registry)"
    )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("registry")
    (workdir / "config.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        + str(workdir / "data")
        + f"\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(workdir / "config.yml")],
        stdout=open(workdir / "registry.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_http(f"http://127.0.0.1:{port}/v2/", proc, workdir / "registry.log", 30)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def pair_dir(platform: Platform, pair: str, setting: str, experiment: str = "oracle") -> Path:
    """Where upstream writes `pair` of `setting` in this platform's logs."""
    from cb_assets.shared.dataset import parse_pair_key
    from cb_assets.shared.settings import get_setting

    p = parse_pair_key(pair)
    return (
        platform.logs_dir
        / f"{experiment}-{setting}"
        / get_setting(setting).upstream
        / p.repo
        / str(p.task_id)
        / p.features_dir
    )
