"""Scale (issue 15): 20 experiments × 300 partitions = 6,000 `run_results` partitions.

    uv run python -m bench.scale [--experiments 20] [--pairs 100] [--trees 30000]
    uv run python -m bench.scale --short      # small N, for CI; not for quoting
    uv run python -m bench.scale --keep DIR   # keep (or reuse) the imported platform in DIR

Generates each experiment's three arms (solo, coop-comm, coop-nocomm over `--pairs` synthetic
pairs) as upstream run folders, brings every arm in with `cb-assets import` (real Dagster
runs on a fresh instance, like a user's import), then measures:

- the partition status query of the `run_results` asset page (its GraphQL, against a real
  `dagster-webserver`) and the asset page's load in headless Chromium until the partition
  grid is drawn;
- the comparison views in DuckDB and the `experiment_comparison` computation;
- the manifest and the report of one experiment (a refresh tagged with it, as
  `cb-assets` runs it);
- the `new_results` sensor tick over every experiment's files;
- ingestion of `--trees` result trees against a bare `json.load` loop, and its peak memory.

Each line prints the figure, the target and their ratio.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import SETTINGS, instance_home, median_seconds, private_dir, synthetic_pairs
from cb_assets.shared.dataset import Pair
from cb_assets_tests.support.synthetic import agent_block, write_result

AGENT, MODEL = "mini_swe_agent_v2", "command-a-03-2025"  # what synthetic results say


class Report:
    """One line per figure: measured, target, ratio; and whether every target was met."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def seconds(self, what: str, measured: float, target: float) -> None:
        met = measured < target
        print(
            f"  {what}: {measured:.3f} s  (target < {target:g} s; ratio {measured / target:.2f}"
            f"{'' if met else '; MISSED'})",
            flush=True,
        )
        if not met:
            self.missed.append(what)

    def at_least(self, what: str, measured: float, target: float, unit: str = "") -> None:
        met = measured >= target
        print(
            f"  {what}: {measured:.2f}{unit}  (target >= {target:g}{unit}; ratio "
            f"{measured / target:.2f}{'' if met else '; MISSED'})",
            flush=True,
        )
        if not met:
            self.missed.append(what)


def experiment_names(n: int) -> list[str]:
    return [f"exp{i:02d}" for i in range(n)]


def write_dataset(root: Path, pairs: list[Pair]) -> Path:
    """A dataset holding exactly `pairs` (feature specs only: nothing here runs an agent)."""
    tasks: dict[tuple[str, int], list[list[int]]] = {}
    for p in pairs:
        tasks.setdefault((p.repo, p.task_id), []).append([p.feature_a, p.feature_b])
        for feature in (p.feature_a, p.feature_b):
            folder = root / p.repo / f"task{p.task_id}" / f"feature{feature}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "feature.md").write_text("a feature\n")
    spec = {
        "name": "bench",
        "tasks": [{"repo": r, "task_id": t, "pairs": ps} for (r, t), ps in tasks.items()],
    }
    (root / "subsets").mkdir(parents=True, exist_ok=True)
    (root / "subsets" / "bench.json").write_text(json.dumps(spec))
    return root


