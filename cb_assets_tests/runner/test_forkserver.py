"""The fork server against hostile neighbours and bad clients: real servers, real sockets.

Starting a server imports cooperbench (~8 s), so the servers this module needs start
together, once, and all but the destructive tests share one (`main`). Tests that need a
second user (root becomes `nobody` through setpriv) use `require`: skipped without root,
failed under CI.
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cb_assets.runner.command import RunSpec, run_argv
from cb_assets.runner.forkserver import (
    fingerprint,
    peer_credentials,
    private_dir,
    run_via_forkserver,
    socket_path_for,
    start_server,
    stop_server,
)
from cb_assets.runner.launch import child_env
from cb_assets.runner.outcome import LaunchError
from cb_assets.shared.dataset import Pair, load_pairs
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.services import require
from cb_assets_tests.support.synthetic import make_subset_dataset

SYSTEM_PYTHON = "/usr/bin/python3"  # stdlib only; nobody cannot run the venv's interpreter


def as_nobody(*args: str, **kwargs) -> subprocess.Popen:
    """A process of another user (root only): `nobody`, through setpriv."""
    require(os.geteuid() == 0, "switching to a second user needs root")
    require(shutil.which("setpriv") is not None, "setpriv is not installed (util-linux)")
    require(Path(SYSTEM_PYTHON).exists(), f"no {SYSTEM_PYTHON} for the second user")
    return subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", SYSTEM_PYTHON, *args],
        stdout=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def nobody_uid() -> int:
    return pwd.getpwnam("nobody").pw_uid


def dead(pid: int, timeout: float = 10.0) -> bool:
    """Whether `pid` is gone (or a zombie) within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Conn:
    """One raw client connection: JSON lines out, JSON lines in."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buffer = b""

    def send(self, payload: dict | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() + b"\n"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def line(self) -> dict | None:
        """The next reply, None once the server closed the connection."""
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def replies(self) -> list[dict]:
        """Every reply until the server closes the connection."""
        out = []
        while (reply := self.line()) is not None:
            out.append(reply)
        return out

    def close(self) -> None:
        self.sock.close()


def exchange(path: Path, payload: dict | bytes) -> list[dict]:
    conn = Conn(path)
    try:
        conn.send(payload)
        return conn.replies()
    finally:
        conn.close()


@dataclass
class Server:
    """A fork server this module started: its process, socket and logs root."""

    proc: subprocess.Popen
    socket: Path
    root: Path
    log: Path
    ready: bool = False

    def wait_ready(self) -> "Server":
        deadline = time.monotonic() + 300
        while not self.ready:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"fork server did not start:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(self.socket))
                self.ready = True
            time.sleep(0.1)
        return self

    def request(self, log_name: str = "help.log", argv: list[str] | None = None) -> dict:
        """A valid run request: `run --help`, which exits 0 at once."""
        return {
            "fingerprint": fingerprint(),
            "argv": argv or ["run", "--log-dir", str(self.root), "--help"],
            "env": child_env(os.environ, {}),
            "log_path": str(self.root / "_attempts" / log_name),
        }

    def assert_serves(self) -> None:
        """The server is alive and runs a valid request to its end."""
        replies = exchange(self.socket, self.request("alive.log"))
        assert [list(r) for r in replies] == [["pid"], ["exit_code", "signal"]], replies
        assert replies[1] == {"exit_code": 0, "signal": None}
        assert "usage" in (self.root / "_attempts" / "alive.log").read_text()


def launch_server(home: Path) -> Server:
    home.mkdir(mode=0o700)
    root = home / "logs"
    (root / "_attempts").mkdir(parents=True)
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cb_assets.runner.forkserver",
                "--socket",
                str(home / "s.sock"),
                "--logs-root",
                str(root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        )
    return Server(proc, home / "s.sock", root, log)


SERVERS = ("main", "retire", "handover", "kill9", "term")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    """Every server of this module, started at once so that their imports overlap."""
    base = Path(tempfile.mkdtemp(prefix="cbfst-", dir="/tmp"))  # short: socket paths
    started = {name: launch_server(base / name) for name in SERVERS}
    yield started
    for server in started.values():
        with contextlib.suppress(LaunchError):
            stop_server(server.socket)  # a successor forked by a hand-over, say
        if server.proc.poll() is None:
            server.proc.kill()  # its children die with it
        server.proc.wait()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def main(servers: dict[str, Server]) -> Server:
    return servers["main"].wait_ready()


@pytest.fixture(scope="module")
def slow_pair(lite_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pair]:
    """A one-pair dataset: an oracle solo run of it sleeps `CB_OFFLINE_AGENT_DELAY` s."""
    dataset = make_subset_dataset(lite_dataset, tmp_path_factory.mktemp("fs") / "ds", 1)
    return dataset, load_pairs(dataset, "test")[0]


def slow_request(server: Server, slow_pair: tuple[Path, Pair], delay: float, name: str) -> dict:
    dataset, pair = slow_pair
    spec = RunSpec(
        agent="oracle",
        model="oracle",
        dataset_dir=dataset,
        logs_dir=server.root,
        redis_url="redis://127.0.0.1:1",
    )
    env = {"CB_DATASET_DIR": str(dataset), "CB_OFFLINE_AGENT_DELAY": str(delay)}
    return {
        "fingerprint": fingerprint(),
        "argv": run_argv(spec, pair, Arm("oracle", "solo"), force=True),
        "env": child_env(os.environ, env),
        "log_path": str(server.root / "_attempts" / name),
    }


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


# ---------------------------------------------------------------- where the socket lives


def test_default_socket_is_in_a_private_directory(tmp_path, monkeypatch) -> None:
    """No more /tmp/cb-assets-<hash>.sock that another user could bind first."""
    monkeypatch.delenv("CB_FORKSERVER_SOCKET", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert private_dir() == Path(f"/tmp/cb-assets-{os.geteuid()}")
    assert socket_path_for(tmp_path).parent == private_dir()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert socket_path_for(tmp_path).parent == runtime / "cb-assets"


@pytest.mark.parametrize("flaw", ["world-writable", "symlink", "not-a-directory"])
def test_a_socket_directory_others_could_use_is_refused(tmp_path, flaw) -> None:
    """The client checks the socket's directory before it connects, starts or sends."""
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    directory = tmp_path / "dir"
    if flaw == "world-writable":
        directory.mkdir()
        directory.chmod(0o777)
        expected = "has mode 0o777"
    elif flaw == "symlink":
        directory.symlink_to(target)
        expected = "is a symbolic link"
    else:
        directory.write_text("")
        expected = "is not a directory"
    root = tmp_path / "logs"
    with pytest.raises(LaunchError, match=f"{directory} {expected}"):
        run_via_forkserver(
            directory / "fork.sock",
            ["run", "--log-dir", str(root), "--help"],
            {"OPENAI_API_KEY": "sk-never-sent"},
            root / "_attempts" / "x.log",
            30,
        )
    assert list(target.iterdir()) == []  # nothing started or created through the link
    if directory.is_dir() and not directory.is_symlink():
        assert list(directory.iterdir()) == []


