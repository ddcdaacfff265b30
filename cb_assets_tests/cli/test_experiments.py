"""Experiments side by side, through the command line as a user runs it: two experiments in
one data folder, real upstream runs imported, and a data folder of the previous release."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.platform import platform_env
from cb_assets_tests.support.services import require
from cb_assets_tests.support.synthetic import make_subset_dataset

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"
PREVIOUS_RELEASE = "940e601"  # the last commit before the experiment registry


def env_for(tmp_path: Path, dataset: Path, redis_url: str, fork_socket: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(platform_env(tmp_path, dataset, redis_url))
    for retired in ("CB_AGENT", "CB_MODEL", "CB_AGENT_CONFIG", "CB_BACKEND", "CB_EXPERIMENT"):
        env.pop(retired, None)
    registry = tmp_path / "experiments.yaml"
    if not registry.exists():
        shutil.copy(PROJECT_ROOT / "experiments.yaml", registry)
    return {
        **env,
        "CB_EXPERIMENTS": str(registry),
        "CB_FORKSERVER_SOCKET": str(fork_socket),
        **extra,
    }


def query(tmp_path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "data" / "cooperbench.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_a_second_experiment_keeps_the_first_ones_rows_files_and_report(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=4)
    env = env_for(tmp_path, dataset, redis_url, fork_socket)
    first = run_cli(
        ["materialize", "--experiment", "oracle", "--pairs", "3", "--images", "no"], env
    )
    assert first.returncode == 0, first.stdout + first.stderr
    experiments = tmp_path / "data" / "experiments"
    oracle_report = (experiments / "oracle" / "verification-report.md").read_bytes()
    oracle_manifest = (experiments / "oracle" / "results-manifest.json").read_bytes()

    second = run_cli(["materialize", "--experiment", "noop", "--pairs", "3", "--images", "no"], env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "experiment noop (noop, noop): 9 run_results partitions" in second.stdout

    assert query(
        tmp_path, "select experiment, count(*) from run_results group by 1 order by 1"
    ) == [
        ("noop", 15),
        ("oracle", 15),
    ]
    assert query(
        tmp_path,
        "select experiment, count(distinct pair) from run_results where status = 'Submitted' "
        "and ran group by 1 order by 1",
    ) == [("noop", 3), ("oracle", 3)]
    # the oracle experiment's files were neither read into noop's nor rewritten
    assert (experiments / "oracle" / "verification-report.md").read_bytes() == oracle_report
    assert (experiments / "oracle" / "results-manifest.json").read_bytes() == oracle_manifest
    # the report tables keep both experiments' rows: each refresh replaced only its own
    for table in ("cost_manifest", "verification_report"):
        assert {e for (e,) in query(tmp_path, f"select distinct experiment from {table}")} == {
            "oracle",
            "noop",
        }, table
    noop = json.loads((experiments / "noop" / "results-manifest.json").read_text())
    assert noop["experiment"] == "noop" and noop["totals"]["pairs"] == 9
    assert {s: b["pairs"] for s, b in noop["settings"].items()} == {
        "solo": 3,
        "coop-comm": 3,
        "coop-nocomm": 3,
    }
    assert (
        "# Verification report: noop"
        in (experiments / "noop" / "verification-report.md").read_text()
    )
    # the runs say which experiment they ran, and the partition grid keeps them apart
    with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster-home")) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="run_pairs"))
        assert {r.tags["experiment"] for r in runs} == {"oracle", "noop"}
        assert {r.tags["agent"] for r in runs} == {"oracle", "noop"}
        done = instance.get_materialized_partitions(dg.AssetKey("run_results"))
        assert {k.split("/")[0] for k in done} == {"oracle", "noop"} and len(done) == 18


def _count_files(run: Path) -> dict:
    """What the run's files say, counted with plain json (not the platform's code)."""
    agents, statuses, cost, pairs, passed, evaluated = 0, {}, 0.0, 0, 0, 0
    for result in run.glob("*/*/*/*/result.json"):
        data = json.loads(result.read_text())
        pairs += 1
        blocks = [data["agent"]] if data["setting"] == "solo" else list(data["agents"].values())
        for block in blocks:
            agents += 1
            statuses[block["status"]] = statuses.get(block["status"], 0) + 1
            cost += block.get("cost") or 0.0
        evaluation = result.with_name("eval.json")
        if evaluation.exists():
            ev = json.loads(evaluation.read_text())
            if not ev.get("error"):
                evaluated += 1
                passed += bool(ev["both_passed"])
    return {
        "pairs": pairs,
        "agents": agents,
        "statuses": statuses,
        "cost": cost,
        "passed": passed,
        "evaluated": evaluated,
    }


IMPORTS = [  # run folder, experiment, setting, repeat
    ("nano_msg_1", "nano", "coop-comm", 1),
    ("nano_msg_2", "nano", "coop-comm", 2),
    ("nano_msg_3", "nano", "coop-comm", 3),
    ("nano_solo_1", "nano", "solo", 1),
    ("nano_free_git_1", "nano", "coop-git", 1),
    ("nano_nomsg_git_1", "nano", "coop-git-nocomm", 1),
    ("nano_control_1", "control", "coop-comm", 1),
    ("smoke_ca_1", "smoke", "coop-comm", 1),
]


def test_the_real_logs_import_as_experiments_whose_figures_match_the_files(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    require(REAL_LOGS.is_dir(), f"no real upstream logs at {REAL_LOGS}")
    env = env_for(tmp_path, lite_dataset, redis_url, fork_socket, CB_SUBSET="lite")
    for run, experiment, setting, repeat in IMPORTS:
        args = ["import", str(REAL_LOGS / run), "--experiment", experiment, "--setting", setting]
        proc = run_cli([*args, "--repeat", str(repeat)], env)
        assert proc.returncode == 0, f"{run}: {proc.stdout}{proc.stderr}"
        assert "skipped" not in proc.stderr
    registry = (tmp_path / "experiments.yaml").read_text()
    # refused imports register nothing: a setting config.json contradicts, a run experiment
    for refused, why in (
        (["--experiment", "nano2", "--setting", "solo"], "key 'setting'"),
        (["--experiment", "oracle", "--setting", "coop-comm"], "source is 'run'"),
        (["--experiment", "nano", "--setting", "coop-comm", "--repeat", "4"], None),
    ):
        if why is None:  # nano's agent is claude_code: a run of another model is refused
            other = tmp_path / "other_model"
            shutil.copytree(REAL_LOGS / "smoke_ca_1", other)
            config = json.loads((other / "config.json").read_text())
            (other / "config.json").write_text(json.dumps({**config, "model": "another"}))
            proc = run_cli(["import", str(other), *refused], env)
            why = "says claude_code / another"
        else:
            proc = run_cli(["import", str(REAL_LOGS / "nano_msg_1"), *refused], env)
        assert proc.returncode == 2 and why in proc.stderr, proc.stdout + proc.stderr
    assert (tmp_path / "experiments.yaml").read_text() == registry
    assert "name: nano" in registry and "agent: claude_code" in registry
    assert "model: claude-sonnet-5" in registry and "source: import" in registry

    # importing again changes nothing
    again = run_cli(["import", str(REAL_LOGS / "nano_msg_2"), "--experiment", "nano",
                     "--setting", "coop-comm", "--repeat", "2"], env)  # fmt: skip
    assert again.returncode == 0 and "0 pair folders imported, 20 unchanged" in again.stdout

    manifests = tmp_path / "data" / "experiments"
    nano = json.loads((manifests / "nano" / "results-manifest.json").read_text())
    for run, experiment, setting, repeat in IMPORTS:
        counted = _count_files(REAL_LOGS / run)
        manifest = json.loads((manifests / experiment / "results-manifest.json").read_text())
        block = (
            manifest["per_repeat"][setting][str(repeat)]
            if manifest.get("per_repeat") and setting in manifest["per_repeat"]
            else manifest["settings"][setting]
        )
        assert block["pairs"] == counted["pairs"], run
        assert block["agents"] == counted["agents"], run
        assert {k: v for k, v in block["status_counts"].items() if v} == counted["statuses"], run
        assert block["cost_total"] == pytest.approx(counted["cost"], abs=1e-4), run
        arm = f"{experiment}/{setting}" + (f"/r{repeat}" if repeat > 1 else "")
        (passed, evaluated), = query(
            tmp_path,
            "select count(*) filter (where outcome = 'pass'), "
            f"count(*) filter (where outcome <> 'error') from eval_results where arm = '{arm}'",
        )  # fmt: skip
        assert (passed, evaluated) == (counted["passed"], counted["evaluated"]), run
    assert nano["repeats"] == 3
    # the pair of a task the dataset lacks is present and flagged
    assert query(
        tmp_path,
        "select distinct in_dataset from run_results where pair = 'llama_index_task-17070-f1_f3'",
    ) == [(False,)]
    # the deficit per repeat and pooled, for each coop setting of nano
    deficits = query(
        tmp_path,
        "select coop_setting, coalesce(cast(repeat as varchar), 'pooled') from "
        "coordination_deficit where experiment = 'nano' order by all",
    )
    assert ("coop-comm", "pooled") in deficits and ("coop-comm", "3") in deficits
    assert ("coop-git", "pooled") in deficits
    # every message is a row, and the comparison covers the three experiments
    messages = sum(
        len(json.loads(p.read_text())) for p in REAL_LOGS.glob("*/*/*/*/*/conversation.json")
    )
    assert query(tmp_path, "select count(*) from conversations") == [(messages,)]
    assert {e for (e,) in query(tmp_path, "select experiment from experiment_comparison")} == {
        "nano",
        "control",
        "smoke",
    }
    # an imported experiment is never run: materializing it only refreshes its report
    proc = run_cli(["materialize", "--experiment", "nano", "--images", "no"], env)
    assert proc.returncode == 0 and "nothing to run" in proc.stdout, proc.stdout + proc.stderr
    assert {
        e for (e,) in query(tmp_path, "select distinct experiment from verification_report")
    } == {
        "nano",
        "control",
        "smoke",
    }


def test_a_data_folder_of_the_previous_release_upgrades_with_nothing_lost(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    git = shutil.which("git")
    require(git is not None and (PROJECT_ROOT / ".git").exists(), "a git checkout of the project")
    old = tmp_path / "previous-release"
    made = subprocess.run(
        [git, "worktree", "add", "--detach", str(old), PREVIOUS_RELEASE],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    require(made.returncode == 0, f"the previous release {PREVIOUS_RELEASE}: {made.stderr}")
    try:
        dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=2)
        env = env_for(tmp_path, dataset, redis_url, fork_socket)
        old_env = {**env, "CB_AGENT": "oracle", "CB_EXPERIMENT": "oracle"}
        written = subprocess.run(
            [sys.executable, "-m", "cb_assets.cli", "materialize", "--images", "no"],
            cwd=old, env=old_env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert written.returncode == 0, written.stdout + written.stderr
        before = query(tmp_path, "select pair, setting, run_id, cost from run_results order by all")
        assert len(before) == 10

        proc = run_cli(["materialize", "--images", "no"], env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "upgraded from an earlier release: run_results: 10 rows" in proc.stdout
        assert "6 partitions carried over" in proc.stdout
        after = query(
            tmp_path,
            "select pair, setting, run_id, cost from run_results order by all",
        )
        assert after == before  # the same runs, ingested, not rerun
        assert query(tmp_path, "select distinct experiment, repeat from run_results") == [
            ("oracle", 1)
        ]
        assert (
            query(tmp_path, "select count(*) from run_attempts where partition like 'oracle/%|%'")[
                0
            ][0]
            == query(tmp_path, "select count(*) from run_attempts")[0][0]
        )
        with dg.DagsterInstance.from_config(str(tmp_path / "data" / "dagster-home")) as instance:
            done = instance.get_materialized_partitions(dg.AssetKey("run_results"))
            assert {k for k in done if k.startswith("oracle/")} >= {
                f"oracle/{s}|{p}"
                for s in ("solo", "coop-comm", "coop-nocomm")
                for p in {row[0] for row in before}
            }
            old_runs = [r for r in instance.get_runs() if "experiment" not in r.tags]
            assert old_runs  # the earlier release's runs are still in the instance
    finally:
        subprocess.run([git, "worktree", "remove", "--force", str(old)], cwd=PROJECT_ROOT)
