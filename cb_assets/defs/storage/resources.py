import dagster as dg
from dagster_duckdb import DuckDBResource

from cb_assets import config
from cb_assets.defs.storage.io_manager import PlatformDuckDBIOManager


@dg.definitions
def storage() -> dg.Definitions:
    database = str(config.duckdb_path())
    return dg.Definitions(
        resources={
            "io_manager": PlatformDuckDBIOManager(database=database, schema=config.DUCKDB_SCHEMA),
            "duckdb": DuckDBResource(database=database),
        }
    )
