"""A throwaway PostgreSQL for the scale-out profile's tests (the profile's storage)."""

from collections.abc import Iterator

import pytest

from cb_assets.bottle import postgres
from cb_assets.bottle.services import ServiceError
from cb_assets_tests.support.services import require


@pytest.fixture(scope="session")
def postgres_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[postgres.PostgresService]:
    try:
        postgres.postgres_bindir()
    except ServiceError as exc:
        require(False, str(exc))
    service = postgres.start_postgres(tmp_path_factory.mktemp("postgres"), durable=False)
    yield service
    service.stop(timeout=30)
