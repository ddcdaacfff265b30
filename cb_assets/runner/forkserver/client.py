"""The client's side: find or start the fork server for a logs root, run a pair through it,
and ask it to retire.

Nothing is sent to a server whose directory fails the privacy checks or that runs as another
user; a stale or retiring server is replaced and the run tried again.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cb_assets import config
from cb_assets.runner.forkserver.code_fingerprint import fingerprint
from cb_assets.runner.forkserver.private import (
    check_private_dir,
    ensure_private_dir,
    open_nofollow,
    peer_credentials,
    private_dir,
)
from cb_assets.runner.forkserver.protocol import LOCK_FD_ENV, MAX_LINE, RESTART, log_dir_argument
from cb_assets.runner.outcome import LaunchError, LaunchResult

START_TIMEOUT = 180.0


def socket_path_for(logs_dir: Path) -> Path:
    """The server's socket: `CB_FORKSERVER_SOCKET`, or one per logs root in `private_dir()`."""
    explicit = config.forkserver_socket()
    if explicit is not None:
        return explicit
    # Unix socket paths are capped at ~100 bytes, so name it by a hash of the logs root.
    digest = hashlib.sha256(str(logs_dir.resolve()).encode()).hexdigest()[:12]
    return private_dir() / f"{digest}.sock"


def _connect(socket_path: Path) -> socket.socket | None:
    """A connection to the server at `socket_path`, None if none answers there. LaunchError
    if its directory is not private or the server runs as another user."""
    try:
        check_private_dir(socket_path.parent)
    except FileNotFoundError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path))
        pid, uid, _ = peer_credentials(sock)
    except OSError:
        sock.close()
        return None
    if uid != os.geteuid():
        sock.close()
        raise LaunchError(
            f"the process listening on {socket_path} (pid {pid}) runs as uid {uid}, not as "
            f"this user (uid {os.geteuid()}): refusing to send it a run and its environment"
        )
    return sock


def start_server(socket_path: Path, logs_root: Path, *, wait: bool = True) -> None:
    """Start a server for `logs_root` at `socket_path` unless one answers there; with `wait`,
    return once it answers. The starting server holds the start lock until it listens, so a
    client that finds no socket waits for a server on its way rather than starting a second
    one."""
    ensure_private_dir(socket_path.parent)
    lock = open_nofollow(socket_path.with_suffix(".lock"), os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the rest find it running
        probe = _connect(socket_path)
        if probe is not None:
            probe.close()
            return
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        log = open_nofollow(socket_path.with_suffix(".log"), os.O_WRONLY | os.O_APPEND)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cb_assets.runner.forkserver",
                    "--socket",
                    str(socket_path),
                    "--logs-root",
                    str(logs_root),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock,),
                env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", LOCK_FD_ENV: str(lock)},
            )
        finally:
            os.close(log)
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
    finally:
        os.close(lock)


def _read_reply(sock: socket.socket, buffer: bytearray) -> dict[str, Any]:
    """The next JSON line from the server. LaunchError if it closes or sends garbage;
    TimeoutError and OSError pass through."""
    while b"\n" not in buffer:
        if len(buffer) > MAX_LINE:
            raise LaunchError("cooperbench fork server sent an over-long reply")
        chunk = sock.recv(65536)
        if not chunk:
            raise LaunchError("cooperbench fork server closed the connection")
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise LaunchError(f"cooperbench fork server sent a malformed reply: {line[:200]!r}")
    return reply


def run_via_forkserver(
    socket_path: Path, argv: list[str], env: Mapping[str, str], log_path: Path, timeout: float
) -> LaunchResult:
    """Run `cooperbench <argv>` as a child of the fork server at `socket_path` (started, for
    the logs root argv's `--log-dir` names, if none answers). LaunchError if the run cannot
    be started, is refused, or its outcome is lost (the server died or the connection broke
    while it ran)."""
    try:
        logs_root = Path(log_dir_argument(argv))
    except ValueError as exc:
        raise LaunchError(f"cannot run {argv[:1]} through the fork server: {exc}") from None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    request = {
        "fingerprint": fingerprint(),
        "argv": argv,
        "env": dict(env),
        "log_path": str(log_path),
    }
    line = json.dumps(request).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise LaunchError(f"the run's request (its environment, mostly) is over {MAX_LINE} bytes")
    failure = "no server answered"
    for _ in range(4):
        sock = _connect(socket_path)
        if sock is None:
            start_server(socket_path, logs_root)
            continue
        with sock:  # closing it, whatever happens, makes the server kill the child
            buffer = bytearray()
            sock.settimeout(timeout)
            try:
                sock.sendall(line)
                reply = _read_reply(sock, buffer)
            except TimeoutError:
                return LaunchResult(-9, log_path, timed_out=True)
            except (OSError, LaunchError) as exc:
                failure = f"it failed before the run started ({exc})"
                continue  # no child runs without a {"pid"} reply: trying again is safe
            if reply.get("error") in RESTART:
                failure = f"it was {reply['error']}"
                continue  # the old server has removed its socket; the next loop starts one
            if "error" in reply or not isinstance(reply.get("pid"), int):
                raise LaunchError(
                    f"cooperbench fork server refused the run: {reply.get('error', reply)}"
                )
            pid = reply["pid"]
            try:
                reply = _read_reply(sock, buffer)
            except TimeoutError:
                return LaunchResult(-9, log_path, timed_out=True)
            except (OSError, LaunchError) as exc:
                raise LaunchError(
                    f"lost the cooperbench fork server at {socket_path} while its child {pid} "
                    f"was running ({exc}): the run's outcome is unknown"
                ) from None
            code, killed_by = reply.get("exit_code"), reply.get("signal")
            if not isinstance(code, int) or not isinstance(killed_by, str | None):
                raise LaunchError(f"cooperbench fork server sent a malformed exit: {reply}")
            return LaunchResult(code, log_path, killed_by=killed_by)
    raise LaunchError(f"could not reach a cooperbench fork server at {socket_path}: {failure}")


def stop_server(socket_path: Path, timeout: float = 10.0) -> bool:
    """Ask the server at `socket_path` to retire (the main job does when it is done): it
    removes its socket at once and exits once its children are done. False if none of ours
    answered (nothing is sent to a directory or server that fails the checks)."""
    try:
        sock = _connect(socket_path)
    except LaunchError:
        return False
    if sock is None:
        return False
    with sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(json.dumps({"op": "retire"}).encode() + b"\n")
            reply = _read_reply(sock, bytearray())
        except (OSError, LaunchError):
            return False  # it went away on its own
    return bool(reply.get("retiring"))
