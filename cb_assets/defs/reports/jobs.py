import dagster as dg

from cb_assets.defs.reports.assets import REPORT_SELECTION
from cb_assets.defs.runs.assets import run_results

refresh_reports = dg.define_asset_job(
    "refresh_reports",
    # run_results' checks (agent outcomes, stale images) are table-wide: once here, not in
    # every run of run_pairs
    selection=REPORT_SELECTION | dg.AssetSelection.checks_for_assets(run_results),
    description="The cost manifest and the verification report, from what is recorded now; "
    "run_results' checks",
)
