import dagster as dg

from cb_assets.defs.reports.assets import REPORT_SELECTION

refresh_reports = dg.define_asset_job(
    "refresh_reports",
    selection=REPORT_SELECTION,
    description="The cost manifest and the verification report, from what is recorded now",
)
