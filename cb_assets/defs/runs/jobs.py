import dagster as dg
from dagster_docker import docker_executor

from cb_assets import config
from cb_assets.defs.runs.assets import run_results

# Without run_results' checks: they read the whole table, cost about a second per run on
# the 2-core machine, and a range run skips them anyway (no output). `refresh_reports`, which
# ends every `cb-assets materialize`, evaluates them once.
run_pairs = dg.define_asset_job(
    "run_pairs",
    selection=dg.AssetSelection.assets(run_results).without_checks(),
    description="Run pairs through `cooperbench run` (a range of partitions per run)",
)

# For the scale-out profile: each run_results step in a container of its own (the run
# container only orchestrates). Select this job in the launchpad or a backfill when steps
# must be isolated from each other, e.g. agents that leave state on the host.
run_results_in_containers = dg.define_asset_job(
    "run_results_in_containers",
    selection=[run_results],
    executor_def=docker_executor.configured(
        {
            "image": config.code_image(),
            "networks": [n for n in [config.run_network()] if n],
            "env_vars": [
                "CB_DATASET_DIR",
                "CB_SUBSET",
                "CB_EXPERIMENTS",
                "CB_EXPERIMENT",
                "CB_REDIS_URL",
                "COHERE_API_KEY",
                "OPENAI_API_KEY",
                "ANTHROPIC_API_KEY",
            ],
            "container_kwargs": {"volumes": ["/opt/cb_assets/data:/opt/cb_assets/data"]},
        }
    ),
    description="run_results with every step in its own container (scale-out profile)",
)
