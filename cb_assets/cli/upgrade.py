"""`cb-assets upgrade`: bring a data folder an earlier release wrote up to this one (every
other command does it first too; `scripts/dev` runs this before the UI and the daemon)."""

import argparse

import dagster as dg

from cb_assets import config
from cb_assets.cli.project import use_project_instance


def upgrade(args: argparse.Namespace) -> int:
    from cb_assets.defs.runs.upgrade import upgrade as upgrade_in_place

    use_project_instance()
    with dg.DagsterInstance.get() as instance:
        done = upgrade_in_place(instance, config.duckdb_path())
    for line in done:
        print(f"cb-assets: upgraded from an earlier release: {line}")
    if not done:
        print(f"cb-assets: {config.duckdb_path()} and {instance.root_directory} are current")
    return 0
