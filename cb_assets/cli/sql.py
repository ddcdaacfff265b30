"""`cb-assets sql`: query the DuckDB file, safely while runs write."""

import argparse
import sys

from cb_assets import config


def sql(args: argparse.Namespace) -> int:
    import duckdb

    from cb_assets.defs.storage.duckdb_access import StorageLockTimeout
    from cb_assets.defs.storage.sql import escape_controls, query, render

    try:
        frame = query(config.duckdb_path(), args.query)
    except (FileNotFoundError, duckdb.Error, StorageLockTimeout) as exc:
        # DuckDB's messages quote values and span lines: escape all but the line breaks
        print(f"error: {escape_controls(str(exc), keep=chr(10))}", file=sys.stderr)
        return 2
    if args.csv:
        sys.stdout.write(render(frame, csv=True))
    else:
        print(render(frame))
        print(f"({len(frame)} rows from {config.duckdb_path()})", file=sys.stderr)
    return 0
