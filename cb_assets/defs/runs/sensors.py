import dagster as dg

from cb_assets.defs.runs.liveness import fail_dead_runs


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def dead_run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Marks failed the runs whose process was killed outright, so their partitions read
    as failed and `cb-assets backfill --failed` picks them up."""
    reaped = fail_dead_runs(context.instance)
    return dg.SkipReason(
        f"marked {len(reaped)} dead runs failed: {', '.join(reaped)}" if reaped else "no dead runs"
    )
