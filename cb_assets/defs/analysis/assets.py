import dagster as dg
import pandas as pd

from cb_assets.defs.analysis.deficit import ANALYSIS_VIEWS, deficits, pass_rates
from cb_assets.defs.evals.assets import eval_results
from cb_assets.defs.reports import figures
from cb_assets.defs.reports.resources import ReportFiles
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_table


@dg.asset(
    deps=[eval_results, run_results],
    group_name="analysis",
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.in_progress(),
)
def coordination_deficit(
    context: dg.AssetExecutionContext, duckdb: PlatformDuckDB, report_files: ReportFiles
) -> pd.DataFrame:
    """Solo pass rate minus coop pass rate on the same pairs, per coop setting, with a 95%
    bootstrap interval over pairs. Also (re)creates the analysis views in DuckDB:
    pass_rate_by_setting, cost_per_passing_pair, messages_vs_success, pass_rate_by_repo."""
    evals = read_table(duckdb.path, "eval_results")
    if evals is None or evals.empty:
        raise dg.Failure(
            description="no eval_results yet: materialize eval_results first", allow_retries=False
        )
    with duckdb.get_connection() as conn:
        for name, sql in ANALYSIS_VIEWS.items():
            conn.execute(f"create or replace view {name} as {sql}")
    rates = pass_rates(evals)
    figure = figures.pass_rate(rates, report_files.figures / "pass_rate.png")
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
