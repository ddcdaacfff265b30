"""The fork server: one single-threaded selector loop that forks a child per run request.

It accepts clients of its own user only, parses and checks their requests, forks each run
(see child.py), reports the child's end to its client, and kills the child's process group
if the client goes away. It retires (removes its socket, exits once its children are done)
when asked, when idle, or when a request is for other code or another logs root (for another
root it first forks a successor for it, so that the successor need not import cooperbench
again). Single-threaded, because forking a threaded process can leave the child holding a
lock no thread will release.
"""

import contextlib
import json
import os
import selectors
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cb_assets.runner.forkserver.attempt_log import open_attempt_log
from cb_assets.runner.forkserver.child import (
    STOP_SIGNALS,
    become_child,
    exit_after,
    fork,
    load_prctl,
)
from cb_assets.runner.forkserver.private import peer_credentials
from cb_assets.runner.forkserver.protocol import (
    MAX_LINE,
    RESTART,
    RETIRE,
    Refused,
    Request,
    exit_reply,
    parse_request,
)

IDLE_EXIT_SECONDS = 900.0
REQUEST_TIMEOUT = 60.0  # a connection that sends no complete request by then is dropped


@dataclass
class _Client:
    accepted: float
    buffer: bytearray | None = field(default_factory=bytearray)  # None once a request came
    pid: int | None = None  # its child, once forked


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} fork server {os.getpid()}: {message}", flush=True)


def _listen(path: Path, *, replace: bool) -> tuple[socket.socket, int]:
    """A socket listening at `path` (replacing a stale one there if `replace`), and the
    inode of its file."""
    if replace:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        inode = os.lstat(path).st_ino
        listener.listen(128)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener, inode


