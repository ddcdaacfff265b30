"""A throwaway PostgreSQL cluster for the scale-out profile's instance storage and its tests.

`initdb` into a fresh folder, then `postgres` listening on a Unix socket only
(`listen_addresses=''`): nothing on the network can reach it, and a run container with
network `none` reaches it through a bind mount of the socket folder. PostgreSQL refuses to
run as root, so as root the cluster belongs to Debian's `postgres` user; the socket folder
is that user's, mode 0700, so only it and root (the host's or a run container's) connect,
which is why `trust` authentication is enough.
"""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cb_assets.bottle.services import Service, ServiceError

DATABASE = "dagster"
ROLE = "cb"
PORT = 5432  # names the socket file (.s.PGSQL.5432); nothing listens on TCP


@dataclass
class PostgresService(Service):
    socket_dir: Path | None = None

    def stop(self, timeout: float = 60) -> None:
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave
        # (a daemon's pool may never); SIGINT is "fast": clients are disconnected.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        super().stop(timeout)


def postgres_bindir() -> Path:
    """Where `initdb` and `postgres` are: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not versions:
        raise ServiceError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(versions[-1]).parent


def _owner() -> tuple[int, int] | None:
    """The (uid, gid) the cluster runs as when we are root: Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "running PostgreSQL as root needs the `postgres` user (apt-get install postgresql)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _as_owner(owner: tuple[int, int] | None) -> dict:
    return {} if owner is None else {"user": owner[0], "group": owner[1], "extra_groups": []}


def url_for(
    socket_dir: Path, database: str = DATABASE, role: str = ROLE, *, driver: str | None = "psycopg2"
) -> str:
    """The URL of a cluster reachable only through `socket_dir`. With `driver`, SQLAlchemy's
    form, which Dagster's storage wants: SQLAlchemy 2.1 reads a bare `postgresql://` as
    psycopg 3, which dagster-postgres does not install (it brings psycopg2). Without, libpq's."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{role}@/{database}?host={quote(str(socket_dir), safe='/')}"


def start_postgres(
    log_dir: Path, timeout: float = 60.0, *, durable: bool = True
) -> PostgresService:
    """A new cluster with database `dagster` for role `cb`, on a Unix socket only; its
    `address` is the SQLAlchemy URL (`url_for(socket_dir, driver=None)` is libpq's). Its
    folder (short, under /tmp: socket paths are capped at ~100 bytes) is removed by `stop`.
    `durable=False` turns fsync off, for throwaway tests."""
    bindir = postgres_bindir()
    owner = _owner()
    root = Path(tempfile.mkdtemp(prefix="cbpg-", dir="/tmp"))
    data, socket_dir = root / "data", root / "run"
    socket_dir.mkdir(mode=0o700)
    if owner is not None:
        for path in (root, socket_dir):
            os.chown(path, *owner)
    log = log_dir / "postgres.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
    with log.open("wb") as out:
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                *("-D", str(data), "-U", ROLE, "-A", "trust", "-E", "UTF8", "--no-sync"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            **_as_owner(owner),
        )
    if init.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        raise ServiceError(f"initdb exited with {init.returncode}; {log}:\n{tail}")
    settings = {
        "listen_addresses": "",
        "unix_socket_directories": str(socket_dir),
        "unix_socket_permissions": "0700",
        "port": str(PORT),
        "max_connections": "200",  # a daemon, a webserver and every run container's pool
        "fsync": "on" if durable else "off",
    }
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), *(f"-c{k}={v}" for k, v in settings.items())],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=root,
        env=env,
        **_as_owner(owner),
    )
    service = PostgresService(
        "postgres", url_for(socket_dir, "postgres", driver=None), proc, log, [root], socket_dir
    )
    _wait_ready(service, timeout)
    _create_database(service)
    service.address = url_for(socket_dir)
    return service


def _connect(url: str):
    import psycopg2

    return psycopg2.connect(url, connect_timeout=5)


def _wait_ready(service: PostgresService, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            _connect(service.address).close()
            return
        except psycopg2.OperationalError:
            if service.proc.poll() is not None or time.monotonic() > deadline:
                service.stop(timeout=10)
                tail = service.log.read_text(errors="replace")[-2000:]
                raise ServiceError(f"postgres did not come up; {service.log}:\n{tail}") from None
            time.sleep(0.1)


def _create_database(service: PostgresService) -> None:
    conn = _connect(service.address)
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        conn.close()
