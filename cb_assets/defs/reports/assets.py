import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from cb_assets import config
from cb_assets.defs.analysis.compare import experiment_summary
from cb_assets.defs.benchmark.assets import benchmark_pairs
from cb_assets.defs.benchmark.resources import BenchmarkDataset
from cb_assets.defs.experiments.resources import ExperimentRegistry
from cb_assets.defs.reports import figures
from cb_assets.defs.reports.manifest import build_manifest, manifest_table
from cb_assets.defs.reports.resources import ReportFiles
from cb_assets.defs.reports.verification import (
    FAILED,
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
from cb_assets.defs.storage import duckdb_access
from cb_assets.defs.storage.duckdb_access import replace_rows
from cb_assets.defs.storage.resources import PlatformDuckDB
from cb_assets.defs.storage.tables import read_tables
from cb_assets.shared.experiments import Experiment
from cb_assets.shared.partition_keys import partition_key
from cb_assets.shared.settings import SETTING_NAMES

# Refresh while results change, even with partitions still missing or failed (the report
# says so), at most once per tick of `report_refresh` (CB_REPORT_REFRESH_SECONDS, 2 min by
# default): no storm of refreshes during a backfill.
REFRESH_ON_NEW_RESULTS = (
    dg.AutomationCondition.any_deps_updated()
    .ignore(dg.AssetSelection.assets("cost_manifest"))
    .since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when run results change")


PASS_RATE_PNG = "pass_rate.png"  # the report's link to it: verification.FIGURES
COMPARISON = dg.AssetKey("experiment_comparison")  # analysis domain; named, not imported
EXPERIMENT_TAG = "experiment"  # a refresh run tagged with it rewrites that experiment's files only


def _experiments(
    context: dg.AssetExecutionContext, results: pd.DataFrame, registry: ExperimentRegistry
) -> list[Experiment]:
    """The experiments this refresh writes: the run's `experiment` tag, else every
    experiment with rows (in registry order; an experiment no longer registered is
    described from its rows)."""
    tagged = _tagged(context)
    present = list(dict.fromkeys(results["experiment"].dropna().astype(str)))
    names = tagged if tagged is not None else present
    known = registry.load()
    order = {name: i for i, name in enumerate(known.names)}
    chosen = []
    for name in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
        found = known.find(name)
        if found is None:
            rows = results[results["experiment"] == name]
            found = Experiment(
                name,
                agent=str(rows["agent_framework"].iloc[0]) if len(rows) else "unknown",
                model=str(rows["model"].iloc[0]) if len(rows) else "unknown",
                source="import",
                settings=(),
            )
        chosen.append(found)
    return chosen


def _shape(experiment: Experiment, rows: pd.DataFrame) -> tuple[tuple[str, ...], int]:
    """The settings and repeats a report expects: the registry's, or for an imported
    experiment, what was imported."""
    if experiment.imported or not experiment.settings:
        present = tuple(s for s in SETTING_NAMES if s in set(rows["setting"].astype(str)))
        repeats = int(rows["repeat"].max()) if len(rows) else 1
        return present, repeats
    return experiment.settings, experiment.repeats


def store_by_experiment(duckdb: PlatformDuckDB, table: str, frames: list[pd.DataFrame]) -> None:
    """Replace the rows of each frame's experiment in `table`, in one transaction: a refresh
    of one experiment leaves the others' rows as they are (the IO manager would replace the
    whole unpartitioned table)."""
    with duckdb.get_connection() as conn, duckdb_access.transaction(conn):
        for frame in frames:
            name = str(frame["experiment"].iloc[0])
            replace_rows(conn, table, {"experiment": name}, frame)


def _expected(experiment: Experiment, rows: pd.DataFrame, dataset_pairs: list[str]) -> list[str]:
    """The pairs a report expects in every setting and repeat: the subset's, or for an
    imported experiment, the dataset's pairs it imported (it never ran the rest)."""
    if not experiment.imported:
        return dataset_pairs
    kept = rows[rows["in_dataset"].fillna(True).astype(bool)]
    return sorted(set(kept["pair"].astype(str)))


def _tagged(context: dg.AssetExecutionContext) -> list[str] | None:
    """The experiments the run's `experiment` tag names, or None (every experiment)."""
    tagged = context.run.tags.get(EXPERIMENT_TAG)
    return [n for n in tagged.split(",") if n] if tagged else None


def _mine(frame: pd.DataFrame | None, name: str) -> pd.DataFrame | None:
    if frame is None or "experiment" not in frame:
        return frame
    return frame[frame["experiment"] == name].reset_index(drop=True)


@dg.asset(
    deps=[run_results],
    group_name="reports",
    kinds={"duckdb", "json"},
    automation_condition=REFRESH_ON_NEW_RESULTS,
)
def cost_manifest(
    context: dg.AssetExecutionContext,
    duckdb: PlatformDuckDB,
    experiments: ExperimentRegistry,
    dataset: BenchmarkDataset,
    report_files: ReportFiles,
) -> dg.MaterializeResult:
    """Per experiment and setting: pairs, agents, statuses, cost (failed attempts
    included), steps, patches and messages; plus totals.

    Written to `data/experiments/<name>/results-manifest.json` and to the table
    `cost_manifest`, keyed by experiment. A run tagged `experiment=<name>` rewrites that
    experiment's file and rows only.
    """
    read = read_tables(duckdb.path, ("run_results", "run_attempts"), _tagged(context))
    results, attempts = read["run_results"], read["run_attempts"]
    tables, lines, pngs = [], [], []
    for experiment in _experiments(context, results, experiments):
        rows = _mine(results, experiment.name)
        settings, repeats = _shape(experiment, rows)
        manifest = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "experiment": experiment.name,
            "agent": experiment.agent,
            "model": experiment.model,
            "subset": dataset.subset,
            **build_manifest(
                rows, _mine(attempts, experiment.name), settings=settings, repeats=repeats
            ),
        }
        path = report_files.manifest(experiment.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        table = manifest_table(manifest)
        table.insert(0, "experiment", experiment.name)
        tables.append(table)
        figure_dir = report_files.figures(experiment.name)
        pngs += [
            figures.cost_per_setting(manifest, figure_dir / "cost_per_setting.png"),
            figures.status_mix(manifest, figure_dir / "status_mix.png"),
        ]
        totals = manifest["totals"]
        lines.append(
            f"| {experiment.name} | {totals['pairs']} | {totals['cost_total']:.2f} "
            f"| {final_results_cost(totals):.2f} | {path} |"
        )
    store_by_experiment(duckdb, "cost_manifest", tables)
    return dg.MaterializeResult(
        metadata={
            "experiments": len(tables),
            "per_experiment": dg.MetadataValue.md(
                "| experiment | pair-runs | cost_total | cost_final_results | manifest |\n"
                "|---|---|---|---|---|\n" + "\n".join(lines)
            ),
            "figures": dg.MetadataValue.md(figures.inline_markdown(pngs)),
        }
    )


def cost_metadata(totals: dict) -> dict[str, float]:
    """The headline costs, each under the manifest's name for it: everything spent first."""
    return {
        "cost_total": totals["cost_total"],  # every attempt: failed, replaced and final
        "cost_final_results": final_results_cost(totals),
        "failed_attempts_cost": totals.get("failed_attempts_cost", 0.0),
    }


def truth_check(key: str, verdicts: list[tuple[str, Truth]]) -> dg.AssetCheckResult:
    """The asset check of one report truth over the experiments refreshed: it passes when
    every one is VERIFIED; FAILED anywhere fails it with ERROR; otherwise NOT CHECKED (no
    data to check yet) fails it with WARN only, and says why."""
    worst = next(
        (v for v in (FAILED, NOT_CHECKED) if any(t.verdict == v for _, t in verdicts)), VERIFIED
    )
    metadata = {
        "verdict": worst,
        "truth": verdicts[0][1].truth,
        "evidence": "\n".join(f"{name}: {t.verdict}: {t.evidence}" for name, t in verdicts),
    }
    if worst == NOT_CHECKED:
        metadata["note"] = "not checked for " + ", ".join(
            name for name, t in verdicts if t.verdict == NOT_CHECKED
        )
    return dg.AssetCheckResult(
        check_name=key,
        passed=worst == VERIFIED,
        severity=dg.AssetCheckSeverity.WARN
        if worst == NOT_CHECKED
        else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _check_result_files(results: pd.DataFrame) -> tuple[pd.Series, dict[str, float]]:
    """Is each row's result.json still on disk with the same run? And its total cost."""
    file_ok: dict[str, bool] = {}
    costs: dict[str, float] = {}
    for row in results.drop_duplicates(["arm", "pair"]).itertuples():
        key = partition_key(row.arm, row.pair)
        try:
            data = read_json_file(Path(row.result_path))
            file_ok[key] = isinstance(data, dict) and data.get("run_id") == row.run_id
            costs[key] = float(data.get("total_cost") or 0) if file_ok[key] else 0.0
        except (ResultFileError, OSError, TypeError, ValueError):
            file_ok[key] = False
    keys = partition_key(results["arm"], results["pair"])
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
    experiments: ExperimentRegistry,
    dataset: BenchmarkDataset,
    report_files: ReportFiles,
):
    """Which promises of each experiment hold, each verdict computed from the data.

    Written to `data/experiments/<name>/verification-report.md`; the truths are stored as a
    table keyed by experiment. Each truth is also an asset check: it passes when it holds
    for every experiment this refresh covers.
    """
    # the rows (and below, the result files) of the experiments this refresh writes only: a
    # refresh of one experiment does not pay for every other one's
    tables = ("run_results", "benchmark_pairs", "task_images", "run_attempts", "eval_results")
    read = read_tables(duckdb.path, tables, _tagged(context))
    results = read["run_results"]
    chosen = _experiments(context, results, experiments)
    results["file_ok"], costs = _check_result_files(results)
    pairs = read["benchmark_pairs"]
    expected = sorted(pairs["pair"]) if pairs is not None else []
    db_path = duckdb.path
    images = read["task_images"]
    attempts, evals = read["run_attempts"], read["eval_results"]
    frames, scores, by_key, names = [], [], {}, []
    costs_of: dict[str, dict[str, float]] = {}
    reports_md = []
    for experiment in chosen:
        rows = _mine(results, experiment.name)
        settings, repeats = _shape(experiment, rows)
        manifest_path = report_files.manifest(experiment.name)
        report_path = report_files.report(experiment.name)
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
        inputs = ReportInputs(
            phase=f"{experiment.name}-{dataset.subset}",
            subset=dataset.subset,
            experiment=experiment.name,
            agent=experiment.agent,
            model=experiment.model,
            settings=settings,
            repeats=repeats,
            cost_band=experiment.cost_band,
            expected_pairs=_expected(experiment, rows, expected),
            results=rows,
            manifest=manifest,
            result_file_costs={
                k: v for k, v in costs.items() if k.startswith(experiment.name + "/")
            },
            images=images,
            attempts=_mine(attempts, experiment.name),
            evals=_mine(evals, experiment.name),
            artifacts=[
                ("DuckDB file", str(db_path), db_path.exists()),
                ("run logs", runner.logs_dir, Path(runner.logs_dir).is_dir()),
                ("results manifest", str(manifest_path), manifest_path.exists()),
                ("run_results table", f"{config.DUCKDB_SCHEMA}.run_results", not rows.empty),
            ],
        )
        mine = inputs.evals
        if mine is not None and not mine.empty:  # the report links its pass-rate figure
            figures.pass_rate_by_experiment(
                experiment_summary(rows, mine),
                report_files.figures(experiment.name) / PASS_RATE_PNG,
            )
        truths = evaluate_truths(inputs)
        markdown = render_report(inputs, truths)
        if manifest:
            costs_of[experiment.name] = cost_metadata(manifest["totals"])
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(markdown, encoding="utf-8")
        verified = sum(t.verdict == VERIFIED for t in truths)
        scores.append(f"{experiment.name} {verified}/{len(truths)}")
        frame = pd.DataFrame([t.__dict__ for t in truths])
        frame.insert(0, "experiment", experiment.name)
        frames.append(frame)
        for truth in truths:
            by_key.setdefault(truth.key, []).append((experiment.name, truth))
        reports_md.append(ui_markdown(markdown, report_path.parent))
        names.append(experiment.name)
    store_by_experiment(duckdb, "verification_report", frames)
    yield dg.MaterializeResult(
        metadata={
            "score": ", ".join(scores) or "no experiments with results",
            # the headline costs, summed over the experiments refreshed (each one's in its
            # report): everything spent first
            **{
                key: round(sum(c[key] for c in costs_of.values()), 6)
                for key in ("cost_total", "cost_final_results", "failed_attempts_cost")
                if costs_of
            },
            "report_files": dg.MetadataValue.md(
                "\n".join(f"- {name}: `{report_files.report(name)}`" for name in names)
            ),
            # front matter as a table, figures inlined: the file's relative links are
            # broken images in the UI
            "report": dg.MetadataValue.md("\n\n---\n\n".join(reports_md)),
        },
    )
    selected = {k.name for k in context.selected_asset_check_keys}
    for key in TRUTH_KEYS:  # one asset check per truth, over the experiments
        if key not in selected:
            continue
        if key in by_key:
            yield truth_check(key, by_key[key])
        else:  # e.g. team_complete when no experiment refreshed here runs team
            yield dg.AssetCheckResult(
                check_name=key,
                passed=True,
                metadata={"verdict": "NOT APPLICABLE", "note": "no experiment here has it"},
            )


report_refresh = dg.AutomationConditionSensorDefinition(
    "report_refresh",
    target=dg.AssetSelection.assets(cost_manifest, verification_report, COMPARISON),
    minimum_interval_seconds=config.report_refresh_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the manifest and the report as run results change, "
    "at most once every 2 minutes.",
)

# The report assets together with the report's checks (selecting assets alone omits them),
# and the comparison of all experiments, which every new result changes too.
REPORT_SELECTION = dg.AssetSelection.assets(cost_manifest, verification_report, COMPARISON) | (
    dg.AssetSelection.checks_for_assets(verification_report)
)
