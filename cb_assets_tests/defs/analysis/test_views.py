"""Which analysis views are created from the tables present."""

from pathlib import Path

import duckdb

from cb_assets.defs.analysis.assets import ALL_VIEWS, create_views
from cb_assets.defs.conversations.messages import CONVERSATION_VIEWS
from cb_assets.defs.evals.outcomes import rows_to_frame as eval_frame
from cb_assets.defs.runs.results import rows_to_frame
from cb_assets.defs.storage.resources import PlatformDuckDB


def test_a_view_over_a_view_not_created_is_left_out(tmp_path: Path) -> None:
    """Results and evaluations but no conversations (a tree loaded by the bulk loader): the
    conversation views are left out, pass_rate_by_early_plan too (it reads one of them),
    and the rest are created; no error."""
    db = tmp_path / "db.duckdb"
    runs, evals = rows_to_frame([]), eval_frame([])  # noqa: F841  (DuckDB reads them)
    with duckdb.connect(str(db)) as conn:
        conn.execute("create table run_results as select * from runs")
        conn.execute("create table eval_results as select * from evals")
    created = create_views(PlatformDuckDB(database=str(db)), {"run_results", "eval_results"})
    assert set(created) == set(ALL_VIEWS) - set(CONVERSATION_VIEWS)
