"""DuckDB IO manager that works with our dynamic `pair` partition dimension.

Dagster 1.13's DbIOManager resolves a multi-partition key's dimensions without
an instance in scope, which fails for a dynamic dimension ("The instance is not
available to load partitions"). Wrapping each call in a partition loading
context bound to the run's instance fixes that without changing what is written.
"""

from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster_duckdb_pandas import DuckDBPandasIOManager


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
    """DuckDBPandasIOManager, usable with dynamic partitions of a multi-partition."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        # DuckDB creates the file but not its folder (e.g. a fresh CB_DATA_DIR).
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        return _InstanceScopedIOManager(super().create_io_manager(context))
