"""Start the warm process of this launching process and ask it for run workers."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cb_assets.run_launcher.fingerprint import code_fingerprint
from cb_assets.runner.forkserver.private import ensure_private_dir, peer_credentials, private_dir

START_TIMEOUT = 120.0
MAX_REPLY = 64 * 1024


class WarmServerError(RuntimeError):
    """The warm process could not be started or refused to fork a run worker."""


def socket_path(instance_root: str) -> Path:
    """One warm process per launching process and instance."""
    key = hashlib.sha256(f"{os.getpid()}\0{instance_root}".encode()).hexdigest()[:12]
    return private_dir() / f"run-workers-{key}.sock"


class WarmServerClient:
    def __init__(self, instance_root: str) -> None:
        self._path = socket_path(instance_root)
        self._lock = threading.Lock()  # the run queue may launch from several threads
        self._proc: subprocess.Popen | None = None

    def start_worker(self, run_id: str, instance_ref: str) -> int:
        """Fork the worker of `run_id`; its pid."""
        request = {
            "fingerprint": code_fingerprint(),
            "run_id": run_id,
            "instance_ref": instance_ref,
        }
        for _ in range(3):
            reply = self._ask(request)
            if "pid" in reply:
                return int(reply["pid"])
            if reply.get("error") != "stale":
                raise WarmServerError(f"the warm run-worker process refused: {reply}")
            self._wait_gone()  # it retires: the next request starts one with this code
        raise WarmServerError("the warm run-worker process kept running other code")

    def start(self, *, wait: bool) -> None:
        """Start the warm process unless it runs; with `wait`, until it listens."""
        with self._lock:
            sock = self._connect() or self._start(wait=wait)
        if sock is not None:
            sock.close()

    def _ask(self, request: dict) -> dict:
        with self._lock:
            sock = self._connect() or self._start(wait=True)
        assert sock is not None
        with sock:
            sock.settimeout(60)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_REPLY:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        try:
            return json.loads(data)
        except ValueError:
            raise WarmServerError(f"the warm run-worker process sent {data[:200]!r}") from None

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self._path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        _, uid, _ = peer_credentials(sock)
        if uid != os.geteuid():
            sock.close()
            raise WarmServerError(f"{self._path} is served by uid {uid}, not this user")
        return sock

    def _start(self, *, wait: bool) -> socket.socket | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._wait_listening()  # started earlier without waiting
        ensure_private_dir(self._path.parent)
        if self._path.exists():
            self._path.unlink()  # a server of ours that died: the name is only ours
        log = open(self._path.with_suffix(".log"), "ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cb_assets.run_launcher",
                "--socket",
                str(self._path),
                "--parent",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self._wait_listening() if wait else None

    def _wait_listening(self) -> socket.socket:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise WarmServerError(
                    f"the warm run-worker process exited with {self._proc.returncode} while "
                    f"starting; see {self._path.with_suffix('.log')}"
                )
            sock = self._connect()
            if sock is not None:
                return sock
            time.sleep(0.05)
        self._proc.kill()
        raise WarmServerError(f"the warm run-worker process did not start in {START_TIMEOUT}s")

    def _wait_gone(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._path.exists():
            self._path.unlink()