def write_registry(path: Path, names: list[str]) -> Path:
    lines = ["experiments:"]
    for name in names:
        lines.append(
            f"  - {{name: {name}, agent: {AGENT}, model: {MODEL}, source: import, "
            "settings: [solo, coop-comm, coop-nocomm]}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def write_upstream_runs(root: Path, name: str, pairs: list[Pair], seed: int) -> list[Path]:
    """The three upstream run folders of one experiment (each with its config.json)."""
    runs = []
    for setting, upstream in SETTINGS:
        run_name = f"{name}-{setting}"
        if (root / run_name / "config.json").exists():  # written last: the run is complete
            runs.append(root / run_name)
            continue
        for i, pair in enumerate(pairs):
            failing = (i + seed) % 7 == 0
            block = agent_block(
                status="Error" if failing else "Submitted",
                cost=0.05 * (1 + (pair.feature_a + seed) % 5),
                error="model refused" if failing else None,
            )
            write_result(
                root,
                run_name,
                pair,
                upstream,
                agents=[block] * (1 if upstream == "solo" else 2),
                messages=2 + (i + seed) % 4 if setting == "coop-comm" else 0,
            )
        config = {
            "run_name": run_name,
            "agent_framework": AGENT,
            "model": MODEL,
            "setting": upstream,
        }
        (root / run_name / "config.json").write_text(json.dumps(config))
        runs.append(root / run_name)
    return runs


def platform_env(root: Path, dataset: Path, registry: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
    env.update(
        CB_DATASET_DIR=str(dataset),
        CB_SUBSET="bench",
        CB_DATA_DIR=str(root / "platform"),
        CB_EXPERIMENTS=str(registry),
        CB_REDIS_URL="redis://127.0.0.1:9",  # nothing here messages: ingestion only
        CB_FORKSERVER_SOCKET=str(private_dir(root / "fork") / "fork.sock"),
        DAGSTER_HOME=str(instance_home(root / "dagster")),
    )
    return env


def build(
    root: Path, n_experiments: int, n_pairs: int, reverse: bool = False
) -> tuple[dict[str, str], float]:
    """Generate and import every arm (or reuse a folder built before); the environment of
    the platform and the seconds the imports took (0 when reused)."""
    names = experiment_names(n_experiments)
    pairs = synthetic_pairs(n_pairs)
    dataset, registry = root / "dataset", root / "experiments.yaml"
    done = root / "imported"
    if done.exists() and done.read_text() == f"{n_experiments} {n_pairs}":
        return platform_env(root, dataset, registry), 0.0
    if root.exists() and not (root / "imported.d").is_dir():
        for child in root.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if not registry.exists():
        write_dataset(dataset, pairs)
        write_registry(registry, names)
    env = platform_env(root, dataset, registry)
    imported = 0.0
    marks = root / "imported.d"  # one per arm brought in: a build interrupted goes on
    marks.mkdir(exist_ok=True)
    order = list(enumerate(names))
    for seed, name in reversed(order) if reverse else order:
        if all((marks / f"{name}-{setting}").exists() for setting, _ in SETTINGS):
            continue
        runs = write_upstream_runs(root / "upstream", name, pairs, seed)
        for (setting, _), run in zip(SETTINGS, runs, strict=True):
            try:  # taken by this build alone (another may be importing from the other end)
                (marks / f"{run.name}.claim").touch(exist_ok=False)
            except FileExistsError:
                continue
            t = time.perf_counter()
            for _ in range(4):  # others editing cb_assets retire a warm process
                proc = subprocess.run(
                    [sys.executable, "-m", "cb_assets.cli", "import", str(run)]
                    + ["--experiment", name, "--setting", setting],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if proc.returncode == 0 or "kept running other code" not in proc.stderr:
                    break
            if proc.returncode != 0:
                raise SystemExit(f"import of {run} failed:\n{proc.stdout}\n{proc.stderr}")
            imported += time.perf_counter() - t
            (marks / run.name).touch()
            print(f"  imported {name}/{setting}: {time.perf_counter() - t:.1f} s", flush=True)
    if all((marks / f"{n}-{s}").exists() for n in names for s, _ in SETTINGS):
        done.write_text(f"{n_experiments} {n_pairs}")
    return env, imported


PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses {
          materializedPartitions materializingPartitions failedPartitions
        }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses {
                ranges { status startTime endTime startKey endKey }
              }
              ... on DefaultPartitionStatuses {
                materializedPartitions materializingPartitions failedPartitions
              }
            }
          }
        }
      }
    }
  }
}"""  # the asset page's partition grid and health bar (dagster-webserver 1.13's bundle)


def materialized_in(answer: dict) -> int:
    """Partitions the PartitionHealthQuery answer reads as materialized."""
    node = answer["data"]["assetNodeOrError"]
    dims = {d["name"]: len(d["partitionKeys"]) for d in node["partitionKeysByDimension"]}
    statuses = node["assetPartitionStatuses"]
    primary = statuses["primaryDimensionName"]
    keys = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
    total = 0
    for span in statuses["ranges"]:
        first = keys[primary].index(span["primaryDimStartKey"])
        last = keys[primary].index(span["primaryDimEndKey"])
        total += (last - first + 1) * len(span["secondaryDim"]["materializedPartitions"])
    assert set(dims) >= {primary}
    return total


def measure_ui(
    report: Report, env: dict[str, str], root: Path, expected: int, first_arm: str, repeat: int
) -> None:
    from cb_assets_tests.support.webserver import graphql, webserver
    from cb_assets_tests.ui.test_experiments_ui import Browser

    variables = {"assetKey": {"path": ["run_results"]}}
    with webserver(env, root / "webserver.log", 300) as base:
        graphql(base, "mutation { setNuxSeen }")  # the first-visit community dialog
        start = time.perf_counter()
        answer = graphql(base, PARTITION_HEALTH_QUERY, variables)
        cold = time.perf_counter() - start
        assert "errors" not in answer, answer["errors"]
        seen = materialized_in(answer)
        assert seen == expected, f"the UI reads {seen} materialized partitions, not {expected}"
        warm = median_seconds(lambda: graphql(base, PARTITION_HEALTH_QUERY, variables), repeat)
        print(f"partition status of run_results in the UI ({seen} partitions materialized):")
        report.seconds("PartitionHealthQuery, first", cold, 1.0)
        report.seconds(f"PartitionHealthQuery, median of {repeat}", warm, 1.0)

        if shutil.which("chromium") is None:
            print("  asset page in Chromium: NOT MEASURED (no chromium)")
            return
        browser = Browser(root / "chromium")
        try:

            async def loads(call, js) -> list[float]:
                await call("Page.enable")
                times = []
                for _ in range(repeat):
                    await call("Page.navigate", url="about:blank")
                    start = time.perf_counter()
                    await call("Page.navigate", url=f"{base}/assets/run_results?view=partitions")
                    # drawn: the status counts are in and the arms' rows are on the page
                    condition = (
                        f"document.body.innerText.replaceAll(',', '').includes("
                        f"'Materialized ({expected})') && "
                        f"!!document.querySelector('[data-tooltip={json.dumps(first_arm)}]')"
                    )
                    deadline = start + 120
                    while not await js(condition):
                        if time.perf_counter() > deadline:
                            raise TimeoutError("the partition grid was never drawn")
                        await asyncio.sleep(0.02)
                    times.append(time.perf_counter() - start)
                return times

            times = browser.run(loads)
        finally:
            browser.close()
        print("  asset page load in headless Chromium until the partition grid is drawn:")
        print(
            f"    first {times[0]:.2f} s, median of {repeat} {statistics.median(times):.2f} s "
            "(no target in the issue)"
        )


def seed_evaluations(db: Path, logs: Path, names: list[str]) -> int:
    """An eval.json beside every imported result and its eval_results row, parsed the
    platform's way (evals.outcomes.eval_row) and written in one transaction: importing
    evaluations goes one Dagster run per partition, so the import above brings none, and
    the comparison views need outcomes to join."""
    from cb_assets.defs.evals.outcomes import eval_row, rows_to_frame
    from cb_assets.defs.runs.result_scan import iter_result_files, pair_of
    from cb_assets.defs.storage import duckdb_access
    from cb_assets.defs.storage.sql import query
    from cb_assets_tests.support.synthetic import write_eval

    stored = query(db, "select distinct arm, pair from run_results")
    ingested = set(zip(stored["arm"], stored["pair"], strict=True))
    rows = []
    for i, (_, _, pair_dir, arm) in enumerate(iter_result_files(logs, names)):
        pair = pair_of(pair_dir)
        if (arm.key, pair.key) not in ingested:  # an import interrupted before its ingest
            continue
        upstream = "solo" if arm.setting == "solo" else "coop"
        outcome = ("pass", "fail", "pass", "half", "fail", "pass", "error")[i % 7]
        if not (pair_dir / "eval.json").exists():
            write_eval(pair_dir, upstream, outcome=outcome)
            data = json.loads((pair_dir / "eval.json").read_text())
            data.update(repo=pair.repo, task_id=pair.task_id,
                        features=[pair.feature_a, pair.feature_b])  # fmt: skip
            (pair_dir / "eval.json").write_text(json.dumps(data))
        rows.append(eval_row(pair_dir, pair, arm, ran=False, patterns=(), logs_root=logs))
    frame = rows_to_frame(rows)  # noqa: F841  (DuckDB reads it)
    with duckdb_access.connect(db) as conn, duckdb_access.transaction(conn):
        if duckdb_access.table_exists(conn, "eval_results"):
            conn.execute("delete from eval_results")
            conn.execute("insert into eval_results by name select * from frame")
        else:
            conn.execute("create table eval_results as select * from frame")
    return len(rows)


class BodyContext:
    """What the report and comparison assets use of their context, so their bodies are
    timed without Dagster's run around them (a refresh run adds its own start-up)."""

    def __init__(self, tags: dict[str, str]) -> None:
        import logging

        import dagster as dg

        from cb_assets.defs.reports.verification import TRUTH_KEYS

        self.run = type("Run", (), {"tags": tags})()
        self.log = logging.getLogger("bench.scale")
        self.metadata: dict = {}
        self.selected_asset_check_keys = {
            dg.AssetCheckKey(dg.AssetKey("verification_report"), key) for key in TRUTH_KEYS
        }

    def add_output_metadata(self, metadata: dict) -> None:
        self.metadata.update(metadata)