def test_a_directory_of_another_user_is_refused(tmp_path, monkeypatch) -> None:
    """A pre-created `cb-assets` directory of someone else, in the default location."""
    require(os.geteuid() == 0, "handing a directory to a second user needs root")
    monkeypatch.delenv("CB_FORKSERVER_SOCKET", raising=False)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    squatted = runtime / "cb-assets"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, nobody_uid(), -1)
    root = tmp_path / "logs"
    path = socket_path_for(root)
    assert path.parent == squatted
    with pytest.raises(LaunchError, match=f"{squatted} is owned by uid {nobody_uid()}"):
        start_server(path, root)
    with pytest.raises(LaunchError, match=f"{squatted} is owned by uid {nobody_uid()}"):
        run_via_forkserver(
            path, ["run", "--log-dir", str(root)], {}, root / "_attempts" / "x.log", 30
        )
    assert list(squatted.iterdir()) == []


@pytest.mark.parametrize("which", [".lock", ".log"])
def test_start_lock_and_log_are_never_opened_through_a_symlink(tmp_path, which) -> None:
    """A symlinked `.lock` once made root truncate a root-owned file."""
    private = tmp_path / "p"
    private.mkdir(mode=0o700)
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (private / f"fork{which}").symlink_to(precious)
    with pytest.raises(LaunchError, match="symbolic link"):
        start_server(private / "fork.sock", tmp_path / "logs")
    assert precious.read_text() == "keep me"
    assert not (private / "fork.sock").exists()


