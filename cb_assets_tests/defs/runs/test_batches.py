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
