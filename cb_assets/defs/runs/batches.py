"""Batches of run_results partitions: several pair-runs in one Dagster run.

A Dagster run costs about half a CPU-second to create and start on the local SQLite
instance, longer than an oracle pair-run; a run per partition made the platform four
times slower than upstream's CLI. A run can instead carry a range of partitions, and a
range of an arm × pair partitioning is a rectangle: consecutive arms × consecutive
pairs (in the order the instance registered them). Batches here are one arm (experiment,
setting, repeat) and consecutive pairs, the same shape Dagster's own backfills cut
(`BackfillPolicy.multi_run`).

Batch sizes follow guided self-scheduling: each free worker takes the remaining work
divided by the number of workers, capped, so early batches are large (few runs) and
the last ones small (no worker idles long while another finishes a big batch).
"""

import math
from collections.abc import Iterable, Sequence

from cb_assets.shared.partition_keys import partition_key

# Up to 50 per run: through a daemon's queue every run costs a dequeue tick and a launch, and
# 50 instead of 25 took the daemon path from 54.7-57.0 s to 49.2-49.6 s (300 oracle
# partitions, bench.daemon_path); the command's own launches did not care (30.9 vs 31.0 s).
MAX_BATCH = 50


def segments(
    keys: Iterable[str], pair_order: Sequence[str], arms: Sequence[str]
) -> list[list[str]]:
    """The wanted `keys` as maximal ranges: one arm each (arm keys), pairs consecutive in
    `pair_order`. Keys of pairs the instance does not know are left out."""
    wanted = set(keys)
    found: list[list[str]] = []
    for arm in arms:
        current: list[str] = []
        for pair in pair_order:
            key = partition_key(arm, pair)
            if key in wanted:
                current.append(key)
            elif current:
                found.append(current)
                current = []
        if current:
            found.append(current)
    return found


class BatchQueue:
    """Hands out batches from `segments`, each one range, sized by guided self-scheduling."""

    def __init__(self, segments: list[list[str]], workers: int, cap: int = MAX_BATCH) -> None:
        if workers < 1 or cap < 1:
            raise ValueError(f"workers and cap must be at least 1, got {workers} and {cap}")
        self._segments = [list(s) for s in segments if s]
        self._workers, self._cap = workers, cap

    def remaining(self) -> int:
        return sum(len(s) for s in self._segments)

    def next(self) -> list[str] | None:
        if not self._segments:
            return None
        size = min(self._cap, max(1, math.ceil(self.remaining() / self._workers)))
        head = self._segments[0]
        batch, rest = head[:size], head[size:]
        if rest:
            self._segments[0] = rest
        else:
            self._segments.pop(0)
        return batch
