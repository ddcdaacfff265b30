"""The README's main job, as a user runs it: `cb-assets materialize` in its own process."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.daemon import start_daemon, stop_daemon, wait_for
from cb_assets_tests.support.platform import platform_env, write_registry
from cb_assets_tests.support.synthetic import make_subset_dataset
from cb_assets_tests.support.webserver import graphql, webserver


def test_main_job_materializes_the_experiment(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=3)
    env = cli_env(tmp_path, dataset, redis_url, fork_socket)
    proc = run_cli(["materialize", "--concurrency", "2"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no daemon is running" in proc.stdout  # it launched its runs itself
    assert "experiment oracle (oracle, oracle): 9 run_results partitions" in proc.stdout
    assert "9/9 partitions materialized" in proc.stdout
    assert "[9/9] ok" in proc.stdout
    ok_lines = [
        line for line in proc.stdout.splitlines() if line.startswith("[") and " ok " in line
    ]
    assert len(ok_lines) == 9 and all(line.endswith("ran: submitted") for line in ok_lines)
    assert {line.split()[2].partition("|")[0] for line in ok_lines} == {
        "oracle/solo",
        "oracle/coop-comm",
        "oracle/coop-nocomm",
    }
    experiment_dir = tmp_path / "data" / "experiments" / "oracle"
    assert f"manifest {experiment_dir / 'results-manifest.json'}" in proc.stdout
    assert f"report   {experiment_dir / 'verification-report.md'} (score oracle " in proc.stdout

    manifest = json.loads((experiment_dir / "results-manifest.json").read_text())
    assert manifest["experiment"] == "oracle"
    assert {s: b["pairs"] for s, b in manifest["settings"].items()} == {
        "solo": 3,
        "coop-comm": 3,
        "coop-nocomm": 3,
    }
    assert manifest["settings"]["coop-comm"]["messages_total"] > 0
    assert manifest["settings"]["coop-nocomm"]["messages_total"] == 0
    with duckdb.connect(str(tmp_path / "data" / "cooperbench.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "select experiment, setting, repeat, arm, count(*) from run_results "
            "group by all order by all"
        )
        assert rows.fetchall() == [
            ("oracle", "coop-comm", 1, "oracle/coop-comm", 6),
            ("oracle", "coop-nocomm", 1, "oracle/coop-nocomm", 6),
            ("oracle", "solo", 1, "oracle/solo", 3),
        ]
    report = (experiment_dir / "verification-report.md").read_text()
    assert (
        "| solo is complete on the test subset: every pair-run ended in a result | VERIFIED |"
        in report
    )
    # every run is a run of the code location, forked by the project's run launcher
    with dg.DagsterInstance.from_config(str(home_of(tmp_path))) as instance:
        runs = instance.get_runs()
        assert {r.job_name for r in runs} == {"register_pairs", "run_pairs", "refresh_reports"}
        for run in runs:
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.remote_job_origin.location_name == "cb_assets.definitions"
            assert run.tags["cb_assets/pid"] != str(os.getpid())  # a worker of its own
            if run.job_name == "run_pairs":  # each says what it ran
                assert {k: run.tags[k] for k in ("experiment", "agent", "model", "repeat")} == {
                    "experiment": "oracle",
                    "agent": "oracle",
                    "model": "oracle",
                    "repeat": "1",
                }
                assert run.tags["setting"] in ("solo", "coop-comm", "coop-nocomm")


def test_main_job_without_a_dataset_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        **without_dagster_home(),
        "CB_DATA_DIR": str(tmp_path / "data"),
        "CB_DATASET_DIR": str(tmp_path / "missing"),
    }
    proc = run_cli(["materialize"], env)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cooperbench prepare" in errors[0], proc.stderr


def without_dagster_home() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def home_of(tmp_path: Path) -> Path:
    """The instance a command makes for CB_DATA_DIR=<tmp_path>/data: the project's
    dagster.yaml (its run launcher, queue and pools) with its folders under the data dir."""
    return tmp_path / "data" / "dagster-home"


def cli_env(tmp_path: Path, dataset: Path, redis_url: str, fork_socket: Path, **extra) -> dict:
    return {
        **without_dagster_home(),
        **platform_env(tmp_path, dataset, redis_url),
        "CB_FORKSERVER_SOCKET": str(fork_socket),
        **extra,
    }


def test_eight_runs_at_once_lose_nothing(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=10)
    env = cli_env(tmp_path, dataset, redis_url, fork_socket, CB_OFFLINE_AGENT_DELAY="0.5")
    proc = run_cli(["materialize", "--concurrency", "8"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "30/30 partitions materialized" in proc.stdout and "FAIL" not in proc.stdout
    with duckdb.connect(str(tmp_path / "data" / "cooperbench.duckdb"), read_only=True) as conn:
        assert conn.execute(
            "select count(*), count(distinct pair || setting) from run_results"
        ).fetchone() == (50, 30)
        assert conn.execute("select count(*) from run_attempts").fetchone() == (30,)


def test_backfill_reruns_exactly_the_failed_partitions(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=4)
    env = cli_env(
        tmp_path,
        dataset,
        redis_url,
        fork_socket,
        CB_EXPERIMENT="flaky",  # the shipped registry's oracle with injected faults
        CB_FLAKY_RATES="permanent=0.4",
        CB_FLAKY_SEED="3",
    )
    first = run_cli(["materialize", "--settings", "solo", "coop-comm"], env)
    failed = sorted(line.split()[2] for line in first.stdout.splitlines() if " FAIL " in line)
    assert first.returncode == 1 and failed, first.stdout

    dry = run_cli(["backfill", "--missing", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    listed = sorted(
        line.split()[1] for line in dry.stdout.splitlines() if line.startswith("  missing")
    )
    assert len(listed) == 4 and all(k.startswith("flaky/coop-nocomm|") for k in listed)
    assert all(k.startswith(("flaky/solo|", "flaky/coop-comm|")) for k in failed)

    env["CB_FLAKY_RATES"] = ""  # the outage is over
    again = run_cli(["backfill", "--failed", "--here"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = sorted(
        line.split()[1] for line in again.stdout.splitlines() if line.startswith("  failed")
    )
    assert rerun == failed
    assert f"{len(failed)}/{len(failed)} partitions materialized" in again.stdout
    assert "no failed partitions" in run_cli(["backfill", "--failed"], env).stdout


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        (
            "CB_EXPERIMENTS",
            "{unknown_agent}",
            "{unknown_agent}: experiments.mine.agent='unknown_agent': unknown agent framework",
        ),
        ("CB_EXPERIMENTS", "{k8s}", "{k8s}: key 'experiments.mine.backend': 'k8s'; expected one"),
        ("CB_EXPERIMENTS", "{secret}", "{secret}: experiments.mine.secrets: CB_TEST_NO_SUCH_KEY"),
        ("CB_EXPERIMENT", "nobody", "{shipped}: no experiment 'nobody'; it has oracle, noop"),
        # retired: the registry holds them now, and a set one says so rather than be ignored
        ("CB_AGENT", "noop", "CB_AGENT='noop': no longer read; set `agent:` of an experiment"),
        ("CB_BACKEND", "k8s", "CB_BACKEND='k8s': no longer read; set `backend:`"),
        ("CB_FAILURE_PATTERNS", "{missing}", "CB_FAILURE_PATTERNS='{missing}': failure pattern"),
        ("CB_FAILURE_PATTERNS", "{bad_regex}", "CB_FAILURE_PATTERNS='{bad_regex}': failure"),
        ("CB_RETRY_DELAY_SECONDS", "abc", "CB_RETRY_DELAY_SECONDS='abc': expected a non-negative"),
        ("CB_LAUNCHER", "fork", "CB_LAUNCHER='fork': expected one of forkserver, subprocess"),
    ],
)
def test_a_bad_setting_stops_before_anything_runs_with_one_line(
    tmp_path: Path,
    lite_dataset: Path,
    redis_url: str,
    fork_socket: Path,
    var: str,
    value: str,
    says: str,
) -> None:
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=1)
    bad_regex = tmp_path / "patterns.json"
    bad_regex.write_text(json.dumps([{"name": "x", "regex": "("}]))
    mine = {"name": "mine", "agent": "noop", "model": "noop"}
    paths = {
        "missing": tmp_path / "nowhere.json",
        "bad_regex": bad_regex,
        "shipped": PROJECT_ROOT / "experiments.yaml",
        "unknown_agent": write_registry(
            tmp_path / "unknown_agent.yaml", {**mine, "agent": "unknown_agent"}
        ),
        "k8s": write_registry(tmp_path / "k8s.yaml", {**mine, "backend": "k8s"}),
        "secret": write_registry(
            tmp_path / "secret.yaml", {**mine, "secrets": ["CB_TEST_NO_SUCH_KEY"]}
        ),
    }
    value, says = value.format(**paths), says.format(**paths)
    extra = {"CB_EXPERIMENT": "mine"} if var == "CB_EXPERIMENTS" else {}
    env = cli_env(tmp_path, dataset, redis_url, fork_socket, **extra, **{var: value})
    env.pop("CB_TEST_NO_SUCH_KEY", None)
    proc = run_cli(["materialize", "--pairs", "1", "--settings", "solo", "--images", "no"], env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = _error_lines(proc)
    assert line.startswith(f"error: {says}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists(), "something ran"  # no DuckDB, no logs, no instance


def test_cb_data_dir_holds_its_own_dagster_instance(
    tmp_path: Path, lite_dataset: Path, redis_url: str
) -> None:
    """Two data folders, no DAGSTER_HOME: what one materialized is not seen by the other."""
    import tempfile

    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=3)
    base = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}

    def env_for(name: str, sockets: str) -> dict:
        return {
            **base,
            **platform_env(tmp_path / name, dataset, redis_url, launcher="subprocess"),
            "CB_FORKSERVER_SOCKET": str(Path(sockets) / "fs.sock"),  # private (0700), short
        }

    def missing(env: dict) -> list[str]:
        dry = run_cli(["backfill", "--missing", "--dry-run"], env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        return [line.split()[1] for line in dry.stdout.splitlines() if line.startswith("  missing")]

    with tempfile.TemporaryDirectory(prefix="cbt-", dir="/tmp") as sockets:
        first = run_cli(
            ["materialize", "--pairs", "1", "--settings", "solo", "--images", "no"],
            env_for("a", sockets),
        )
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"instance {tmp_path / 'a' / 'data' / 'dagster'}," in first.stdout
        assert (tmp_path / "a" / "data" / "dagster" / "storage").is_dir()
        assert len(missing(env_for("a", sockets))) == 8  # 3 pairs x 3 settings, one done here
        assert len(missing(env_for("b", sockets))) == 9  # ... and nothing done there
        assert (tmp_path / "b" / "data" / "dagster" / "storage").is_dir()


def test_a_config_error_stops_further_batches(monkeypatch, capsys) -> None:
    """After a batch fails with `config_error: …`, no further batch is launched."""
    import dagster as dg

    from cb_assets.cli import launch
    from cb_assets.shared.partition_keys import Arm, partition_key

    pairs = ["dspy_task-8394-f1_f2", "dspy_task-8394-f3_f4"]
    arms = [Arm("oracle", s, 1).key for s in ("solo", "coop-comm", "coop-nocomm")]
    keys = [partition_key(arm, p) for arm in arms for p in pairs]
    launched: list[list[str]] = []
    cause = "config_error: llm-auth: AuthenticationError: Incorrect API key provided: sk-***"

    class Location:  # submits nothing anywhere: the follower below answers for the runs
        def submit(self, job: str, tags: dict) -> str:
            return f"run-{len(launched)}"

    class Follower:
        def __init__(self, instance, asset, keys) -> None:
            self.failed: dict[str, str] = {}
            self._runs: dict[str, list[str]] = {}

        def add(self, run_id: str, batch: list[str]) -> None:
            launched.append(batch)
            self._runs[run_id] = batch

        @property
        def active(self) -> int:
            return len(self._runs)

        running = active

        def run_ids(self) -> list[str]:
            return list(self._runs)

        def poll(self) -> list[str]:
            reasons = []
            for batch in self._runs.values():
                for key in batch:
                    self.failed[key] = f"dagster._core.definitions.events.Failure: {cause}"
                    reasons.append(self.failed[key])
            self._runs.clear()
            return reasons

    monkeypatch.setattr(launch, "RunFollower", Follower)
    monkeypatch.setattr(launch, "POLL_SECONDS", 0)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("pairs", pairs)
        instance.add_dynamic_partitions("arms", arms)
        failed = launch.materialize_partitions(Location(), instance, keys, concurrency=1)
    assert launched == [keys[:2]] and failed == keys[:2]
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {cause} — stopped launching after it (4 partitions not run)")


REEXECUTE = """
mutation($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUNS = """
{ runsOrError { ... on Runs { results {
    runId jobName status repositoryOrigin { repositoryLocationName repositoryName }
} } } }
"""


def test_main_job_runs_are_reexecutable_from_the_ui(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    """Every run the main job created belongs to the code location the UI serves: the
    webserver lists it with its repository origin and re-executes it, and the daemon runs
    the re-execution to success."""
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=1)
    env = cli_env(tmp_path, dataset, redis_url, fork_socket)
    proc = run_cli(["materialize", "--settings", "solo", "--images", "no"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env["DAGSTER_HOME"] = str(home_of(tmp_path))

    with webserver(env, tmp_path / "webserver.log") as base:
        runs = graphql(base, RUNS)["data"]["runsOrError"]["results"]
        assert {r["jobName"] for r in runs} == {"register_pairs", "run_pairs", "refresh_reports"}
        for run in runs:
            assert run["repositoryOrigin"] == {
                "repositoryLocationName": "cb_assets.definitions",
                "repositoryName": "__repository__",
            }, run
        parent = next(r["runId"] for r in runs if r["jobName"] == "run_pairs")
        answer = graphql(base, REEXECUTE, {"parent": parent})
        launched = answer["data"]["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child = launched["run"]["runId"]
    daemon = start_daemon(env, tmp_path / "daemon.log")
    try:
        with dg.DagsterInstance.from_config(str(home_of(tmp_path))) as instance:

            def child_ended():
                run = instance.get_run_by_id(child)
                return run if run.is_finished else None

            run = wait_for(child_ended, 240, "the re-executed run")
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert run.parent_run_id == parent and run.job_name == "run_pairs"
    finally:
        stop_daemon(daemon)


def test_killing_a_run_worker_ends_the_command_with_that_failure(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    """A run worker SIGKILLed mid-run (OOM, a careless kill) reports nothing; the command
    notices, marks the run failed, prints the partition as failed and ends."""
    import signal

    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=1)
    env = cli_env(tmp_path, dataset, redis_url, fork_socket, CB_OFFLINE_AGENT_DELAY="120")
    args = ["materialize", "--settings", "solo", "--images", "no"]
    command = subprocess.Popen(
        [sys.executable, "-m", "cb_assets.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        home = home_of(tmp_path)
        for line in command.stdout:  # the instance's storage exists once the pairs are in:
            seen.append(line)  # opening it earlier races the command creating its schema
            if "run_results partitions" in line:
                break

        def worker_pid():
            with dg.DagsterInstance.from_config(str(home)) as instance:
                runs = instance.get_runs(dg.RunsFilter(job_name="run_pairs"))
                started = [r for r in runs if r.status == dg.DagsterRunStatus.STARTED]
                return int(started[0].tags["cb_assets/pid"]) if started else None

        pid = wait_for(worker_pid, 180, "the pair-run's run worker")
        time.sleep(2)  # inside the agent's 120 s
        os.kill(pid, signal.SIGKILL)
        out, err = command.communicate(timeout=90)  # well before the agent would finish
        out = "".join(seen) + out
    finally:
        command.kill()
    assert command.returncode == 1, out + err
    [line] = [x for x in out.splitlines() if " FAIL " in x]
    assert f"(pid {pid}) died without reporting" in line, out
    assert "0/1 partitions materialized" in out


def test_runs_through_a_running_daemon_keep_the_commands_settings(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    """A daemon started with one experiment registry and experiment, a command run with
    another: the command's runs go through the daemon's queue and still run the command's
    experiment and agent (its resource configuration travels with each run as run config)."""
    from cb_assets.cli.dispatch import daemon_running
    from cb_assets_tests.support.daemon import daemon_env

    env, home, _ = daemon_env(tmp_path, lite_dataset, redis_url, fork_socket, n_pairs=1)
    instance = dg.DagsterInstance.from_config(str(home))  # its storage, before the daemon's
    daemon = start_daemon(env, tmp_path / "daemon.log")  # shipped registry, experiment oracle
    registry = write_registry(
        tmp_path / "mine" / "experiments.yaml", {"name": "mine", "agent": "noop", "model": "noop"}
    )
    try:
        wait_for(lambda: daemon_running(instance), 180, "the daemon's heartbeat")
        mine = {**env, "CB_EXPERIMENTS": str(registry), "CB_EXPERIMENT": "mine"}
        proc = run_cli(["materialize", "--settings", "solo", "--images", "no"], mine)
        assert "the running Dagster daemon's run queue" in proc.stdout, proc.stdout
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        stop_daemon(daemon)
    with duckdb.connect(str(tmp_path / "data" / "cooperbench.duckdb"), read_only=True) as conn:
        rows = conn.execute("select run_name, agent_framework from run_results").fetchall()
    assert rows == [("mine-solo", "noop")], rows
    with duckdb.connect(str(tmp_path / "data" / "cooperbench.duckdb"), read_only=True) as conn:
        arms = conn.execute("select distinct experiment, arm from run_results").fetchall()
    assert arms == [("mine", "mine/solo")]
