import dagster as dg

from cb_assets.defs.images.assets import task_images

probe_task_images = dg.define_asset_job(
    "probe_task_images",
    selection=[task_images],
    description="Pull and probe the task images, one task per partition",
)
