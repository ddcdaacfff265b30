"""The warm run-worker process: it answers, refuses, retires and dies as documented."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from cb_assets.run_launcher import client as client_module
from cb_assets.run_launcher.client import WarmServerClient, WarmServerError, socket_path


def ask(path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@pytest.fixture
def warm(tmp_path):
    client = WarmServerClient(str(tmp_path / "instance"))
    client.start(wait=True)
    yield client
    if client._proc is not None:
        client._proc.kill()
        client._proc.wait()


def test_a_malformed_request_is_answered_and_the_server_goes_on(warm, tmp_path) -> None:
    path = socket_path(str(tmp_path / "instance"))
    assert "bad request" in ask(path, b"not json\n")["error"]
    assert "bad request" in ask(path, json.dumps({"run_id": 1}).encode() + b"\n")["error"]
    assert warm._proc.poll() is None
    assert os.stat(path.parent).st_mode & 0o777 == 0o700  # the private directory


def test_a_server_of_other_code_retires_and_is_replaced(warm, monkeypatch) -> None:
    first = warm._proc
    monkeypatch.setattr(client_module, "code_fingerprint", lambda: "other-code")
    with pytest.raises(WarmServerError, match="kept running other code"):
        warm.start_worker("run-id", "ref")
    assert first.wait(timeout=30) == 0  # it retired instead of forking old code
    assert warm._proc is None


LAUNCHER = """
import os, subprocess, sys, time
server = subprocess.Popen([sys.executable, "-m", "cb_assets.run_launcher", "--socket", sys.argv[1],
                           "--parent", str(os.getpid())])
print(server.pid, flush=True)
time.sleep(600)
"""


def test_the_server_exits_when_the_launching_process_is_gone(tmp_path) -> None:
    path = tmp_path / "warm.sock"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(path)], stdout=subprocess.PIPE, text=True
    )
    server_pid = int(launcher.stdout.readline())
    try:
        deadline = time.monotonic() + 120
        while not path.exists():
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.1)
        os.kill(server_pid, 0)  # alive while its launching process lives
        launcher.kill()  # SIGKILL: nothing tells the server
        launcher.wait()
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{server_pid}") and "Z" not in _state(server_pid):
            assert time.monotonic() < deadline, "the server outlived its launching process"
            time.sleep(0.2)
        assert not path.exists()  # and it removed its socket
    finally:
        launcher.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid, 9)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
