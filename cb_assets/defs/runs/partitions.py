import dagster as dg

from cb_assets.settings import SETTING_NAMES

# Pairs come from the configured dataset and subset, registered by `benchmark_pairs`,
# so the definitions load even before a dataset exists.
pair_partitions = dg.DynamicPartitionsDefinition(name="pairs")
setting_partitions = dg.StaticPartitionsDefinition(list(SETTING_NAMES))

# Dimension names sort, so keys read `pair|setting`.
run_partitions = dg.MultiPartitionsDefinition(
    {"pair": pair_partitions, "setting": setting_partitions}
)
