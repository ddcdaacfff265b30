"""The UI/daemon path against the command line and the bare upstream CLI, same pair-runs.

    uv run python -m bench.daemon_path [--pairs 100] [--concurrency 4]

On the same `--pairs` pairs x 3 settings with the `oracle` agent, each on a fresh instance
and data folder (whole commands timed, start-up and report included):
  bare      `cooperbench run` once per setting (no platform)
  cli       `cb-assets materialize` with no daemon running: it launches its own runs
  daemon    `cb-assets materialize` while a Dagster daemon runs: its runs wait in the
            daemon's queue and the daemon launches them (the UI's path for a run)
  backfill  a Dagster backfill of every partition (what the UI's "Materialize" of
            run_results submits; `cb-assets backfill --missing` submits the same), run by
            the daemon; timed from submission to the last partition materialized, with
            the wait for the daemon's first look at it (Dagster's backfill loop ticks every
            30 s) printed apart
  before    `cb-assets materialize` of commit `--before` (default 212a6ce: the command line
            before runs went through the code location), from a git worktree, in this run
The daemon is started and warmed before each timed path that uses it (`scripts/dev`
keeps one running). Targets: the daemon and backfill paths <= 1.5 x the command line before,
measured in the same run, and the cli path <= 1.5 x bare.
"""

import argparse
import subprocess
import time
from pathlib import Path

import dagster as dg

from bench.common import (
    add_platform_args,
    bench_platform,
    partition_phase,
    platform_env,
    run_main_job,
)
from bench.overhead import bare_upstream
from cb_assets.cli.dispatch import daemon_running
from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.daemon import start_daemon, stop_daemon


def start_warm_daemon(env: dict, log: Path) -> subprocess.Popen:
    """A daemon, returned once it drains the run queue (as `scripts/dev` keeps one)."""
    daemon = start_daemon(env, log)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        deadline = time.monotonic() + 180
        while not daemon_running(instance):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the daemon did not come up; see {log}")
            time.sleep(0.5)
    return daemon


def backfill_path(tmp: Path, dataset: Path, redis_url: str) -> tuple[float, float, int]:
    """(seconds from submission to the last partition, seconds until its first run, runs)."""
    env = platform_env(tmp, dataset, redis_url)
    run_cli(["backfill", "--missing", "--dry-run"], env).check_returncode()  # registers pairs
    daemon = start_warm_daemon(env, tmp / "daemon-backfill.log")
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            wanted = len(instance.get_dynamic_partitions("pairs")) * 3
            start = time.perf_counter()
            run_cli(["backfill", "--missing"], env).check_returncode()
            first_run = None
            while True:
                runs = [r for r in instance.get_runs() if "dagster/backfill" in r.tags]
                if runs and first_run is None:
                    first_run = time.perf_counter() - start
                done = instance.get_materialized_partitions(dg.AssetKey("run_results"))
                if len(done) >= wanted:
                    return time.perf_counter() - start, first_run or 0.0, len(runs)
                time.sleep(0.5)
    finally:
        stop_daemon(daemon, timeout=120)


def main_job_before(
    rev: str, tmp: Path, dataset: Path, redis_url: str, concurrency: int
) -> tuple[float, float]:
    """The main job of commit `rev` (the command line before runs went through the code
    location), from a worktree of it, on this machine now: (whole command, partition phase).
    Its instance has no run launcher setting (that commit knew no WarmRunLauncher)."""
    tree = tmp / "before-tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    try:
        home = tmp / "before" / "dagster"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(
            f"storage:\n  sqlite:\n    base_dir: {home}/storage\n"
            "concurrency:\n  runs:\n    max_concurrent_runs: 8\n"
            "  pools:\n    default_limit: 4\n    granularity: op\n"
            "telemetry:\n  enabled: false\n"
        )
        out, wall = run_main_job(
            tmp / "before",
            dataset,
            redis_url,
            concurrency,
            cwd=tree,
            DAGSTER_HOME=str(home),
            PYTHONPATH=str(tree),  # its cb_assets before the installed one
        )
        return wall, partition_phase(out)[2]
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=PROJECT_ROOT, check=False
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    add_platform_args(parser)
    parser.add_argument(
        "--before",
        default="212a6ce",
        help="the commit whose command line is the reference (default: the last one before "
        "runs went through the code location)",
    )
    parser.add_argument(
        "--daemon-only",
        action="store_true",
        help="only the bare CLI and the daemon path (issue 15's target: daemon <= 1.2 x bare)",
    )
    args = parser.parse_args()
    figures = {}
    with bench_platform(args) as (tmp, dataset, redis_url):
        figures["bare"] = bare_upstream(tmp, dataset, redis_url, args.concurrency)
        daemon_tmp = tmp / "daemon"
        daemon = start_warm_daemon(platform_env(daemon_tmp, dataset, redis_url), tmp / "daemon.log")
        try:
            out, figures["daemon"] = run_main_job(daemon_tmp, dataset, redis_url, args.concurrency)
        finally:
            stop_daemon(daemon, timeout=120)
        assert "daemon's run queue" in out, out[:500]
        phases = {"daemon": partition_phase(out)[2]}
        if args.daemon_only:
            print(
                f"{3 * args.pairs} pair-runs, oracle, concurrency {args.concurrency}: bare "
                f"{figures['bare']:.1f} s, daemon path {figures['daemon']:.1f} s (partition "
                f"phase {phases['daemon']:.1f} s); ratio daemon / bare "
                f"{figures['daemon'] / figures['bare']:.2f} (target <= 1.2)"
            )
            return
        figures["before"], before_phase = main_job_before(
            args.before, tmp, dataset, redis_url, args.concurrency
        )
        out, figures["cli"] = run_main_job(tmp / "cli", dataset, redis_url, args.concurrency)
        phases["cli"] = partition_phase(out)[2]
        figures["backfill"], pickup, runs = backfill_path(tmp / "backfill", dataset, redis_url)
    n = 3 * args.pairs
    print(
        f"{args.pairs} pairs x 3 settings = {n} pair-runs, oracle agent, concurrency "
        f"{args.concurrency} (one run each):"
    )
    print(f"  bare upstream CLI (3 invocations):        {figures['bare']:6.1f} s")
    print(
        f"  cb-assets materialize at {args.before} (before): {figures['before']:6.1f} s  "
        f"(partition phase {before_phase:.1f} s)"
    )
    for path, label in (("cli", "no daemon:    "), ("daemon", "via the daemon:")):
        print(
            f"  cb-assets materialize, {label}   {figures[path]:6.1f} s  "
            f"(partition phase {phases[path]:.1f} s)"
        )
    print(
        f"  Dagster backfill run by the daemon:       {figures['backfill']:6.1f} s  "
        f"({runs} runs; {pickup:.1f} s before its first run)"
    )
    print(
        f"  ratio cli / bare:                    {figures['cli'] / figures['bare']:.2f} "
        "(target <= 1.5)"
    )
    for path in ("cli", "daemon", "backfill"):
        ratio = figures[path] / figures["before"]
        print(
            f"  ratio {path} / command line before: {ratio:.2f} (target <= 1.5: daemon, backfill)"
        )
    print(f"  ratio daemon / cli now:              {figures['daemon'] / figures['cli']:.2f}")
    print(
        f"  ratio daemon / bare:                 {figures['daemon'] / figures['bare']:.2f} "
        "(target <= 1.2, issue 15)"
    )


if __name__ == "__main__":
    main()