def run_body(asset, defs, tags: dict[str, str]) -> object:
    """The asset's own function with the resources it names, to its end."""
    import inspect

    body = asset.op.compute_fn.decorated_fn
    wanted = list(inspect.signature(body).parameters)[1:]
    out = body(BodyContext(tags), **{name: defs.resources[name] for name in wanted})
    return list(out) if inspect.isgenerator(out) else out


def measure_analysis(report: Report, defs, repeat: int) -> None:
    """Each comparison view queried whole; the experiment_comparison asset's computation."""
    from cb_assets.defs.analysis.assets import ALL_VIEWS, _tables, create_views
    from cb_assets.defs.analysis.assets import experiment_comparison as comparison
    from cb_assets.defs.storage import duckdb_access

    duckdb = defs.resources["duckdb"]
    created = create_views(duckdb, _tables(duckdb))
    assert set(ALL_VIEWS) <= set(created), set(ALL_VIEWS) - set(created)
    print(f"comparison views over DuckDB (medians of {repeat}, whole view, fresh connection):")
    for name in ALL_VIEWS:

        def whole(view=name) -> int:
            with duckdb_access.connect(duckdb.path, read_only=True) as conn:
                return len(conn.execute(f"select * from {view}").fetchall())

        rows = whole()
        report.seconds(f"{name} ({rows} rows)", median_seconds(whole, repeat), 1.0)
    run_body(comparison, defs, {})  # matplotlib's first figure pays its font cache
    report.seconds(
        f"experiment_comparison asset (median of {repeat})",
        median_seconds(lambda: run_body(comparison, defs, {}), repeat),
        1.0,
    )


