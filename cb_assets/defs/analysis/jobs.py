import dagster as dg

from cb_assets.defs.analysis.assets import coordination_deficit

analyze_coordination = dg.define_asset_job(
    "analyze_coordination",
    selection=[coordination_deficit],
    description="The coordination deficit, from the evaluated pair-runs",
)
