import re

import dagster as dg
import pandas as pd

from cb_assets.defs.analysis.compare import COMPARE_VIEWS, experiment_summary, leaderboard
from cb_assets.defs.analysis.deficit import ANALYSIS_VIEWS, deficits, pass_rates
from cb_assets.defs.conversations.messages import CONVERSATION_VIEWS
from cb_assets.defs.evals.assets import eval_results
from cb_assets.defs.reports import figures
from cb_assets.defs.reports.resources import ReportFiles
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_run_results, read_table

ON_NEW_DATA = dg.AutomationCondition.any_deps_updated().since_last_handled() & (
    ~dg.AutomationCondition.in_progress()
)


ALL_VIEWS = {**ANALYSIS_VIEWS, **COMPARE_VIEWS, **CONVERSATION_VIEWS}  # in creation order


def _reads(sql: str, name: str) -> bool:
    return re.search(rf"\b(from|join)\s+{name}\b", sql) is not None


def create_views(duckdb: PlatformDuckDB, tables: set[str]) -> list[str]:
    """(Re)create every analysis view whose tables exist, and whose views it reads were
    created (pass_rate_by_early_plan reads first_message_delay); the names created."""
    created: list[str] = []
    with duckdb.get_connection() as conn:
        for name, sql in ALL_VIEWS.items():
            needed = {t for t in ("eval_results", "conversations") if t in sql}
            views = {v for v in ALL_VIEWS if v != name and _reads(sql, v)}
            if needed <= tables and views <= set(created):
                conn.execute(f"create or replace view {name} as {sql}")
                created.append(name)
    return created


def _tables(duckdb: PlatformDuckDB) -> set[str]:
    with duckdb.get_connection() as conn:
        return {row[0] for row in conn.execute("select table_name from duckdb_tables()").fetchall()}


@dg.asset(
    deps=[eval_results, run_results],
    group_name="analysis",
    kinds={"duckdb"},
    automation_condition=ON_NEW_DATA,
)
def coordination_deficit(
    context: dg.AssetExecutionContext, duckdb: PlatformDuckDB, report_files: ReportFiles
) -> pd.DataFrame:
    """Solo pass rate minus coop pass rate on the same pairs, per experiment and coop
    setting: one row per repeat and one pooled over repeats (repeat NULL), each with a 95%
    bootstrap interval over pairs. Also (re)creates the analysis views in DuckDB."""
    evals = read_table(duckdb.path, "eval_results")
    if evals is None or evals.empty:
        raise dg.Failure(
            description="no eval_results yet: materialize eval_results first", allow_retries=False
        )
    create_views(duckdb, _tables(duckdb))
    rates = pass_rates(evals)
    figure = figures.pass_rate_by_experiment(
        experiment_summary(read_run_results(duckdb.path), evals),
        report_files.comparison / "pass_rate_by_experiment.png",
    )
    table = deficits(evals)
    context.add_output_metadata(
        {
            "deficits": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
            "pass_rates": dg.MetadataValue.md(rates.to_markdown(index=False, floatfmt=".3f")),
            "pass_rate_figure": dg.MetadataValue.md(figures.inline_markdown([figure])),
            "figure_file": dg.MetadataValue.path(str(figure)),
        }
    )
    return table


@dg.asset(
    deps=[run_results, eval_results],
    group_name="analysis",
    kinds={"duckdb"},
    automation_condition=ON_NEW_DATA,
)
def experiment_comparison(
    context: dg.AssetExecutionContext, duckdb: PlatformDuckDB, report_files: ReportFiles
) -> pd.DataFrame:
    """Experiments side by side, per experiment × setting: pair-runs, pass rate with a 95%
    interval (Wilson for one repeat; mean ± sd and a bootstrap over pairs across repeats),
    cost, cost per passing pair, messages per pair; a leaderboard and its figure. Also
    (re)creates the comparison and conversation views in DuckDB."""
    results = read_run_results(duckdb.path)
    if results.empty:
        context.add_output_metadata({"note": "no run_results yet: run or import an experiment"})
        return experiment_summary(results, None)
    evals = read_table(duckdb.path, "eval_results")
    views = create_views(duckdb, _tables(duckdb))
    summary = experiment_summary(results, evals)
    board = leaderboard(summary)
    figure = figures.pass_rate_by_experiment(
        summary, report_files.comparison / "pass_rate_by_experiment.png"
    )
    context.add_output_metadata(
        {
            "experiments": int(summary["experiment"].nunique()),
            "leaderboard": dg.MetadataValue.md(board.to_markdown(index=False)),
            "summary": dg.MetadataValue.md(summary.to_markdown(index=False, floatfmt=".3f")),
            "figure": dg.MetadataValue.md(figures.inline_markdown([figure])),
            "figure_file": dg.MetadataValue.path(str(figure)),
            "views": ", ".join(views),
        }
    )
    return summary
