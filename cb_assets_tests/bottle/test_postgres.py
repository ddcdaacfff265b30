"""The throwaway PostgreSQL: a real cluster on a Unix socket only, owned by a non-root user,
gone after `stop`."""

import os
import pwd
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy

from cb_assets.bottle import postgres
from cb_assets.bottle.services import ServiceError
from cb_assets_tests.support.services import require


@pytest.fixture
def cluster(tmp_path: Path):
    try:
        postgres.postgres_bindir()
    except ServiceError as exc:
        require(False, str(exc))
    service = postgres.start_postgres(tmp_path, durable=False)
    yield service
    service.stop(timeout=30)


def test_it_serves_a_database_on_a_unix_socket_only(cluster) -> None:
    assert cluster.address.startswith("postgresql+psycopg2://cb@/dagster?host=/tmp/")
    libpq = postgres.url_for(cluster.socket_dir, driver=None)
    with psycopg2.connect(libpq) as conn, conn.cursor() as cursor:
        query = "select current_database(), current_user, current_setting('listen_addresses')"
        cursor.execute(query)  # no TCP address: the socket folder is the only way in
        assert cursor.fetchone() == ("dagster", "cb", "")
    # SQLAlchemy, as Dagster's storage opens it
    with sqlalchemy.create_engine(cluster.address).connect() as conn:
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1


def test_it_runs_as_a_non_root_user_with_a_private_socket_folder(cluster) -> None:
    with open(f"/proc/{cluster.proc.pid}/status") as status:
        uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    assert uid != 0  # PostgreSQL refuses root
    if os.geteuid() == 0:
        assert pwd.getpwuid(uid).pw_name == "postgres"
    mode = cluster.socket_dir.stat().st_mode & 0o777
    assert mode == 0o700  # trust authentication: only its owner and root get in


def test_stop_removes_the_cluster(tmp_path: Path) -> None:
    try:
        postgres.postgres_bindir()
    except ServiceError as exc:
        require(False, str(exc))
    service = postgres.start_postgres(tmp_path, durable=False)
    root = service.socket_dir.parent
    with psycopg2.connect(postgres.url_for(service.socket_dir, driver=None)):
        service.stop(timeout=30)  # a client still connected: a fast shutdown, no waiting
    assert service.proc.returncode is not None
    assert not root.exists()
