"""The key of a run_results partition: `<pair>|<setting>`, as Dagster spells a pair x
setting MultiPartitionKey (its dimension names sort: pair, then setting). Spelled here only.
"""

SEPARATOR = "|"


def partition_key[T](pair: T, setting: T) -> T:
    """The partition key of `pair` in `setting`; element-wise for columns (T: a str, or a
    column of them)."""
    return pair + SEPARATOR + setting  # type: ignore[operator]


def split_partition_key(key: str) -> tuple[str, str]:
    """(pair, setting) of a partition key."""
    pair, sep, setting = key.rpartition(SEPARATOR)
    if not sep:
        raise ValueError(f"{key!r} is not a `<pair>|<setting>` partition key")
    return pair, setting
