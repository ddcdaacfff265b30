import os
import subprocess
import sys

import dagster as dg

from cb_assets.config import PROJECT_ROOT
from cb_assets.definitions import defs


def test_definitions_hold_the_asset_graph() -> None:
    d = defs()
    keys = {k.to_user_string() for k in d.resolve_all_asset_keys()}
    assert {"benchmark_pairs", "run_results", "cost_manifest", "verification_report"} <= keys
    run_results = d.resolve_assets_def("run_results")
    assert isinstance(run_results.partitions_def, dg.MultiPartitionsDefinition)
    assert [dim.name for dim in run_results.partitions_def.partitions_defs] == ["pair", "setting"]
    # backfills batch run_results partitions, one setting and up to 25 pairs per run
    assert run_results.backfill_policy == dg.BackfillPolicy.multi_run(25)
    assert {"io_manager", "duckdb", "dataset", "runner"} <= set(d.resources)


def test_definitions_validate_with_the_dagster_cli(tmp_path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