def measure_reports(report: Report, defs, experiment: str, repeat: int) -> None:
    """The manifest and the report of one experiment, as a refresh tagged with it computes
    them (every experiment's rows in DuckDB); then both for every experiment, untagged, as
    the automatic refresh does."""
    from cb_assets.defs.reports.assets import cost_manifest, verification_report

    tag = {"experiment": experiment}
    run_body(cost_manifest, defs, tag)
    print(f"manifest and report of one experiment, {experiment} (medians of {repeat}):")
    for asset in (cost_manifest, verification_report):
        report.seconds(
            asset.key.to_user_string(),
            median_seconds(lambda a=asset: run_body(a, defs, tag), repeat),
            1.0,
        )
    for asset in (cost_manifest, verification_report):
        start = time.perf_counter()
        run_body(asset, defs, {})
        print(
            f"    {asset.key.to_user_string()} of every experiment (the automatic refresh): "
            f"{time.perf_counter() - start:.2f} s (no target)"
        )


def measure_sensor(report: Report, logs: Path, registry: Path, pair_keys: list[str],
                   names: list[str], repeat: int) -> None:  # fmt: skip
    from bench.sensor_tick import tick_times

    arms = [logs / f"{names[0]}-{setting}" / upstream for setting, upstream in SETTINGS]
    before = {p for arm in arms for p in arm.glob("*/*/*")}
    try:
        first, idle, busy = tick_times(logs, registry, pair_keys, names[0], repeat, 1_000_000)
    finally:  # the 100-new-files rounds wrote pairs of their own: leave the tree as it was
        for arm in arms:
            for pair_dir in set(arm.glob("*/*/*")) - before:
                shutil.rmtree(pair_dir)
            for task_dir in arm.glob("*/*"):
                if not any(task_dir.iterdir()):
                    task_dir.rmdir()
    files = sum(1 for _ in logs.glob("*/*/*/*/*/result.json"))
    print(f"new_results sensor tick over {len(names)} experiments ({files} result files):")
    print(f"    first tick (all new, capped at 100 requests): {first:.3f} s (no target)")
    report.seconds(f"tick, 0 new files (median of {repeat})", idle, 1.0)
    report.seconds(f"tick, 100 new files (median of {repeat})", busy, 1.0)


