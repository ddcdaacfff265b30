"""A throw-away redis-server on loopback, for tests and benchmarks."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def start(workdir: Path, timeout: float = 10.0) -> tuple[str, subprocess.Popen]:
    """Start `redis-server` on a free loopback port; return its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.from_url(url).ping()
            return url, proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server did not answer on {url}") from None
            time.sleep(0.05)
