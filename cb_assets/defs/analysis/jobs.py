import dagster as dg

from cb_assets.defs.analysis.assets import coordination_deficit, experiment_comparison

analyze_coordination = dg.define_asset_job(
    "analyze_coordination",
    selection=[coordination_deficit, experiment_comparison],
    description="The coordination deficit and the comparison of experiments, from the "
    "evaluated pair-runs",
)
