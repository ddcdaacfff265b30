import dagster as dg

from cb_assets.defs.evals.assets import eval_results

evaluate_pairs = dg.define_asset_job(
    "evaluate_pairs",
    selection=[eval_results],
    description="Evaluate pair-runs with `cooperbench eval` in their task images",
)
