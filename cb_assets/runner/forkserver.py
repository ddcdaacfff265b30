"""A process that imports cooperbench once and forks one child per pair-run.

Protocol over a Unix socket, one JSON line each way:
  client → {"fingerprint", "argv", "env", "log_path"}
  server → {"pid"} when the child started, then {"exit_code"} when it ended
           (or {"error"} if the request was refused).
If the client goes away first (its Dagster step was cancelled or killed), the
server kills the child's process group: no orphaned runs.
The server is single-threaded (a selector loop), because forking a threaded
process can leave the child holding a lock no thread will release.
"""

import argparse
import contextlib
import fcntl
import gc
import hashlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from cb_assets.runner.launch import LaunchError, LaunchResult

START_TIMEOUT = 180.0
LOCK_FD_ENV = "CB_FORKSERVER_LOCK_FD"  # the start lock, held by a server until it listens
IDLE_EXIT_SECONDS = 900.0


def fingerprint() -> str:
    """Changes whenever the code a child would run changes, so a stale server retires."""
    digest = hashlib.sha256()
    agents_dir = Path(__file__).resolve().parent.parent / "agents"
    for path in sorted(agents_dir.glob("*.py")) + [Path(__file__).resolve()]:
        digest.update(path.read_bytes())
    from importlib.metadata import version

    digest.update(version("cooperbench").encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- client side


def socket_path_for(logs_dir: Path) -> Path:
    """The server's socket: `CB_FORKSERVER_SOCKET`, or one per logs root under /tmp."""
    if os.environ.get("CB_FORKSERVER_SOCKET"):
        return Path(os.environ["CB_FORKSERVER_SOCKET"])
    # Unix socket paths are capped at ~100 bytes, so name it by a hash of the logs root.
    digest = hashlib.sha256(str(logs_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"cb-assets-{digest}.sock"


def _connect(socket_path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
        return sock
    except OSError:
        sock.close()
        return None


def start_server(socket_path: Path, *, wait: bool = True) -> None:
    """Start a server at `socket_path` unless one answers there; with `wait`, return once it
    answers. The starting server holds the start lock until it listens, so a client that
    finds no socket waits for a server on its way rather than starting a second one."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with open(socket_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the rest find it running
        probe = _connect(socket_path)
        if probe is not None:
            probe.close()
            return
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        with open(socket_path.with_suffix(".log"), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cb_assets.runner.forkserver", "--socket", str(socket_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock.fileno(),),
                env={
                    **os.environ,
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    LOCK_FD_ENV: str(lock.fileno()),
                },
            )
        if not wait:
            return  # closing our descriptor leaves the lock with the server until it listens
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LaunchError(
                    f"cooperbench fork server exited with {proc.returncode} while starting; "
                    f"see {socket_path.with_suffix('.log')}"
                )
            probe = _connect(socket_path)
            if probe is not None:
                probe.close()
                return
            time.sleep(0.1)
        proc.kill()
        raise LaunchError(f"cooperbench fork server did not start within {START_TIMEOUT:.0f}s")


def _read_line(sock: socket.socket, buffer: bytearray) -> dict:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise LaunchError("cooperbench fork server closed the connection")
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def run_via_forkserver(
    socket_path: Path, argv: list[str], env: Mapping[str, str], log_path: Path, timeout: float
) -> LaunchResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    request = {
        "fingerprint": fingerprint(),
        "argv": argv,
        "env": dict(env),
        "log_path": str(log_path),
    }
    for _ in range(3):
        sock = _connect(socket_path)
        if sock is None:
            start_server(socket_path)
            continue
        with sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            sock.settimeout(timeout)
            buffer = bytearray()
            try:
                reply = _read_line(sock, buffer)
                if reply.get("error") == "stale":
                    time.sleep(0.2)  # the old server is exiting; the next loop starts a new one
                    continue
                if "error" in reply:
                    raise LaunchError(f"cooperbench fork server refused the run: {reply['error']}")
                reply = _read_line(sock, buffer)
            except TimeoutError:
                return LaunchResult(-9, log_path, timed_out=True)  # closing the socket kills it
            return LaunchResult(int(reply["exit_code"]), log_path)
    raise LaunchError(f"could not reach a cooperbench fork server at {socket_path}")


# ---------------------------------------------------------------- server side


def _run_child(request: dict) -> int:
    """In the forked child: become the cooperbench process for one pair."""
    os.setpgid(0, 0)
    log_fd = os.open(request["log_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from cb_assets.agents.cli import main

    try:
        main(request["argv"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _warm_up() -> None:
    """Pay once, here, what every child would pay on its first print: upstream reports
    through rich, whose markup and emoji tables load (and regexes compile) on first use."""
    import io

    from rich.console import Console

    Console(file=io.StringIO(), force_terminal=True).print("[bold]cb_assets[/bold] :rocket:")


def serve(socket_path: Path) -> None:
    import cooperbench.cli  # noqa: F401  (the expensive import, paid once here)
    import cooperbench.runner.core  # noqa: F401

    import cb_assets.agents.cli  # noqa: F401
    import cb_assets.agents.offline  # noqa: F401

    _warm_up()
    own = fingerprint()
    # Everything imported so far is shared with the children copy-on-write; frozen, the
    # collector never touches (and so never copies) it in a child: forks get cheaper.
    gc.collect()
    gc.freeze()
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    server.listen(128)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    exits: dict[int, int] = {}  # child pid → its pidfd, readable once the child exits
    pending: dict[socket.socket, bytearray] = {}
    last_active = time.monotonic()
    if os.environ.get(LOCK_FD_ENV):
        os.close(int(os.environ.pop(LOCK_FD_ENV)))  # listening: release the start lock
    print(f"fork server {os.getpid()} listening on {socket_path}", flush=True)

    def drop(conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    while True:
        # a child's exit wakes the loop through its pidfd; the timeout is only a fallback
        for key, _ in selector.select(timeout=0.05 if not hasattr(os, "pidfd_open") else 1.0):
            if key.data == "exit":
                continue  # reaped below
            if key.fileobj is server:
                conn, _ = server.accept()
                pending[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            chunk = conn.recv(65536)
            if conn in pending and chunk:
                pending[conn].extend(chunk)
                if b"\n" not in pending[conn]:
                    continue
                request = json.loads(bytes(pending.pop(conn)).partition(b"\n")[0])
                if request.get("fingerprint") != own:
                    conn.sendall(b'{"error": "stale"}\n')
                    drop(conn)
                    if not children:
                        server.close()
                        socket_path.unlink(missing_ok=True)
                        return
                    continue
                pid = os.fork()
                if pid == 0:
                    os._exit(_run_child(request))
                children[pid] = conn
                if hasattr(os, "pidfd_open"):
                    exits[pid] = os.pidfd_open(pid)
                    selector.register(exits[pid], selectors.EVENT_READ, data="exit")
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            elif not chunk:  # the client went away: its run was cancelled or killed
                for pid, owner in list(children.items()):
                    if owner is conn:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(pid, signal.SIGKILL)
                drop(conn)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if pid in exits:
                selector.unregister(exits[pid])
                os.close(exits.pop(pid))
            if conn is not None:
                with contextlib.suppress(OSError):
                    code = os.waitstatus_to_exitcode(status)
                    conn.sendall(json.dumps({"exit_code": code}).encode() + b"\n")
                drop(conn)
        if children or pending:
            last_active = time.monotonic()
        elif time.monotonic() - last_active > IDLE_EXIT_SECONDS:
            server.close()
            socket_path.unlink(missing_ok=True)
            return


def stop_server(socket_path: Path) -> None:
    """Ask a running server to retire (used by the main job when it is done)."""
    sock = _connect(socket_path)
    if sock is not None:
        with sock:
            sock.sendall(json.dumps({"fingerprint": "retire"}).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    serve(parser.parse_args().socket)


if __name__ == "__main__":
    main()
