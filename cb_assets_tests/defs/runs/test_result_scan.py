import json
import os
import time
from pathlib import Path

from cb_assets.defs.runs.attempts import mark
from cb_assets.defs.runs.result_scan import INCOMPLETE_GRACE_SECONDS, Cursor, scan
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.synthetic import write_result

PAIRS = [Pair("dspy_task", 8394, 1, i) for i in range(2, 8)]


def later(seconds: float = 5) -> float:
    return time.time() + seconds


def write(logs: Path, pair: Pair, setting: str, mtime: float, repeat: int = 1) -> Path:
    """Files are found by change time (ctime), which is now: scans look from LATER."""
    upstream = "solo" if setting == "solo" else "coop"
    d = write_result(logs, Arm("exp", setting, repeat).run_name, pair, upstream)
    os.utime(d / "result.json", (mtime, mtime))
    return d / "result.json"


def test_scan_finds_new_files_once_in_order(tmp_path: Path) -> None:
    t0 = time.time() - 100
    for i, p in enumerate(PAIRS[:3]):
        write(tmp_path, p, "coop-nocomm", t0 + i)
    write(tmp_path, PAIRS[0], "solo", t0 + 5)
    write(tmp_path, PAIRS[1], "solo", t0 + 6, repeat=2)
    write_result(tmp_path, "other-solo", PAIRS[1], "solo")  # not ours
    write_result(tmp_path, "nano_msg_2", PAIRS[1], "solo")  # no name of ours at all

    found, cursor, deferred, _ = scan(
        tmp_path, {"exp"}, Cursor(), limit=10, settle_seconds=2, now=later()
    )
    assert [(f.pair_key, f.arm) for f in found] == [
        (PAIRS[0].key, Arm("exp", "coop-nocomm")),
        (PAIRS[1].key, Arm("exp", "coop-nocomm")),
        (PAIRS[2].key, Arm("exp", "coop-nocomm")),
        (PAIRS[0].key, Arm("exp", "solo")),
        (PAIRS[1].key, Arm("exp", "solo", 2)),
    ]
    assert deferred == 0
    again, cursor2, _, _ = scan(
        tmp_path, {"exp"}, Cursor.loads(cursor.dumps()), limit=10, settle_seconds=2, now=later()
    )
    assert again == [] and cursor2 == cursor

    write(tmp_path, PAIRS[3], "coop-comm", t0 + 50)
    newer, _, _, _ = scan(tmp_path, {"exp"}, cursor, limit=10, settle_seconds=2, now=later())
    assert [f.pair_key for f in newer] == [PAIRS[3].key]


def test_scan_caps_each_tick_and_carries_on(tmp_path: Path) -> None:
    t0 = time.time() - 100
    for i, p in enumerate(PAIRS):
        write(tmp_path, p, "solo", t0 + i)
    cursor, seen = Cursor(), []
    for _ in range(3):
        found, cursor, deferred, _ = scan(
            tmp_path, {"exp"}, cursor, limit=2, settle_seconds=2, now=later()
        )
        seen += [f.pair_key for f in found]
    assert seen == [p.key for p in PAIRS] and deferred == 0


def test_scan_waits_for_files_being_written(tmp_path: Path) -> None:
    path = write(tmp_path, PAIRS[0], "solo", time.time() - 10)
    path.write_text(path.read_text()[:40])  # half-written
    os.utime(path, (time.time() - 10, time.time() - 10))
    found, cursor, deferred, _ = scan(
        tmp_path, {"exp"}, Cursor(), limit=10, settle_seconds=2, now=later()
    )
    assert found == [] and deferred == 1 and cursor == Cursor()
    fresh = write(tmp_path, PAIRS[1], "solo", time.time())
    found, _, deferred, _ = scan(
        tmp_path, {"exp"}, Cursor(), limit=10, settle_seconds=2, now=later()
    )
    assert found == [] and fresh.exists()
    # a file that stays broken is handed on after the grace period; its run names the problem
    after_grace = later(INCOMPLETE_GRACE_SECONDS + 5)
    found, _, _, _ = scan(tmp_path, {"exp"}, Cursor(), limit=10, settle_seconds=2, now=after_grace)
    assert [f.pair_key for f in found] == [PAIRS[0].key, PAIRS[1].key]


def test_scan_covers_every_experiment_it_is_given(tmp_path: Path) -> None:
    t0 = time.time() - 100
    write(tmp_path, PAIRS[0], "solo", t0)
    write_result(tmp_path, "other-coop-git", PAIRS[1], "coop")
    write_result(tmp_path, "third-solo", PAIRS[2], "solo")
    found, *_ = scan(tmp_path, {"exp", "other"}, Cursor(), limit=10, settle_seconds=2, now=later())
    assert sorted((f.arm.key, f.pair_key) for f in found) == [
        ("exp/solo", PAIRS[0].key),
        ("other/coop-git", PAIRS[1].key),
    ]


def test_scan_skips_files_the_platform_wrote_itself(tmp_path: Path) -> None:
    path = write(tmp_path, PAIRS[0], "solo", time.time() - 10)
    mark(path.parent, 1, "run-1")
    found, cursor, _, _ = scan(tmp_path, {"exp"}, Cursor(), limit=10, settle_seconds=2, now=later())
    assert found == [] and cursor.paths_at_changed == [str(path)]
    assert json.loads(cursor.dumps())["paths"] == [str(path)]


def test_a_cursor_of_mtimes_from_before_still_loads(tmp_path: Path) -> None:
    old = Cursor.loads(json.dumps({"mtime": 1700000000.5, "paths": ["/logs/x/result.json"]}))
    assert old == Cursor(1_700_000_000_500_000_000, [])
    assert Cursor.loads(old.dumps()) == old
