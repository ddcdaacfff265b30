import dagster as dg
import pytest

from cb_assets.cli.launch import range_tags
from cb_assets.defs.runs.batches import BatchQueue, segments
from cb_assets.defs.runs.partitions import run_partitions
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES

PAIRS = [f"repo_task-{i}-f1_f2" for i in range(10)]


def drain(queue: BatchQueue) -> list[list[str]]:
    batches = []
    while (batch := queue.next()) is not None:
        batches.append(batch)
    return batches


def test_partition_key_is_dagsters() -> None:
    assert partition_key("p", "solo") == str(dg.MultiPartitionKey({"pair": "p", "setting": "solo"}))


def test_segments_split_at_settings_and_at_gaps_in_the_pair_order() -> None:
    wanted = [partition_key(p, "solo") for p in PAIRS[:4] + PAIRS[6:]]
    wanted += [partition_key(PAIRS[0], "coop-comm"), partition_key("unknown", "solo")]
    assert segments(wanted, PAIRS, SETTING_NAMES) == [
        [partition_key(p, "solo") for p in PAIRS[:4]],
        [partition_key(p, "solo") for p in PAIRS[6:]],
        [partition_key(PAIRS[0], "coop-comm")],
    ]


def test_every_batch_is_exactly_the_range_dagster_resolves_from_its_ends() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("pairs", PAIRS)
    wanted = [partition_key(p, s) for p in PAIRS[1:9] for s in ("solo", "coop-nocomm")]
    for batch in drain(BatchQueue(segments(wanted, PAIRS, SETTING_NAMES), workers=3, cap=4)):
        tags = range_tags(batch[0], batch[-1])
        resolved = run_partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(*tags.values()), dynamic_partitions_store=instance
        )
        assert [str(k) for k in resolved] == batch


def test_guided_batches_shrink_cover_everything_once_and_respect_the_cap() -> None:
    keys = [partition_key(f"p{i:03}", "solo") for i in range(100)]
    batches = drain(BatchQueue([keys], workers=4, cap=10))
    assert [k for b in batches for k in b] == keys
    sizes = [len(b) for b in batches]
    assert max(sizes) == 10 and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert len(batches) < 30  # far fewer Dagster runs than partitions


def test_bad_queue_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BatchQueue([], workers=0)
