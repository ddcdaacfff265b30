import os
import subprocess
import sys

import dagster as dg

from cb_assets.config import PROJECT_ROOT
from cb_assets.definitions import defs


def test_definitions_hold_the_asset_graph() -> None:
    d = defs()
    keys = {k.to_user_string() for k in d.resolve_all_asset_keys()}
    assert {
        "benchmark_pairs",
        "run_results",
        "eval_results",
        "cost_manifest",
        "verification_report",
        "experiment_comparison",
    } <= keys
    for name in ("run_results", "eval_results"):
        asset = d.resolve_assets_def(name)
        partitions = asset.partitions_def
        assert isinstance(partitions, dg.MultiPartitionsDefinition)
        dims = {dim.name: dim.partitions_def for dim in partitions.partitions_defs}
        assert list(dims) == ["arm", "pair"]  # keys read `<arm>|<pair>`
        assert all(isinstance(p, dg.DynamicPartitionsDefinition) for p in dims.values())
        assert (dims["arm"].name, dims["pair"].name) == ("arms", "pairs")
    # backfills batch run_results partitions, one arm and up to 25 pairs per run
    run_results = d.resolve_assets_def("run_results")
    assert run_results.backfill_policy == dg.BackfillPolicy.multi_run(25)
    assert {"io_manager", "duckdb", "dataset", "runner", "experiments"} <= set(d.resources)
    refresh = d.resolve_job_def("refresh_reports")
    selected = {k.to_user_string() for k in refresh.asset_layer.selected_asset_keys}
    assert "experiment_comparison" in selected


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
