"""Heavy-tailed agent durations: makespan of the platform against the bare CLI and the bound.

    uv run python -m bench.replay [--pairs 50] [--concurrency 4] [--scale 100]

The `replay` agent (cb_assets/agents/replay.py) sleeps each pair's recorded
`duration_seconds` / `--scale` and submits the gold patch. Over the first `--pairs` lite
pairs in coop-nocomm, with two duration sources:
  real       the 141 `duration_seconds` of ../shared/real-logs, pooled, shuffled with
             `--seed` and dealt to the pairs (cycled past 141), each with its source
             run's agent costs
  synthetic  a lognormal fitted to that pool: same median, and the max/mean ratio of the
             pool (about 4.1), drawn deterministically as the pairs' quantiles
Each source is written as an upstream run folder (config.json, coop/…/result.json) that
the agent replays. Per source, timed as whole commands on fresh instances:
  bare      `cooperbench run -c C` (the wrapped upstream CLI), pairs in subset order
  history   `cb-assets materialize` after `cb-assets import HISTORY --experiment recorded
            --setting coop-nocomm` (untimed) into the same data folder: the platform has
            every pair's duration on record as an earlier replay at this scale would have
            left it (each within about ±30%, seeded), the scheduler's history
  cold      `cb-assets materialize` on a data folder without that history
  daemon    as `history`, with a Dagster daemon running (runs go through its queue)
d is duration / scale; the bound is max(Σd / C, max d). Targets: platform (whole
command) <= 1.0 x bare, partition phase <= 1.1 x the bound.
"""

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from bench.common import add_platform_args, bench_platform, partition_phase, platform_env
from cb_assets.config import PROJECT_ROOT
from cb_assets.shared.dataset import Pair, load_pairs

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"
EXPERIMENT = "replay"
RECORDED = "recorded"
SETTING = "coop-nocomm"


