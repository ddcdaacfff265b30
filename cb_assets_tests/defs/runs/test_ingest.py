"""The bulk loader: the same rows as `result_rows`, whether it parses in this process or
streams chunks of the walk to worker processes; bad files are problems, not rows."""

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cb_assets.defs.runs import ingest
from cb_assets.defs.runs.results import result_rows, rows_to_frame
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.synthetic import agent_block, write_result

PAIRS = [Pair(f"repo{i % 3}_task", 100 + i // 3, 1 + i % 4, 10 + i) for i in range(9)]
ARMS = [Arm("exp", "solo"), Arm("exp", "coop-comm"), Arm("exp", "coop-nocomm", 2)]


def write_tree(logs: Path) -> list[dict]:
    """Every pair in every arm; the rows result_rows makes of them."""
    rows = []
    for n, arm in enumerate(ARMS):
        upstream = "solo" if arm.setting == "solo" else "coop"
        for i, pair in enumerate(PAIRS):
            agents = [agent_block(cost=0.1 * (i + n))] * (1 if upstream == "solo" else 2)
            messages = i % 3 if arm.setting == "coop-comm" else 0
            d = write_result(logs, arm.run_name, pair, upstream, agents=agents, messages=messages)
            rows += result_rows(d, pair, arm, ran=False, logs_root=logs)
    return rows


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows as plain values (None for every kind of missing), in key order."""
    plain = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return sorted(plain, key=lambda r: (r["arm"], r["pair"], r["agent_id"]))


def table(db: Path) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute("select * from run_results").fetchdf()


@pytest.mark.parametrize("parallel", [False, True])
def test_ingest_tree_stores_what_result_rows_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    if parallel:  # worker processes, several chunks each, as with thousands of files
        monkeypatch.setattr(ingest, "PARALLEL_ABOVE", 4)
        monkeypatch.setattr(ingest, "CHUNK", 5)
        monkeypatch.setattr(ingest.os, "cpu_count", lambda: 2)
    logs, db = tmp_path / "logs", tmp_path / "db.duckdb"
    rows = write_tree(logs)
    bad = logs / ARMS[0].run_name / "solo" / "repo0_task" / "100" / "f9_f99"
    bad.mkdir(parents=True)
    (bad / "result.json").write_text('{"truncated": ')

    written, problems = ingest.ingest_tree(logs, ["exp"], db)

    assert written == len(rows)
    assert len(problems) == 1 and str(bad / "result.json") in problems[0]
    stored = table(db)
    assert list(stored.columns) == list(rows_to_frame(rows).columns)
    assert records(stored) == records(rows_to_frame(rows))

    # a second load of the same tree replaces those pair-runs' rows: nothing doubles
    assert ingest.ingest_tree(logs, ["exp"], db)[0] == len(rows)
    assert len(table(db)) == len(rows)
