import dagster as dg

from cb_assets.defs.benchmark.assets import benchmark_pairs

register_pairs = dg.define_asset_job(
    "register_pairs",
    selection=[benchmark_pairs],
    description="Read the subset's pairs from the dataset and register them as partitions",
)
