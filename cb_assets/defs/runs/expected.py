"""How long a pair-run is expected to take, from what the platform has recorded.

Real agents' durations are heavy-tailed (the slowest pair of a real run takes 3–5× the
mean), so the order pair-runs start in decides the makespan: the longest expected go
first, and no worker is left holding a long pair at the end while the others idle. The
expectation for a partition is, first found:

1. the median recorded duration of the same pair (any setting, repeat or experiment),
2. the median of its task's recorded pair-runs,
3. the median of the recorded pair-runs of the subset's pairs,
4. unknown (nothing is recorded: the dispatcher falls back to counting partitions).

Pure: the history comes in as rows, so the scheduling is testable without a database.
"""

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cb_assets.defs.storage import duckdb_access
from cb_assets.shared.dataset import PairKeyError, parse_pair_key
from cb_assets.shared.partition_keys import SEPARATOR

SOURCES = ("pair", "task", "subset")


@dataclass(frozen=True)
class Expectation:
    """Expected seconds per partition key (only the known ones), and where each came from."""

    seconds: dict[str, float] = field(default_factory=dict)
    sources: Counter = field(default_factory=Counter)

    def summary(self, total: int) -> str:
        parts = [
            f"{self.sources[s]} from the same pair"
            if s == "pair"
            else f"{self.sources[s]} from the {s}'s median"
            for s in SOURCES
            if self.sources[s]
        ]
        unknown = total - len(self.seconds)
        if unknown:
            parts.append(f"{unknown} unknown")
        return ", ".join(parts) or "none"


def _task_of(pair: str) -> str | None:
    try:
        parsed = parse_pair_key(pair)
    except PairKeyError:
        return None
    return f"{parsed.repo}-{parsed.task_id}"


def expected_seconds(
    history: Iterable[tuple[str, float]],
    keys: Sequence[str],
    subset_pairs: Iterable[str] = (),
) -> Expectation:
    """Expected duration of each partition key (`<arm>|<pair>`) from `history`, one
    (pair key, duration in seconds) per recorded pair-run; non-positive durations (a pair-run
    that never started) say nothing and are left out. The subset is `subset_pairs` plus the
    keys' own pairs."""
    by_pair: dict[str, list[float]] = defaultdict(list)
    for pair, seconds in history:
        if seconds is not None and seconds > 0:
            by_pair[pair].append(float(seconds))
    pair_median = {pair: statistics.median(values) for pair, values in by_pair.items()}
    by_task: dict[str, list[float]] = defaultdict(list)
    for pair, values in by_pair.items():
        task = _task_of(pair)
        if task is not None:
            by_task[task].extend(values)
    task_median = {task: statistics.median(values) for task, values in by_task.items()}
    in_subset = set(subset_pairs) | {key.rpartition(SEPARATOR)[2] for key in keys}
    subset = [v for pair in in_subset for v in by_pair.get(pair, ())]
    subset_median = statistics.median(subset) if subset else None

    seconds: dict[str, float] = {}
    sources: Counter = Counter()
    for key in keys:
        pair = key.rpartition(SEPARATOR)[2]
        if pair in pair_median:
            seconds[key], source = pair_median[pair], "pair"
        elif (task := _task_of(pair)) in task_median:
            seconds[key], source = task_median[task], "task"
        elif subset_median is not None:
            seconds[key], source = subset_median, "subset"
        else:
            continue
        sources[source] += 1
    return Expectation(seconds, sources)


def recorded_durations(db_path: Path) -> list[tuple[str, float]]:
    """(pair, duration) of every pair-run `run_results` holds (one per arm and pair), from
    the platform's DuckDB file; none when the file or the table does not exist yet."""
    if not Path(db_path).exists():
        return []
    with duckdb_access.connect(Path(db_path), read_only=True) as conn:
        if not duckdb_access.table_exists(conn, "run_results"):
            return []
        return conn.execute(
            "select pair, max(duration_seconds) from run_results group by arm, pair"
        ).fetchall()
