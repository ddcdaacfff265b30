from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    # One process per run, whoever launches it (UI, sensor, backfill, `cb-assets`): a run's
    # steps, and the RetryPolicy's retries of them, execute in its run worker instead of
    # paying a fresh Python start-up each, and the run worker is the one process that owns
    # the run (the reaper and run monitoring judge liveness by it).
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=dg.in_process_executor),
    )