# ---------------------------------------------------------------- peer credentials

IMPOSTOR = """
import os, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
listener.listen(8)  # SO_PEERCRED reports whoever called listen(): this second user
print("listening", os.geteuid(), flush=True)
listener.settimeout(30)
received = b""
try:
    conn, _ = listener.accept()
    conn.settimeout(3)
    while chunk := conn.recv(65536):
        received += chunk
except OSError:
    pass
print(len(received), received.decode(errors="replace"), flush=True)
"""


def test_client_never_sends_to_a_server_of_another_user(tmp_path) -> None:
    """Even at our own socket path, a listener of another uid gets no request, no env."""
    private = tmp_path / "p"
    private.mkdir(mode=0o700)
    path = private / "fork.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))
    impostor = as_nobody("-c", IMPOSTOR, str(bound.fileno()), pass_fds=(bound.fileno(),))
    bound.close()
    assert impostor.stdout.readline().split() == ["listening", str(nobody_uid())]
    root = tmp_path / "logs"
    with pytest.raises(LaunchError, match=f"runs as uid {nobody_uid()}"):
        run_via_forkserver(
            path,
            ["run", "--log-dir", str(root), "--help"],
            {"OPENAI_API_KEY": "sk-never-sent"},
            root / "_attempts" / "x.log",
            10,
        )
    out, _ = impostor.communicate(timeout=60)
    assert out.split(" ", 1)[0] == "0", out  # it received nothing at all
    assert "sk-never-sent" not in out


KNOCKER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(20)
sock.connect(sys.argv[1])
try:
    sock.sendall(sys.argv[2].encode() + b"\\n")
except OSError:
    pass
data = b""
try:
    while chunk := sock.recv(65536):
        data += chunk
except OSError:
    pass
