"""The warm process: pays the imports once, then forks one run worker per request.

Single-threaded (a blocking accept with a timeout): forking a threaded process can leave
the child holding a lock no thread will release.
"""

import contextlib
import gc
import json
import os
import signal
import socket
import time
from pathlib import Path

from cb_assets.run_launcher.fingerprint import code_fingerprint
from cb_assets.runner.forkserver.child import exit_after
from cb_assets.runner.forkserver.private import peer_credentials

MAX_REQUEST = 1024 * 1024


def log(message: str) -> None:
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} run-worker server {os.getpid()}: {message}",
        flush=True,
    )


def warm_up() -> None:
    """What every run worker would import first: dagster's execution machinery, the
    definitions (and so pandas, duckdb, the resources), built once."""
    import dagster._cli.api  # noqa: F401
    import dagster._core.execution.api  # noqa: F401
    import dagster._core.storage.sqlite_storage  # noqa: F401
    import matplotlib

    from cb_assets.definitions import defs

    matplotlib.use("Agg")  # the report's figures: files only
    import matplotlib.pyplot  # noqa: F401  (a second at import, paid here once)

    defs()


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request over 1 MiB")
    return data


def _parse(data: bytes) -> dict:
    request = json.loads(data)
    if not isinstance(request, dict) or set(request) != {"fingerprint", "run_id", "instance_ref"}:
        raise ValueError("expected exactly fingerprint, run_id and instance_ref")
    if not all(isinstance(v, str) for v in request.values()):
        raise ValueError("every value must be a string")
    return request


def be_run_worker(run_id: str, instance_ref: str) -> int:
    """In the forked child: execute run `run_id` as `dagster api execute_run` would."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

    setup_interrupt_handlers()  # SIGTERM (terminate from the UI) interrupts like SIGINT
    with capture_interrupts():
        with DagsterInstance.from_ref(deserialize_value(instance_ref)) as instance:
            return _execute_run_command_body(
                run_id, instance, lambda _event: None, set_exit_code_on_failure=True
            )


def _fork_worker(listener: socket.socket, conn: socket.socket, request: dict) -> int:
    pid = os.fork()
    if pid:
        return pid

    def body() -> int:
        os.setsid()  # its own session: it outlives this process and a daemon restart
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        listener.close()
        conn.close()
        gc.unfreeze()
        return be_run_worker(request["run_id"], request["instance_ref"])

    exit_after(body)


def serve(path: Path, parent_pid: int) -> None:
    warm_up()
    fingerprint = code_fingerprint()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o077)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(64)
    listener.settimeout(1.0)
    gc.collect()
    gc.freeze()  # shared copy-on-write with every worker: the collector leaves it alone
    log(f"listening on {path} for launches by pid {parent_pid}")
    try:
        while os.getppid() == parent_pid:  # gone with the process that launches runs
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if not _serve_one(listener, conn, fingerprint):
                    return
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        log("stopped")


def _serve_one(listener: socket.socket, conn: socket.socket, fingerprint: str) -> bool:
    """Answer one connection; False when this process must retire."""
    conn.settimeout(10)
    try:
        _, uid, _ = peer_credentials(conn)
        if uid != os.geteuid():
            return True  # another user's client gets nothing, not even an answer
        request = _parse(_read_line(conn))
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"error": f"bad request: {exc}"}).encode() + b"\n")
        return True
    if request["fingerprint"] != fingerprint:
        log("the code changed: retiring")
        with contextlib.suppress(OSError):
            conn.sendall(b'{"error": "stale"}\n')
        return False
    try:
        pid = _fork_worker(listener, conn, request)
    except OSError as exc:
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"error": f"fork failed: {exc}"}).encode() + b"\n")
        return True
    log(f"run {request['run_id']}: worker pid {pid}")
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    return True
