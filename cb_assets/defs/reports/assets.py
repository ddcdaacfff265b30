import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from cb_assets import config
from cb_assets.defs.benchmark.assets import benchmark_pairs
from cb_assets.defs.benchmark.resources import BenchmarkDataset
from cb_assets.defs.reports import figures
from cb_assets.defs.reports.manifest import build_manifest, manifest_table
from cb_assets.defs.reports.resources import ReportFiles
from cb_assets.defs.reports.verification import (
    NOT_CHECKED,
    TRUTH_KEYS,
    VERIFIED,
    ReportInputs,
    Truth,
    evaluate_truths,
    final_results_cost,
    render_report,
    ui_markdown,
)
from cb_assets.defs.runs.assets import run_results
from cb_assets.defs.runs.resources import CooperBenchRunner
from cb_assets.defs.runs.results import ResultFileError, read_json_file
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_run_results, read_table
from cb_assets.shared.partition_keys import partition_key

# Refresh while results change, even with partitions still missing or failed (the report
# says so), at most once per tick of `report_refresh` (CB_REPORT_REFRESH_SECONDS, 2 min by
# default): no storm of refreshes during a backfill.
REFRESH_ON_NEW_RESULTS = (
    dg.AutomationCondition.any_deps_updated()
    .ignore(dg.AssetSelection.assets("cost_manifest"))
    .since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when run results change")


@dg.asset(
    deps=[run_results],
    group_name="reports",
    kinds={"duckdb", "json"},
    automation_condition=REFRESH_ON_NEW_RESULTS,
)
def cost_manifest(
    context: dg.AssetExecutionContext,
    duckdb: PlatformDuckDB,
    runner: CooperBenchRunner,
    report_files: ReportFiles,
) -> pd.DataFrame:
    """Per setting: pairs, agents, statuses, cost, steps, patches and messages; plus totals.

    Written to `data/results-manifest.json` and stored as a table.
    """
    results = read_run_results(duckdb.path)
    manifest = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "experiment": runner.experiment,
        "subset": runner.dataset.subset,
        **build_manifest(results, read_table(duckdb.path, "run_attempts")),
    }
    path = report_files.manifest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    table = manifest_table(manifest)
    figure_dir = report_files.figures
    pngs = [
        figures.cost_per_setting(manifest, figure_dir / "cost_per_setting.png"),
        figures.status_mix(manifest, figure_dir / "status_mix.png"),
    ]
    context.add_output_metadata(
        {
            "manifest_file": dg.MetadataValue.path(str(path)),
            "pair_runs": manifest["totals"]["pairs"],
            **cost_metadata(manifest["totals"]),
            "per_setting": dg.MetadataValue.md(table.to_markdown(index=False)),
            "figures": dg.MetadataValue.md(figures.inline_markdown(pngs)),
        }
    )
    return table


def cost_metadata(totals: dict) -> dict[str, float]:
    """The headline costs, each under the manifest's name for it: everything spent first."""
    return {
        "cost_total": totals["cost_total"],  # every attempt: failed, replaced and final
        "cost_final_results": final_results_cost(totals),
        "failed_attempts_cost": totals.get("failed_attempts_cost", 0.0),
    }


