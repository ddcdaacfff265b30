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
the last ones small (no worker idles long while another finishes a big batch). The work is
counted in expected seconds when the platform has recorded durations (expected.py), and
the longest expected partition goes first: real agents' durations are heavy-tailed, and
a long pair started last keeps one worker busy while the others idle.
"""

import heapq
from collections.abc import Iterable, Mapping, Sequence

from cb_assets.shared.partition_keys import partition_key

# Up to 50 per run: through a daemon's queue every run costs a dequeue tick and a launch, and
# 50 instead of 25 took the daemon path from 54.7-57.0 s to 49.2-49.6 s (300 oracle
# partitions, bench.daemon_path); the command's own launches did not care (30.9 vs 31.0 s).
MAX_BATCH = 50
# A run's own cost (creating it, its planned events, a dequeue tick through a daemon) is
# 0.5-1 s; a batch of expected work shorter than this is not worth a run of its own.
MIN_BATCH_SECONDS = 2.0
# What the platform adds to each pair-run inside a run (claim, journal, DuckDB transaction,
# materialization event): measured 0.1-0.25 s per oracle partition on the 2-core machine.
PARTITION_COST_SECONDS = 0.15
# Beyond this much expected work a longer batch amortizes nothing more (a run costs under
# 1 s), it only commits work early on estimates that may be wrong: pair-runs of a real model
# (minutes each) therefore go one per run, in longest-first order.
MAX_BATCH_SECONDS = 30.0


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
    """Hands out batches from `segments`, each one range, longest expected first, sized by
    guided self-scheduling.

    With `expected` seconds per key (cb_assets.defs.runs.expected), a batch starts at the
    longest remaining partition and grows over its neighbours in the range (the longer one
    first) until it holds the remaining work divided by the number of workers, at least
    `min_seconds` (what a run's own cost is worth amortizing), at most MAX_BATCH_SECONDS
    unless one partition alone is longer, and at most `cap` partitions; a long pair
    therefore goes early and alone, short ones late and together. Without it every
    partition weighs the same and the batches are cut in the segments' order.

    The remaining keys are a linked list per range and a heap by weight, so handing out
    every batch of 6,000 partitions costs milliseconds, not a scan per batch."""

    def __init__(
        self,
        segments: list[list[str]],
        workers: int,
        cap: int = MAX_BATCH,
        expected: Mapping[str, float] | None = None,
        min_seconds: float = MIN_BATCH_SECONDS,
    ) -> None:
        if workers < 1 or cap < 1:
            raise ValueError(f"workers and cap must be at least 1, got {workers} and {cap}")
        self._workers, self._cap = workers, cap
        self._timed = bool(expected)
        self._min = min_seconds if self._timed else 0.0
        self._max = MAX_BATCH_SECONDS if self._timed else float("inf")
        fallback = _median(expected) if expected else 0.0  # unknown among known: their median
        self._order: list[str] = []
        self._before: dict[str, str | None] = {}
        self._after: dict[str, str | None] = {}
        for segment in segments:
            for i, key in enumerate(segment):
                self._order.append(key)
                self._before[key] = segment[i - 1] if i else None
                self._after[key] = segment[i + 1] if i + 1 < len(segment) else None
        self._weight = {
            key: PARTITION_COST_SECONDS + expected.get(key, fallback) if expected else 1.0
            for key in self._order
        }
        self._heap = [(-self._weight[key], i, key) for i, key in enumerate(self._order)]
        heapq.heapify(self._heap)
        self._taken: set[str] = set()
        self._cursor = 0  # the first key, in order, that may still be there
        self._left = sum(self._weight.values())

    def remaining(self) -> int:
        return len(self._order) - len(self._taken)

    def expected_seconds(self, batch: list[str]) -> float | None:
        """The batch's expected seconds of work, or None when nothing was expected."""
        return sum(self._weight[k] for k in batch) if self._timed else None

    def _longest(self) -> str:
        while self._heap[0][2] in self._taken:
            heapq.heappop(self._heap)
        return self._heap[0][2]

    def _first(self) -> str:
        while self._order[self._cursor] in self._taken:
            self._cursor += 1
        return self._order[self._cursor]

    def next(self) -> list[str] | None:
        if not self.remaining():
            return None
        target = max(self._min, min(self._left / self._workers, self._max))
        # the longest remaining first; among equals, the earliest (counting: in order)
        seed = self._longest()
        if self._weight[seed] < self._min / 2:
            # only short pairs are left: their order changes nothing, and cutting them in
            # order keeps the ranges whole (fewer runs)
            seed = self._first()
        lo = hi = seed
        total, size = self._weight[seed], 1
        while total < target and size < self._cap:
            # the longer neighbour that fits in the target (counting: ceil(remaining/workers))
            sides = [
                (self._weight[k], right, k)
                for right, k in ((1, self._after[hi]), (0, self._before[lo]))
                if k is not None
            ]
            fitting = [side for side in sides if not self._timed or total + side[0] <= target]
            if not fitting:
                break
            weight, right, key = max(fitting)
            total, size = total + weight, size + 1
            lo, hi = (lo, key) if right else (key, hi)
        batch = [lo]
        while batch[-1] != hi:
            batch.append(self._after[batch[-1]])  # type: ignore[arg-type]
        # the range leaves its segment: what was around it becomes two segments
        if (before := self._before[lo]) is not None:
            self._after[before] = None
        if (after := self._after[hi]) is not None:
            self._before[after] = None
        self._taken.update(batch)
        self._left -= total
        return batch


def _median(values: Mapping[str, float]) -> float:
    ordered = sorted(values.values())
    return ordered[len(ordered) // 2]
