"""Query the platform's DuckDB file while runs may be writing to it.

A read-only connection through `duckdb_access` (the platform's one way to open the
file) waits for the writer holding the lock, which is never long: writers hold it for
one partition's transaction. (A copy of the file taken while a writer holds it, which
this module once fell back to, is not a consistent database.)

`render` prints a result for a terminal: control characters stored in the data
(a NUL, an ANSI escape sequence from an agent's error text) are shown as visible
escapes, never sent to the terminal raw.
"""

import numbers
import re
from pathlib import Path

import pandas as pd

from cb_assets.defs.storage import duckdb_access

# C0 controls, DEL and C1 controls: Unicode category Cc.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def query(db_path: Path, sql: str, lock_wait_seconds: float = 120.0) -> pd.DataFrame:
    """The result of `sql`, read under the platform's shared lock."""
    if not db_path.exists():
        raise FileNotFoundError(f"no DuckDB file at {db_path}: run the main job first")
    with duckdb_access.connect(db_path, read_only=True, wait_seconds=lock_wait_seconds) as c:
        return c.execute(sql).fetchdf()


def _escape(char: str) -> str:
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every control character (C0, DEL, C1) but those in `keep` written as a
    visible escape: \\x1b, \\x00, \\x9b, \\n, \\t, \\r. Backslashes are left as they are."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)


def _cell(value: object, keep: str) -> object:
    if isinstance(value, str):
        return escape_controls(value, keep)
    if value is None or isinstance(value, numbers.Number | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value))
    try:
        if pd.isna(value):
            return value
    except (TypeError, ValueError):  # a list or an array: not one missing value
        pass
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return value
    return escape_controls(str(value), keep)  # lists, structs, maps, decimals, …


def render(frame: pd.DataFrame, *, csv: bool = False) -> str:
    """The text `cb-assets sql` prints: a markdown table, or CSV with a header.

    Every control character in a value or a column name is escaped (see escape_controls),
    so stored text cannot drive the terminal. In CSV, newlines and tabs inside a value are
    kept (the field is quoted, so the CSV reads back exactly); carriage returns and every
    other control character are escaped like in the table."""
    keep = "\n\t" if csv else ""
    shown = frame.copy()
    shown.columns = [escape_controls(str(c), keep) for c in frame.columns]
    for i, column in enumerate(frame.columns):
        values = frame[column]
        if not (
            pd.api.types.is_numeric_dtype(values.dtype)
            or pd.api.types.is_bool_dtype(values.dtype)
            or pd.api.types.is_datetime64_any_dtype(values.dtype)
            or pd.api.types.is_timedelta64_dtype(values.dtype)
        ):
            shown.isetitem(i, values.astype(object).map(lambda v: _cell(v, keep)))
    if csv:
        return shown.to_csv(index=False)
    return shown.to_markdown(index=False, floatfmt=".4g") if len(shown) else "(no rows)"
