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
    `min_seconds` (what a run's own cost is worth amortizing) and at most `cap` partitions;
    a long pair therefore goes early and alone, short ones late and together. Without it
    every partition weighs the same and the batches are cut in the segments' order."""

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
        self._segments = [list(s) for s in segments if s]
        self._workers, self._cap = workers, cap
        self._timed = bool(expected)
        self._weight: dict[str, float] = {}
        for segment in self._segments:
            for key in segment:
                # a key with no expectation among known ones weighs their median
                self._weight[key] = (
                    PARTITION_COST_SECONDS + expected.get(key, _median(expected))
                    if expected
                    else 1.0
                )
        self._min = min_seconds if self._timed else 0.0
        self._max = MAX_BATCH_SECONDS if self._timed else float("inf")
        self._order = {key: i for i, key in enumerate(self._weight)}

    def remaining(self) -> int:
        return sum(len(s) for s in self._segments)

    def expected_seconds(self, batch: list[str]) -> float | None:
        """The batch's expected seconds of work, or None when nothing was expected."""
        return sum(self._weight[k] for k in batch) if self._timed else None

    def next(self) -> list[str] | None:
        if not self._segments:
            return None
        left = sum(self._weight[k] for s in self._segments for k in s)
        target = max(self._min, min(left / self._workers, self._max))
        # the longest remaining first; among equals, the earliest (count mode: in order)
        where, seed = max(
            ((i, j) for i, s in enumerate(self._segments) for j in range(len(s))),
            key=lambda ij: (
                self._weight[self._segments[ij[0]][ij[1]]],
                -self._order[self._segments[ij[0]][ij[1]]],
            ),
        )
        if self._weight[self._segments[where][seed]] < self._min / 2:
            # only short pairs are left: their order changes nothing, and cutting them in
            # order keeps the ranges whole (fewer runs)
            where, seed = 0, 0
        segment = self._segments[where]
        lo, hi = seed, seed + 1
        total = self._weight[segment[seed]]
        while total < target and hi - lo < self._cap:
            # the longer neighbour that fits in the target (counting: ceil(remaining/workers))
            sides = [(self._weight[segment[hi]], 1) if hi < len(segment) else None]
            sides.append((self._weight[segment[lo - 1]], 0) if lo > 0 else None)
            fitting = [
                side
                for side in sides
                if side is not None and (not self._timed or total + side[0] <= target)
            ]
            if not fitting:
                break
            weight, right = max(fitting)
            total += weight
            lo, hi = (lo, hi + 1) if right else (lo - 1, hi)
        batch = segment[lo:hi]
        self._segments[where : where + 1] = [s for s in (segment[:lo], segment[hi:]) if s]
        return batch


def _median(values: Mapping[str, float]) -> float:
    ordered = sorted(values.values())
    return ordered[len(ordered) // 2]