class Server:
    """The selector loop: accepts clients, forks their runs, reports their ends."""

    def __init__(
        self,
        socket_path: Path,
        logs_root: str,
        fingerprint: str,
        listening: tuple[socket.socket, int] | None = None,
    ) -> None:
        self.path = socket_path
        self.root = logs_root
        self.fingerprint = fingerprint
        self.pid = os.getpid()
        self.uid = os.geteuid()
        self.prctl = load_prctl()
        self.selector = selectors.DefaultSelector()
        self.clients: dict[socket.socket, _Client] = {}
        self.children: dict[int, socket.socket | None] = {}  # pid → its client, None if gone
        self.exits: dict[int, int] = {}  # child pid → its pidfd, readable once it exits
        self.retiring = False
        self.signalled = 0
        self.last_active = time.monotonic()
        self.next_expiry = self.last_active + REQUEST_TIMEOUT
        # SIGTERM and SIGINT end the loop through a flag; the wake-up pipe interrupts select
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        self.selector.register(self.wake_r, selectors.EVENT_READ, data="signal")
        # the inode, to remove our socket on exit and never a successor's
        self.listener, self.inode = listening or _listen(socket_path, replace=True)
        if listening:
            self.listener.listen(128)  # again: clients' SO_PEERCRED now names this process
        self.selector.register(self.listener, selectors.EVENT_READ, data="listen")

    def _on_signal(self, signum: int, frame: object) -> None:
        if os.getpid() == self.pid:  # not in a child that has not yet reset its handlers
            self.signalled = signum

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        timeout = 1.0 if hasattr(os, "pidfd_open") else 0.05  # pidfds wake us on exits
        while True:
            for key, _ in self.selector.select(timeout=timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "client":
                    self._readable(key.fileobj)  # type: ignore[arg-type]
                elif key.data == "signal":
                    with contextlib.suppress(OSError):
                        os.read(self.wake_r, 512)
                # "exit": a child ended, reaped below
            self._reap()
            if self.signalled:
                self._terminate()
                return
            now = time.monotonic()
            if now >= self.next_expiry:
                self._expire(now)
            if self.children or self.clients:
                self.last_active = now
            elif now - self.last_active > IDLE_EXIT_SECONDS:
                self._retire("idle")
            if self.retiring and not self.children:
                self._close_all()
                log("retired")
                return

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return  # gone already, or out of descriptors: the next loop tries again
        try:
            pid, uid, _ = peer_credentials(conn)
        except OSError:
            conn.close()
            return
        if uid != self.uid:
            log(f"dropped a client of uid {uid} (pid {pid})")
            conn.setblocking(False)
            self._send(conn, {"error": f"this fork server serves uid {self.uid} only"})
            conn.close()
            return
        conn.setblocking(False)
        self.clients[conn] = _Client(accepted=time.monotonic())
        self.selector.register(conn, selectors.EVENT_READ, data="client")

    def _readable(self, conn: socket.socket) -> None:
        client = self.clients.get(conn)
        if client is None:
            return
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away: its run was cancelled, killed or timed out
            self._client_gone(conn)
            return
        if client.buffer is None:
            return  # anything after the request is ignored
        client.buffer.extend(chunk)
        newline = client.buffer.find(b"\n")
        if newline < 0 or newline > MAX_LINE:
            if len(client.buffer) > MAX_LINE:
                self._refuse(conn, Refused(f"the request is longer than {MAX_LINE} bytes"))
            return
        line = bytes(client.buffer[:newline])
        client.buffer = None
        try:
            self._handle(conn, client, line)
        except Refused as exc:
            self._refuse(conn, exc)
        except OSError as exc:  # e.g. the logs root is missing, or fork failed
            self._refuse(conn, Refused(f"cannot start the run: {exc}"))
        except Exception as exc:  # a bug here must cost one request, not the server
            log(f"failed on a request:\n{traceback.format_exc()}")
            self._send(conn, {"error": f"fork server error: {exc!r}"})
            self._client_gone(conn)

    def _handle(self, conn: socket.socket, client: _Client, line: bytes) -> None:
        request = parse_request(line)
        if request is RETIRE:
            self._retire("asked to")
            self._send(conn, {"retiring": True, "children": len(self.children)})
            self._drop(conn)
            return
        assert isinstance(request, Request)
        if self.retiring:
            raise Refused("retiring")
        if request.fingerprint != self.fingerprint:
            self._retire("the agent code changed")
            raise Refused("stale", reason="the agent code changed")
        if request.log_dir != self.root:
            self._hand_over(request.log_dir)
            raise Refused("stale", reason=f"this server serves the logs root {self.root}")
        log_fd = open_attempt_log(self.root, request.log_path)
        try:
            pid = fork()
        except BaseException:
            os.close(log_fd)
            raise
        if pid == 0:
            become_child(
                request,
                log_fd,
                server_pid=self.pid,
                prctl=self.prctl,
                close_server=self._close_in_child,
            )
        os.close(log_fd)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # as the child does: whichever runs first, killpg finds it
        client.pid = pid
        self.children[pid] = conn
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):  # without one, the select timeout reaps it
                self.exits[pid] = os.pidfd_open(pid)
                self.selector.register(self.exits[pid], selectors.EVENT_READ, data="exit")
        if not self._send(conn, {"pid": pid}):
            self._client_gone(conn)

    def _close_in_child(self) -> None:
        """In a forked child: close the server's descriptors, which a run must not hold."""
        for fd in (self.wake_r, self.wake_w, *self.exits.values()):
            os.close(fd)
        for conn in (self.listener, *self.clients):
            conn.close()
        self.selector.close()

    # ------------------------------------------------------------ clients and children

    def _send(self, conn: socket.socket, reply: dict[str, Any]) -> bool:
        """Send one reply line; False if the client cannot take it (gone, or not reading)."""
        data = json.dumps(reply).encode() + b"\n"
        try:
            return conn.send(data) == len(data)
        except OSError:
            return False

    def _drop(self, conn: socket.socket) -> None:
        self.clients.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(conn)
        conn.close()

    def _refuse(self, conn: socket.socket, refusal: Refused) -> None:
        if refusal.reply["error"] not in RESTART:
            log(f"refused a request: {refusal.reply['error']}")
        self._send(conn, refusal.reply)
        self._drop(conn)

    def _kill_group(self, pid: int) -> None:
        for kill in (os.killpg, os.kill):  # the group, and the child should it have left it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)

    def _client_gone(self, conn: socket.socket) -> None:
        client = self.clients.get(conn)
        if client is not None and client.pid in self.children:
            self._kill_group(client.pid)
            self.children[client.pid] = None  # reaped once it exits, reported to no one
        self._drop(conn)

    def _reap(self) -> None:
        while self.children:
            try:  # look before reaping: while the child is a zombie its pid is not reused,
                # so killing what is left of its process group cannot hit a stranger
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # whatever the run left running
            _, status = os.waitpid(pid, 0)
            conn = self.children.pop(pid, None)
            if pid in self.exits:
                self.selector.unregister(self.exits[pid])
                os.close(self.exits.pop(pid))
            if conn is not None and conn in self.clients:
                self._send(conn, exit_reply(status))
                self._drop(conn)

    def _expire(self, now: float) -> None:
        """Drop connections that sent no complete request in time."""
        self.next_expiry = now + 1.0
        for conn, client in list(self.clients.items()):
            if client.buffer is not None and now - client.accepted > REQUEST_TIMEOUT:
                self._refuse(conn, Refused(f"no request within {REQUEST_TIMEOUT:.0f}s"))

    def _retire(self, why: str) -> None:
        """Stop listening and remove the socket now; the loop exits once no child runs."""
        if self.retiring:
            return
        self.retiring = True
        log(f"retiring ({why}) with {len(self.children)} children running")
        self.selector.unregister(self.listener)
        self.listener.close()
        self._unlink_socket()

    def _hand_over(self, root: str) -> None:
        """Retire in favour of a server for the logs root `root`, forked from this one so
        that it need not import cooperbench again, and listening at our path before the
        client that asked hears "stale". (Same user, same code: what that client would
        start itself, only 8 s sooner.)"""
        self._retire(f"handing over to a server for {root}")
        try:
            listening = _listen(self.path, replace=False)
        except OSError as exc:
            log(f"no hand-over ({exc}): the client starts a server")
            return
        try:
            pid = fork()
        except OSError as exc:
            log(f"no hand-over ({exc}): the client starts a server")
            listening[0].close()
            return
        if pid == 0:
            self._become_successor(root, listening)
        listening[0].close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # the intermediate process, gone at once

    def _become_successor(self, root: str, listening: tuple[socket.socket, int]) -> NoReturn:
        """In the forked process: detach, drop this server's state, serve `root`."""

        def body() -> int:
            os.setsid()
            if os.fork():
                os._exit(0)  # the successor is a grandchild: no server waits for it
            signal.set_wakeup_fd(-1)
            for fd in (self.wake_r, self.wake_w, *self.exits.values()):
                os.close(fd)
            for conn in self.clients:
                conn.close()
            self.selector.close()
            successor = Server(self.path, root, self.fingerprint, listening)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by fork
            log(f"listening on {self.path} for runs under {root} (took over from {self.pid})")
            successor.run()
            return 0

        exit_after(body)

    def _unlink_socket(self) -> None:
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)

    def _close_all(self) -> None:
        for conn, client in list(self.clients.items()):
            if client.buffer is not None:  # connected, no request yet: start another server
                self._send(conn, {"error": "retiring"})
            self._drop(conn)
        if not self.retiring:
            self.listener.close()
            self._unlink_socket()
        self.selector.close()
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _terminate(self) -> None:
        """SIGTERM or SIGINT: kill every child's process group, reap them, and go."""
        name = signal.Signals(self.signalled).name
        log(f"{name}: killing {len(self.children)} children")
        for pid in self.children:
            self._kill_group(pid)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.children.pop(pid)
            if pid in self.exits:
                os.close(self.exits.pop(pid))
        self._close_all()