print(data.decode(), end="")
"""


def test_server_drops_a_client_of_another_user(main: Server) -> None:
    """A second user who reaches the socket gets no run: the server checks who connects."""
    # nobody cannot enter the server's 0700 directory; a hard link to its socket (the same
    # inode, so the same listening socket) in a directory nobody can enter lets it knock
    door = Path(tempfile.mkdtemp(prefix="cbfsd-", dir="/tmp"))
    mode = main.socket.stat().st_mode
    try:
        door.chmod(0o755)
        os.link(main.socket, door / "s.sock")
        os.chmod(door / "s.sock", 0o777)
        request = json.dumps(main.request("foreign.log"))
        knocker = as_nobody("-c", KNOCKER, str(door / "s.sock"), request)
        out, _ = knocker.communicate(timeout=60)
    finally:
        os.chmod(main.socket, mode & 0o7777)
        shutil.rmtree(door)
    replies = [json.loads(line) for line in out.splitlines()]
    assert knocker.returncode == 0
    assert all("pid" not in r for r in replies), replies
    assert replies == [{"error": f"this fork server serves uid {os.geteuid()} only"}]
    assert not (main.root / "_attempts" / "foreign.log").exists()
    main.assert_serves()


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "payload",
    [
        b"not json\n",
        b"\xff\xfe\n",
        b"[1, 2]\n",
        b"[" * 100_000 + b"\n",
        b'{"fingerprint": 1, "argv": ["run"], "env": {}, "log_path": "x"}\n',
        b'{"fingerprint": "f", "argv": "run", "env": {}, "log_path": "x"}\n',
        b'{"fingerprint": "f", "argv": ["run"], "env": {"A": 1}, "log_path": "x"}\n',
        b'{"fingerprint": "f", "argv": ["run"], "env": [], "log_path": "x"}\n',
        b'{"fingerprint": "f", "argv": ["run"], "env": {}}\n',
        b'{"fingerprint": "f", "argv": ["run"], "env": {}, "log_path": "x", "more": 1}\n',
        b'{"op": "shutdown"}\n',
    ],
)
def test_malformed_request_is_answered_and_dropped(main: Server, payload: bytes) -> None:
    replies = exchange(main.socket, payload)
    assert len(replies) == 1 and "error" in replies[0] and "pid" not in replies[0], replies
    assert replies[0]["error"] not in ("stale", "retiring")  # nor does it retire the server
    main.assert_serves()


def test_clients_that_vanish_or_flood_do_not_hurt_the_server(main: Server) -> None:
    Conn(main.socket).close()  # connects, sends nothing
    half = Conn(main.socket)
    half.send(b'{"fingerprint": "')
    half.close()  # half a request, then gone
    flood = Conn(main.socket)
    flood.send(b"x" * (3 << 20))  # over the 1 MiB cap, no newline: refused, not buffered
    replies = flood.replies()
    flood.close()
    assert replies in ([], [{"error": "the request is longer than 1048576 bytes"}]), replies
    gone = Conn(main.socket)  # a valid run, and the client leaves before the {"pid"} reply
    gone.send(main.request("gone.log"))
    gone.close()
    main.assert_serves()


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--log-dir", "{root}"],
        ["prepare", "--log-dir", "{root}"],
        ["--log-dir", "{root}", "run"],
        ["run", "--help"],
        ["run", "--log-dir", "{other}", "--help"],
        ["run", "--log-dir", "{root}", "--log-dir", "{other}"],
        ["run", "--log-dir={root}"],
        ["run", "--log-dir", "{root}", "--log", "{other}"],
        ["eval", "--log-d", "{root}"],
        ["run", "--log-dir"],
    ],
)
def test_argv_must_be_run_or_eval_with_the_servers_logs_root(main: Server, argv, tmp_path):
    argv = [a.format(root=main.root, other=tmp_path) for a in argv]
    replies = exchange(main.socket, main.request("argv.log", argv))
    assert len(replies) == 1 and "error" in replies[0], replies
    assert replies[0]["error"] not in ("stale", "retiring")
    assert not (main.root / "_attempts" / "argv.log").exists()
    main.assert_serves()


def test_log_path_is_confined_and_never_followed(main: Server, tmp_path) -> None:
    attempts = main.root / "_attempts"
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    outside = tmp_path / "outside"
    outside.mkdir()
    (attempts / "link.log").symlink_to(precious)
    (attempts / "linkdir").symlink_to(outside)
    os.mkfifo(attempts / "fifo.log")
    os.link(precious, attempts / "hard.log")
    cases = {
        attempts / "link.log": "symbolic link",
        attempts / "linkdir" / "x.log": "symbolic link",
        attempts / "fifo.log": "cannot open log_path",  # O_NONBLOCK: ENXIO, not a hang
        attempts / "hard.log": "single link",
        main.root / "top.log": "must lie under",
        Path(f"{attempts}/../escape.log"): "must lie under",
        tmp_path / "elsewhere.log": "must lie under",
        attempts: "must lie under",
    }
    for log_path, why in cases.items():
        request = {**main.request(), "log_path": str(log_path)}
        replies = exchange(main.socket, request)
        assert len(replies) == 1 and why in replies[0].get("error", ""), (log_path, replies)
    assert precious.read_text() == "keep me"
    assert list(outside.iterdir()) == []
    assert not (main.root / "top.log").exists() and not (main.root / "escape.log").exists()
    assert not (tmp_path / "elsewhere.log").exists()
    main.assert_serves()


# ---------------------------------------------------------------- children


def test_exit_reply_tells_a_crash_from_an_exit(main: Server, slow_pair) -> None:
    bad_flag = ["run", "--log-dir", str(main.root), "--no-such-flag"]
    failed = exchange(main.socket, main.request("bad.log", bad_flag))
    assert failed[1] == {"exit_code": 2, "signal": None}  # argparse's usage error
    conn = Conn(main.socket)
    conn.send(slow_request(main, slow_pair, 60, "killed.log"))
    pid = conn.line()["pid"]
    os.kill(pid, signal.SIGTERM)
    assert conn.line() == {"exit_code": -15, "signal": "SIGTERM"}
    conn.close()
    # and through the client: the run's result names the signal
    request = slow_request(main, slow_pair, 60, "killed2.log")
    results = []

    def client() -> None:
        log_path = Path(request["log_path"])
        results.append(
            run_via_forkserver(main.socket, request["argv"], request["env"], log_path, 60)
        )

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 30
    while not children_of(main.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    [child] = children_of(main.proc.pid)
    os.kill(child, signal.SIGKILL)
    thread.join(30)
    [result] = results
    assert (result.exit_code, result.killed_by, result.timed_out) == (-9, "SIGKILL", False)


def test_children_die_with_a_killed_server(servers, slow_pair) -> None:
    """SIGKILL leaves the server no say: its children go through PR_SET_PDEATHSIG, and a
    client waiting on a run learns that its outcome is lost."""
    server = servers["kill9"].wait_ready()
    conn = Conn(server.socket)
    conn.send(slow_request(server, slow_pair, 60, "orphan.log"))
    pid = conn.line()["pid"]
    errors: list[Exception] = []

    def waiting_client() -> None:
        request = slow_request(server, slow_pair, 60, "lost.log")
        try:
            run_via_forkserver(
                server.socket, request["argv"], request["env"], Path(request["log_path"]), 60
            )
        except LaunchError as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiting_client)
    thread.start()
    deadline = time.monotonic() + 30
    while len(children_of(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    children = children_of(server.proc.pid)
    assert pid in children and len(children) == 2
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    assert all(dead(child) for child in children)
    assert conn.line() is None  # no exit reply: the connection just closed
    thread.join(30)
    assert len(errors) == 1 and "outcome is unknown" in str(errors[0]), errors


def test_sigterm_kills_the_children_then_the_server_exits(servers, slow_pair) -> None:
    server = servers["term"].wait_ready()
    conn = Conn(server.socket)
    conn.send(slow_request(server, slow_pair, 60, "term.log"))
    pid = conn.line()["pid"]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert dead(pid, timeout=0)  # already gone when the server exits
    assert conn.line() is None
    assert not server.socket.exists()


# ---------------------------------------------------------------- retiring


def test_stop_server_retires_it_once_its_children_are_done(servers, slow_pair) -> None:
    server = servers["retire"].wait_ready()
    conn = Conn(server.socket)
    conn.send(slow_request(server, slow_pair, 2, "last.log"))
    assert "pid" in conn.line()
    assert stop_server(server.socket) is True
    assert not server.socket.exists()  # gone at once: the next client starts a new server
    assert server.proc.poll() is None  # but the running child is seen through
    assert conn.line() == {"exit_code": 0, "signal": None}
    assert server.proc.wait(timeout=30) == 0
    assert stop_server(server.socket) is False


def test_a_request_for_another_logs_root_hands_over_to_a_new_server(servers, tmp_path):
    """A shared socket (CB_FORKSERVER_SOCKET) serves one logs root at a time: asked for
    another, the server retires and a server for that root, forked from it (no second
    import), takes the socket."""
    server = servers["handover"].wait_ready()
    other = tmp_path / "other-logs"
    request = {
        **server.request(argv=["run", "--log-dir", str(other), "--help"]),
        "log_path": str(other / "_attempts" / "x.log"),
    }
    (other / "_attempts").mkdir(parents=True)
    [reply] = exchange(server.socket, request)
    assert reply["error"] == "stale" and str(server.root) in reply["reason"]
    assert server.proc.wait(timeout=30) == 0
    with socket.socket(socket.AF_UNIX) as probe:
        probe.connect(str(server.socket))  # the successor already listens
        successor, _, _ = peer_credentials(probe)
    assert successor != server.proc.pid
    started = time.monotonic()
    result = run_via_forkserver(
        server.socket, request["argv"], request["env"], Path(request["log_path"]), 60
    )
    assert result.exit_code == 0 and time.monotonic() - started < 5
    assert "usage" in (other / "_attempts" / "x.log").read_text()
    assert stop_server(server.socket) is True
    assert dead(successor) and not server.socket.exists()
