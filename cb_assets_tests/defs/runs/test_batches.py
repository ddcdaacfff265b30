import dagster as dg
import pytest

from cb_assets.cli.launch import range_tags
from cb_assets.defs.runs.batches import BatchQueue, segments
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.shared.partition_keys import partition_key

PAIRS = [f"repo_task-{i}-f1_f2" for i in range(10)]
SOLO, COMM, NOCOMM, SOLO_R2 = "x/solo", "x/coop-comm", "x/coop-nocomm", "x/solo/r2"
ARMS = [SOLO, SOLO_R2, COMM, NOCOMM]


def drain(queue: BatchQueue) -> list[list[str]]:
    batches = []
    while (batch := queue.next()) is not None:
        batches.append(batch)
    return batches


def test_partition_key_is_dagsters() -> None:
    assert partition_key(SOLO, "p") == str(dg.MultiPartitionKey({"pair": "p", "arm": SOLO}))


def test_segments_split_at_arms_and_at_gaps_in_the_pair_order() -> None:
    wanted = [partition_key(SOLO, p) for p in PAIRS[:4] + PAIRS[6:]]
    wanted += [partition_key(COMM, PAIRS[0]), partition_key(SOLO, "unknown")]
    wanted += [partition_key(SOLO_R2, p) for p in PAIRS[2:5]]
    assert segments(wanted, PAIRS, ARMS) == [
        [partition_key(SOLO, p) for p in PAIRS[:4]],
        [partition_key(SOLO, p) for p in PAIRS[6:]],
        [partition_key(SOLO_R2, p) for p in PAIRS[2:5]],
        [partition_key(COMM, PAIRS[0])],
    ]


def test_every_batch_is_exactly_the_range_dagster_resolves_from_its_ends() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("pairs", PAIRS)
    instance.add_dynamic_partitions("arms", ARMS)
    wanted = [partition_key(a, p) for p in PAIRS[1:9] for a in (SOLO, SOLO_R2, NOCOMM)]
    for batch in drain(BatchQueue(segments(wanted, PAIRS, ARMS), workers=3, cap=4)):
        tags = range_tags(batch[0], batch[-1])
        resolved = run_partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(*tags.values()), dynamic_partitions_store=instance
        )
        assert [str(k) for k in resolved] == batch


def test_guided_batches_shrink_cover_everything_once_and_respect_the_cap() -> None:
    keys = [partition_key(SOLO, f"p{i:03}") for i in range(100)]
    batches = drain(BatchQueue([keys], workers=4, cap=10))
    assert [k for b in batches for k in b] == keys
    sizes = [len(b) for b in batches]
    assert max(sizes) == 10 and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert len(batches) < 30  # far fewer Dagster runs than partitions


def test_bad_queue_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchQueue([], workers=0)


def makespan(queue: BatchQueue, seconds: dict[str, float], workers: int, run_cost: float) -> float:
    """When the last of `workers` free slots, each taking the next batch, finishes."""
    free = [0.0] * workers
    while (batch := queue.next()) is not None:
        slot = free.index(min(free))
        free[slot] += run_cost + sum(seconds[k] for k in batch)
    return max(free)


def test_a_long_pair_last_in_file_order_goes_first_and_alone() -> None:
    keys = [partition_key(NOCOMM, f"p{i:03}") for i in range(20)]
    seconds = {k: 1.0 for k in keys} | {keys[-1]: 20.0}
    bound = max(sum(seconds.values()) / 4, max(seconds.values()))
    timed = BatchQueue([keys], workers=4, expected=seconds)
    first = timed.next()
    assert first == [keys[-1]]
    assert timed.expected_seconds(first) == pytest.approx(20.15)
    by_count = makespan(BatchQueue([keys], workers=4), seconds, 4, run_cost=0.5)
    by_time = makespan(BatchQueue([keys], workers=4, expected=seconds), seconds, 4, 0.5)
    assert by_time <= 1.1 * bound < by_count


def test_heavy_tailed_durations_finish_near_the_bound() -> None:
    import random

    rng = random.Random(15)
    keys = [partition_key(NOCOMM, f"p{i:03}") for i in range(50)]
    seconds = {k: rng.lognormvariate(0.8, 0.7) for k in keys}
    bound = max(sum(seconds.values()) / 4, max(seconds.values()))
    timed = drain(BatchQueue([keys], workers=4, expected=seconds))
    assert sorted(k for b in timed for k in b) == keys  # each exactly once
    assert all(b == keys[keys.index(b[0]) : keys.index(b[0]) + len(b)] for b in timed)
    assert makespan(BatchQueue([keys], workers=4, expected=seconds), seconds, 4, 0.5) <= (
        1.1 * bound
    )
    assert len(timed) < len(keys)  # short pairs still share runs


def test_timed_batches_are_dagster_ranges_and_short_pairs_keep_their_order() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("pairs", PAIRS)
    instance.add_dynamic_partitions("arms", ARMS)
    wanted = [partition_key(a, p) for p in PAIRS for a in (SOLO, NOCOMM)]
    seconds = {k: 0.1 for k in wanted} | {partition_key(NOCOMM, PAIRS[5]): 30.0}
    batches = drain(BatchQueue(segments(wanted, PAIRS, ARMS), workers=2, expected=seconds))
    assert batches[0] == [partition_key(NOCOMM, PAIRS[5])]
    for batch in batches:
        tags = range_tags(batch[0], batch[-1])
        resolved = run_partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(*tags.values()), dynamic_partitions_store=instance
        )
        assert [str(k) for k in resolved] == batch
    rest = [k for b in batches[1:] for k in b]
    in_order = [k for segment in segments(wanted, PAIRS, ARMS) for k in segment]
    assert rest == [k for k in in_order if k not in batches[0]]  # SOLO's pairs, then NOCOMM's


def test_pair_runs_of_a_real_model_go_one_per_run_longest_first() -> None:
    keys = [partition_key(NOCOMM, f"p{i:03}") for i in range(12)]
    seconds = {k: 60.0 + i for i, k in enumerate(keys)}  # minutes each, like a real model
    batches = drain(BatchQueue([keys], workers=4, expected=seconds))
    assert batches == [[k] for k in reversed(keys)]