def real_pool(root: Path) -> list[tuple[float, list[float]]]:
    """(duration_seconds, agent costs) of every result.json of upstream's layout under
    `root` (<run>/<setting>/<repo>/<task>/<pair>/result.json), in path order."""
    pool = []
    for path in sorted(root.glob("*/*/*/*/*/result.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        blocks = [data["agent"]] if "agent" in data else list(data["agents"].values())
        costs = [float(b.get("cost") or 0.0) for b in blocks]
        if len(costs) == 1:  # a solo run: its cost split between the two coop agents
            costs = [costs[0] / 2] * 2
        pool.append((float(data["duration_seconds"]), costs[:2]))
    if not pool:
        raise SystemExit(f"no result.json under {root}")
    return pool


def deal(pool: list, n: int, seed: int) -> list:
    """`n` items of `pool`, shuffled with `seed`, cycling when n exceeds it."""
    order = list(pool)
    random.Random(seed).shuffle(order)
    return [order[i % len(order)] for i in range(n)]


def lognormal_quantiles(n: int, median: float, max_over_mean: float, seed: int) -> list[float]:
    """n lognormal durations with this median, whose max/mean is as close to `max_over_mean`
    as n points allow: the distribution's (i + 0.5)/n quantiles (no sampling noise), σ by
    bisection, shuffled with `seed`."""
    z = [statistics.NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]

    def ratio(sigma: float) -> float:
        values = [math.exp(sigma * x) for x in z]
        return max(values) / statistics.mean(values)

    low, high = 0.0, 4.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if ratio(mid) < max_over_mean else (low, mid)
    values = [median * math.exp(low * x) for x in z]
    random.Random(seed).shuffle(values)
    return values


def write_tree(
    tree: Path, pairs: list[Pair], durations: list[float], costs: list[list[float]], source: str
) -> Path:
    """An upstream coop run folder (messaging off) holding one result per pair."""
    tree.mkdir(parents=True)
    (tree / "config.json").write_text(
        json.dumps(
            {
                "run_name": RECORDED,
                "agent_framework": f"replay-{source}",
                "model": f"replay-{source}",
                "setting": "coop",
                "messaging_mode": "off",
                "concurrency": 4,
                "total_tasks": len(pairs),
                "started_at": "2026-07-02T00:00:00",
            }
        )
    )
    for pair, duration, pair_costs in zip(pairs, durations, costs, strict=True):
        folder = tree / "coop" / pair.repo / str(pair.task_id) / pair.features_dir
        folder.mkdir(parents=True)
        agents = {
            f"agent{i + 1}": {
                "feature_id": feature,
                "status": "Submitted",
                "cost": cost,
                "steps": 10,
                "input_tokens": 1000,
                "output_tokens": 100,
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "patch_lines": 10,
                "error": None,
            }
            for i, (feature, cost) in enumerate(
                zip((pair.feature_a, pair.feature_b), pair_costs, strict=True)
            )
        }
        result = {
            "repo": pair.repo,
            "task_id": pair.task_id,
            "features": [pair.feature_a, pair.feature_b],
            "setting": "coop",
            "run_id": hashlib.sha256(folder.as_posix().encode()).hexdigest()[:8],
            "run_name": RECORDED,
            "agent_framework": f"replay-{source}",
            "model": f"replay-{source}",
            "started_at": "2026-07-02T00:00:00",
            "ended_at": "2026-07-02T00:00:00",
            "duration_seconds": duration,
            "agents": agents,
            "total_cost": sum(pair_costs),
            "total_steps": 20,
            "messages_sent": 0,
            "log_dir": str(folder),
        }
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    return tree


def write_registry(folder: Path, agent_config: Path) -> Path:
    """An experiments.yaml holding the replay experiment (import appends `recorded` to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "name": EXPERIMENT,
        "agent": "replay",
        "model": "replay",
        "settings": [SETTING],
        "agent_config": str(agent_config),
        "description": "replays recorded durations (bench.replay)",
    }
    path = folder / "experiments.yaml"
    # indented as the project's file is: `cb-assets import` appends entries that way
    body = yaml.safe_dump([entry], sort_keys=False)
    path.write_text("experiments:\n" + "".join(f"  {line}\n" for line in body.splitlines()))
    return path


class CodeChanged(RuntimeError):
    """A warm process refused to run code that changed under it (others edit cb_assets while
    the bench runs): the measurement is void, rerun it on a fresh folder."""


def cli(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    """`cb-assets ARGS`: its output and wall time; its error output on failure."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cb_assets.cli", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0 and "kept running other code" in proc.stdout + proc.stderr:
        raise CodeChanged(f"cb-assets {args[0]}")
    if proc.returncode != 0:
        raise SystemExit(
            f"cb-assets {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    return proc.stdout, time.perf_counter() - start


def bare(
    tmp: Path, dataset: Path, redis_url: str, agent_config: Path, concurrency: int
) -> tuple[float, float]:
    """The wrapped upstream CLI, one invocation over the subset: (whole command, its
    pair-runs from the first start to the last end, as their result.json say)."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cb_assets.agents.cli",
            "run",
            "-n",
            "bare-replay",
            "-s",
            "bench",
            "--setting",
            "coop",
            "--no-messaging",
            "-a",
            "replay",
            "-m",
            "replay",
            "--agent-config",
            str(agent_config),
            "--no-auto-eval",
            "-c",
            str(concurrency),
            "--log-dir",
            str(tmp / "bare"),
            "--dataset-dir",
            str(dataset),
            "--redis",
            redis_url,
        ],  # fmt: skip
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "CB_DATASET_DIR": str(dataset)},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    results = [json.loads(p.read_text()) for p in (tmp / "bare").rglob("result.json")]
    started = min(datetime.fromisoformat(r["started_at"]) for r in results)
    ended = max(datetime.fromisoformat(r["ended_at"]) for r in results)
    return wall, (ended - started).total_seconds()


@dataclass(frozen=True)
class Measured:
    wall: float  # the whole command
    phase: float  # its partition phase, as it prints it
    materialized: int
    partitions: int
    cost: float  # what run_results recorded for the replayed pair-runs
    notes: list[str]  # the command's lines about expected durations (the scheduler's)


def platform(
    tmp: Path,
    dataset: Path,
    redis_url: str,
    agent_config: Path,
    tree: Path,
    concurrency: int,
    *,
    history: bool,
    daemon: bool,
) -> Measured:
    """`cb-assets materialize` of the replay experiment on a fresh instance under `tmp`,
    after importing `tree` as experiment `recorded` when `history`."""
    registry = write_registry(tmp, agent_config)
    env = platform_env(tmp, dataset, redis_url, CB_EXPERIMENTS=str(registry))
    if history:
        cli(["import", str(tree), "--experiment", RECORDED, "--setting", SETTING], env)
    running = None
    if daemon:
        from bench.daemon_path import start_warm_daemon

        running = start_warm_daemon(env, tmp / "daemon.log")
    try:
        out, wall = cli(
            ["materialize", "--experiment", EXPERIMENT, "--images", "no",
             "--concurrency", str(concurrency)],
            env,
        )  # fmt: skip
    finally:
        if running is not None:
            from cb_assets_tests.support.daemon import stop_daemon

            stop_daemon(running, timeout=120)
    if daemon:
        assert "daemon's run queue" in out, out[:500]
    ok, total, phase = partition_phase(out)
    cost, _ = cli(
        ["sql", f"select coalesce(sum(cost), 0) from run_results where experiment = '{EXPERIMENT}'",
         "--csv"],
        env,
    )  # fmt: skip
    notes = [line.strip() for line in out.splitlines() if "expect" in line.lower()]
    return Measured(wall, phase, ok, total, float(cost.strip().splitlines()[-1]), notes)


def git_state() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return f"{head or '?'}" + (f" + {len(dirty)} modified files" if dirty else " (clean)")


def main() -> None:
    parser = argparse.ArgumentParser()
    add_platform_args(parser, pairs=50)
    parser.add_argument("--scale", type=float, default=100.0, help="durations are divided by it")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--real-logs", type=Path, default=REAL_LOGS)
    parser.add_argument(
        "--sources", nargs="+", choices=("real", "synthetic"), default=["real", "synthetic"]
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=("bare", "history", "cold", "daemon"),
        default=["bare", "history", "cold", "daemon"],
    )
    args = parser.parse_args()
    pool = real_pool(args.real_logs)
    pool_durations = [d for d, _ in pool]
    median = statistics.median(pool_durations)
    tail = max(pool_durations) / statistics.mean(pool_durations)
    cost_per_second = sum(sum(c) for _, c in pool) / sum(pool_durations)
    print(
        f"replayed durations, {args.pairs} coop-nocomm lite pairs, concurrency "
        f"{args.concurrency}, scale 1/{args.scale:g}; code at {git_state()}"
    )
    print(
        f"  real pool: {len(pool)} results under {args.real_logs}, median {median:.0f} s, "
        f"max/mean {tail:.2f}"
    )
    with bench_platform(args) as (tmp, dataset, redis_url):
        pairs = load_pairs(dataset, "bench")
        for source in args.sources:
            if source == "real":
                dealt = deal(pool, len(pairs), args.seed)
                durations, costs = [d for d, _ in dealt], [c for _, c in dealt]
            else:
                durations = lognormal_quantiles(len(pairs), median, tail, args.seed)
                costs = [[d * cost_per_second / 2] * 2 for d in durations]
            base = tmp / source
            tree = write_tree(base / "tree" / RECORDED, pairs, durations, costs, source)
            # The history the scheduler reads: what an earlier replay of these pairs at this
            # scale recorded, as another repeat would, within about ±30% (seeded noise). The
            # replayed tree itself holds the real, unscaled durations.
            noise = random.Random(args.seed + 1)
            history = write_tree(
                base / "history" / RECORDED,
                pairs,
                [d / args.scale * noise.lognormvariate(0, 0.3) for d in durations],
                costs,
                source,
            )
            agent_config = base / "replay.yaml"
            agent_config.write_text(
                yaml.safe_dump({"replay_tree": str(tree), "replay_scale": args.scale})
            )
            scaled = [d / args.scale for d in durations]
            bound = max(sum(scaled) / args.concurrency, max(scaled))
            print(
                f"\n  source {source}: Σd {sum(scaled):.1f} s, max d {max(scaled):.1f} s, "
                f"max/mean {max(scaled) / statistics.mean(scaled):.2f}, "
                f"bound max(Σd/C, max d) {bound:.1f} s"
            )
            recorded_cost = sum(sum(c) for c in costs)
            bare_wall = None
            if "bare" in args.paths:
                bare_wall, span = bare(
                    base / "bare", dataset, redis_url, agent_config, args.concurrency
                )
                print(
                    f"    bare upstream CLI (cooperbench run -c C):     {bare_wall:6.1f} s, its "
                    f"pair-runs (first start to last end) {span:5.1f} s; span/bound "
                    f"{span / bound:.2f}"
                )
            for path, label in (
                ("history", "cli, history   "),
                ("cold", "cli, cold      "),
                ("daemon", "daemon, history"),
            ):
                if path not in args.paths:
                    continue
                for attempt in range(1, 4):
                    try:
                        m = platform(
                            base / f"{path}-{attempt}", dataset, redis_url, agent_config,
                            history,
                            args.concurrency, history=path != "cold", daemon=path == "daemon",
                        )  # fmt: skip
                        break
                    except CodeChanged as exc:
                        print(f"    ({exc}: the code changed under a warm process; again)")
                else:
                    raise SystemExit(f"{path}: the code kept changing; no measurement")
                vs_bare = f"platform/bare {m.wall / bare_wall:.2f}, " if bare_wall else ""
                print(
                    f"    platform {label} (whole command): {m.wall:6.1f} s, partition phase "
                    f"{m.phase:5.1f} s ({m.materialized}/{m.partitions}); {vs_bare}"
                    f"phase/bound {m.phase / bound:.2f}"
                )
                for note in m.notes:
                    print(f"      the command said: {note}")
                if abs(m.cost - recorded_cost) > 1e-6 * max(1.0, recorded_cost):
                    print(
                        f"      COST MISMATCH: recorded {recorded_cost:.4f}, replayed {m.cost:.4f}"
                    )
            print("    targets: platform/bare <= 1.0, phase/bound <= 1.1")


if __name__ == "__main__":
    main()
