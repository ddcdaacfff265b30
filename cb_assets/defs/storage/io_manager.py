"""The DuckDB IO manager the platform writes every table with.

Four changes to dagster-duckdb-pandas, none changing what is written:
- Every connection is opened through `duckdb_access.connect`, under the sidecar lock
  that keeps DuckDB 2.0 from losing committed writes (see that module), and waits for
  the lock with an error that says "lock" if it waits too long.
- A partition's delete-then-insert runs in one transaction, so a run killed
  between the two leaves the old rows in place instead of none.
- Rows are inserted by column name, and columns a newer platform version adds are
  added to the existing table, so upgrading never strands a DuckDB file.
- Each call runs in a partition loading context bound to the run's instance:
  Dagster 1.13's DbIOManager resolves multi-partition keys without one, which
  fails for a dynamic dimension ("The instance is not available to load partitions").
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.storage.db_io_manager import DbIOManager, TableSlice
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler

from cb_assets.defs.storage import schema
from cb_assets.defs.storage.duckdb_access import connect, insert_by_name, table_exists, transaction


class AtomicDuckDbClient(DuckDbClient):
    @staticmethod
    @contextmanager
    def connect(context: Any, table_slice: TableSlice) -> Iterator[Any]:
        database = Path(context.resource_config["database"])
        with connect(database) as conn, transaction(conn):
            yield conn

    @staticmethod
    def delete_table_slice(context: dg.OutputContext, table_slice: TableSlice, connection) -> None:
        # Inside a transaction a failed statement aborts it, so look before deleting.
        if table_exists(connection, table_slice.table, table_slice.schema):
            DuckDbClient.delete_table_slice(context, table_slice, connection)
            connection.fetchall()  # finish the delete's result before the insert registers a frame


class EvolvingPandasTypeHandler(DuckDBPandasTypeHandler):
    def handle_output(
        self, context: dg.OutputContext, table_slice: TableSlice, obj: Any, connection
    ) -> None:
        if obj.empty or not table_exists(connection, table_slice.table, table_slice.schema):
            super().handle_output(context, table_slice, obj, connection)
            return
        insert_by_name(connection, table_slice.table, obj, table_slice.schema)
        context.add_output_metadata({"row_count": len(obj)})


class _InstanceScopedIOManager(dg.IOManager):
    def __init__(self, inner: dg.IOManager) -> None:
        self._inner = inner

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        with partition_loading_context(dynamic_partitions_store=context.step_context.instance):
            self._inner.handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        with partition_loading_context(dynamic_partitions_store=context.instance):
            return self._inner.load_input(context)


class PlatformDuckDBIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager with atomic partition writes and dynamic multi-partitions."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        # DuckDB creates the file but not its folder (e.g. a fresh CB_DATA_DIR).
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        schema.ensure_current(Path(self.database))  # a file an earlier release wrote
        inner = DbIOManager(
            db_client=AtomicDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=[EvolvingPandasTypeHandler()],
            default_load_type=self.default_load_type(),
            io_manager_name="PlatformDuckDBIOManager",
        )
        return _InstanceScopedIOManager(inner)
