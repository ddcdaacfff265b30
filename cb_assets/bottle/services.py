"""The bottle's services, each a real program on loopback started for the occasion: Redis,
a Docker engine with no route out, and a registry. The self-check and the tests start them
the same way.

The engine runs with `--bridge=none --iptables=false`: a container started without
`--network` gets loopback only, so nothing an agent runs can reach another machine.
"""

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be started; the message names the program and its log."""


@dataclass
class Service:
    name: str
    address: str  # a URL or host:port, what a client is given
    proc: subprocess.Popen
    log: Path
    cleanup: list[Path] = field(default_factory=list)

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} is not installed (apt-get install {package})")
    return found


def _wait(service: Service, ready: Callable[[], bool], timeout: float) -> Service:
    deadline = time.monotonic() + timeout
    while not ready():
        if service.proc.poll() is not None or time.monotonic() > deadline:
            service.stop(timeout=10)
            tail = service.log.read_text(errors="replace")[-2000:] if service.log.exists() else ""
            raise ServiceError(f"{service.name} did not come up; {service.log}:\n{tail}")
        time.sleep(0.1)
    return service


def start_redis(workdir: Path, timeout: float = 15.0) -> Service:
    """`redis-server` on a free loopback port, nothing saved to disk."""
    import redis

    port = free_port()
    log = workdir / "redis.log"
    proc = subprocess.Popen(
        [
            _binary("redis-server", "redis-server"),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(workdir), "--logfile", str(log)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return bool(redis.from_url(url).ping())
        except redis.ConnectionError:
            return False

    return _wait(Service("redis-server", url, proc, log), ready, timeout)


def start_engine(log_dir: Path, timeout: float = 60.0, storage_driver: str = "vfs") -> Service:
    """A private `dockerd` (no bridge, no iptables) on a unix socket; its state lives in a
    short folder under /tmp (unix socket paths are capped at ~100 bytes) that `stop` removes.

    vfs works everywhere but copies a whole image for every container; `overlay2` does not
    (a 1.7 GB code image: 4 s per container against 140 s), and when the kernel or the
    filesystem refuses it the engine falls back to vfs."""
    import docker

    dockerd = _binary("dockerd", "docker.io")
    root = Path(tempfile.mkdtemp(prefix="cbd-", dir="/tmp"))
    host = f"unix://{root}/docker.sock"
    log = log_dir / f"dockerd-{storage_driver}.log"
    proc = subprocess.Popen(
        [
            dockerd,
            f"--storage-driver={storage_driver}",
            *("--iptables=false", "--ip6tables=false", "--bridge=none"),
            *("-H", host, "--data-root", str(root / "data"), "--exec-root", str(root / "exec")),
            *("--pidfile", str(root / "docker.pid")),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            return bool(docker.DockerClient(base_url=host, timeout=5).ping())
        except docker.errors.DockerException:
            return False

    try:
        return _wait(Service("dockerd", host, proc, log, [root]), ready, timeout)
    except ServiceError:
        if storage_driver == "vfs":
            raise
        return start_engine(log_dir, timeout)


def start_registry(workdir: Path, timeout: float = 30.0) -> Service:
    """Debian's `docker-registry` on a free loopback port (an engine trusts 127.0.0.1 without
    TLS); address `127.0.0.1:<port>`."""
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        + str(workdir / "registry-data")
        + f"\nhttp:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n"
    )
    log = workdir / "registry.log"
    proc = subprocess.Popen(
        [_binary("docker-registry", "docker-registry"), "serve", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
            return True
        except OSError:
            return False

    return _wait(Service("docker-registry", f"127.0.0.1:{port}", proc, log), ready, timeout)
