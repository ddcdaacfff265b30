"""The DuckDB file as a resource: every asset opens it through `duckdb_access.connect`."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from cb_assets import config
from cb_assets.defs.storage import duckdb_access, schema
from cb_assets.defs.storage.io_manager import PlatformDuckDBIOManager


class PlatformDuckDB(dg.ConfigurableResource):
    """The platform's DuckDB file. Connections wait for the sidecar lock that serializes
    every process's open-to-close, so no committed write is lost (see duckdb_access)."""

    database: str

    @property
    def path(self) -> Path:
        return Path(self.database)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        for line in schema.ensure_current(self.path):  # a file an earlier release wrote
            if context.log is not None:
                context.log.info(f"upgraded {self.path}: {line}")

    @contextmanager
    def get_connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with duckdb_access.connect(self.path, read_only=read_only) as conn:
            yield conn


@dg.definitions
def storage() -> dg.Definitions:
    database = str(config.duckdb_path())
    return dg.Definitions(
        resources={
            "io_manager": PlatformDuckDBIOManager(database=database, schema=config.DUCKDB_SCHEMA),
            "duckdb": PlatformDuckDB(database=database),
        }
    )