def measure_ingest(report: Report, trees: int) -> None:
    """bench.ingest in a process of its own, so its peak memory is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--trees", str(trees)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = {}
    for line in proc.stdout.splitlines():
        for key in ("bare json.load loop:", "ingest into DuckDB:", "speed ratio ingest / bare:",
                    "peak memory:"):  # fmt: skip
            if line.strip().startswith(key):
                figures[key] = float(line.split(key)[1].split()[0])
    print(
        f"ingestion of {trees} result trees (bench.ingest): bare json.load loop "
        f"{figures['bare json.load loop:']:.2f} s, ingest {figures['ingest into DuckDB:']:.2f} s"
    )
    report.at_least("speed ratio ingest / bare", figures["speed ratio ingest / bare:"], 0.8, "×")
    peak = figures["peak memory:"]
    print(f"  peak memory: {peak:.0f} MB  (target < 1024 MB; ratio {peak / 1024:.2f}"
          f"{'' if peak < 1024 else '; MISSED'})")  # fmt: skip
    if peak >= 1024:
        report.missed.append("ingestion peak memory")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=100, help="per setting (3 settings)")
    parser.add_argument("--trees", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the platform here")
    parser.add_argument("--short", action="store_true", help="1 experiment × 9 partitions")
    parser.add_argument(
        "--as-built",
        action="store_true",
        help="with --keep: measure what an interrupted build imported, import nothing more",
    )
    args = parser.parse_args()
    if args.short:
        args.experiments, args.pairs, args.trees, args.repeat = 1, 3, 3000, 3
    with tempfile.TemporaryDirectory() as tmp:
        root = (args.keep or Path(tmp) / "scale").absolute()
        print(f"{args.experiments} experiments × {3 * args.pairs} partitions in {root}", flush=True)
        if args.as_built:
            env, imported = platform_env(root, root / "dataset", root / "experiments.yaml"), 0.0
        else:
            env, imported = build(root, args.experiments, args.pairs)
        partitions = 3 * args.experiments * args.pairs
        report = Report()
        if imported:
            print(f"import: {partitions} partitions by {3 * args.experiments} `cb-assets "
                  f"import` commands in {imported:.0f} s (no target)")  # fmt: skip
        # first, while this process is small: a child's peak RSS starts at its parent's
        measure_ingest(report, args.trees)
        os.environ.update(env)  # the definitions below read their configuration from it
        from cb_assets.definitions import defs as load_defs

        defs = load_defs()
        names = experiment_names(args.experiments)
        logs = Path(defs.resources["runner"].logs_dir)
        if args.as_built:  # what is in DuckDB: every materialized partition wrote its rows
            from cb_assets.defs.storage.sql import query

            found = query(
                defs.resources["duckdb"].path,
                "select count(distinct arm || '|' || pair) as n, "
                "count(distinct experiment) as e from run_results",
            )
            partitions = int(found["n"][0])
            print(f"as built: {partitions} partitions of {int(found['e'][0])} experiments")
        evaluated = seed_evaluations(defs.resources["duckdb"].path, logs, names)
        print(f"eval_results: {evaluated} rows written for the views (bench-only)", flush=True)
        measure_ui(report, env, root, partitions, f"{names[0]}/solo", args.repeat)
        measure_analysis(report, defs, args.repeat)
        measure_reports(report, defs, names[-1], args.repeat)
        pair_keys = [p.key for p in synthetic_pairs(args.pairs)]
        measure_sensor(report, logs, root / "experiments.yaml", pair_keys, names, args.repeat)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak memory of this process (views, reports, ticks): {peak:.0f} MB")
    print(
        "scale targets: all met"
        if not report.missed
        else f"scale targets missed: {', '.join(report.missed)}"
    )


if __name__ == "__main__":
    main()