def truth_check(truth: Truth) -> dg.AssetCheckResult:
    """The asset check of one report truth: VERIFIED passes; FAILED fails with ERROR;
    NOT CHECKED (no data to check yet) fails with WARN only, and says why."""
    metadata = {"verdict": truth.verdict, "truth": truth.truth, "evidence": truth.evidence}
    if truth.verdict == NOT_CHECKED:
        metadata["note"] = f"not checked: {truth.evidence}"
    return dg.AssetCheckResult(
        check_name=truth.key,
        passed=truth.verdict == VERIFIED,
        severity=dg.AssetCheckSeverity.WARN
        if truth.verdict == NOT_CHECKED
        else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _check_result_files(results: pd.DataFrame) -> tuple[pd.Series, dict[str, float]]:
    """Is each row's result.json still on disk with the same run? And its total cost."""
    file_ok: dict[str, bool] = {}
    costs: dict[str, float] = {}
    for row in results.drop_duplicates(["pair", "setting"]).itertuples():
        key = partition_key(row.pair, row.setting)
        try:
            data = read_json_file(Path(row.result_path))
            file_ok[key] = isinstance(data, dict) and data.get("run_id") == row.run_id
            costs[key] = float(data.get("total_cost") or 0) if file_ok[key] else 0.0
        except (ResultFileError, OSError, TypeError, ValueError):
            file_ok[key] = False
    keys = partition_key(results["pair"], results["setting"])
    return keys.map(file_ok).fillna(False).astype(bool), costs


@dg.asset(
    deps=[cost_manifest, run_results, benchmark_pairs],
    group_name="reports",
    kinds={"duckdb", "markdown"},
    automation_condition=REFRESH_ON_NEW_RESULTS,
    check_specs=[
        dg.AssetCheckSpec(key, asset="verification_report", description=f"report truth `{key}`")
        for key in TRUTH_KEYS
    ],
)
def verification_report(
    context: dg.AssetExecutionContext,
    duckdb: PlatformDuckDB,
    runner: CooperBenchRunner,
    dataset: BenchmarkDataset,
    report_files: ReportFiles,
):
    """Which promises of the experiment hold, each verdict computed from the data.

    Written to `data/verification-report.md`; the truths are stored as a table.
    """
    results = read_run_results(duckdb.path)
    results["file_ok"], costs = _check_result_files(results)
    pairs = read_table(duckdb.path, "benchmark_pairs")
    expected = sorted(pairs["pair"]) if pairs is not None else []
    manifest_path, report_path = report_files.manifest, report_files.report
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    db_path = duckdb.path
    inputs = ReportInputs(
        phase=f"{runner.experiment}-{dataset.subset}",
        subset=dataset.subset,
        expected_pairs=expected,
        results=results,
        manifest=manifest,
        result_file_costs=costs,
        images=read_table(duckdb.path, "task_images"),
        attempts=read_table(duckdb.path, "run_attempts"),
        evals=read_table(duckdb.path, "eval_results"),
        artifacts=[
            ("DuckDB file", str(db_path), db_path.exists()),
            ("run logs", runner.logs_dir, Path(runner.logs_dir).is_dir()),
            ("results manifest", str(manifest_path), manifest_path.exists()),
            ("run_results table", f"{config.DUCKDB_SCHEMA}.run_results", not results.empty),
        ],
    )
    truths = evaluate_truths(inputs)
    markdown = render_report(inputs, truths)
    report_path.write_text(markdown, encoding="utf-8")
    verified = sum(t.verdict == VERIFIED for t in truths)
    yield dg.Output(
        pd.DataFrame([t.__dict__ for t in truths]),
        metadata={
            "report_file": dg.MetadataValue.path(str(report_path)),
            "score": f"{verified}/{len(truths)}",
            **(cost_metadata(manifest["totals"]) if manifest else {}),
            # front matter as a table, figures inlined: the file's relative links are
            # broken images in the UI
            "report": dg.MetadataValue.md(ui_markdown(markdown, report_path.parent)),
        },
    )
    selected = {k.name for k in context.selected_asset_check_keys}
    for truth in truths:  # one asset check per truth, so the UI shows each verdict
        if truth.key in selected:
            yield truth_check(truth)


report_refresh = dg.AutomationConditionSensorDefinition(
    "report_refresh",
    target=dg.AssetSelection.assets(cost_manifest, verification_report),
    minimum_interval_seconds=config.report_refresh_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the manifest and the report as run results change, "
    "at most once every 2 minutes.",
)

# The report assets together with the report's checks (selecting assets alone omits them).
REPORT_SELECTION = dg.AssetSelection.assets(cost_manifest, verification_report) | (
    dg.AssetSelection.checks_for_assets(verification_report)
)
