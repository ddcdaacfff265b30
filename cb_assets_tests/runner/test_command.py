import json
from pathlib import Path

from cb_assets.runner.command import RunSpec, pair_log_dir, run_argv
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm

SPEC = RunSpec(
    agent="oracle",
    model="oracle",
    dataset_dir=Path("/ds"),
    logs_dir=Path("/logs"),
    redis_url="redis://127.0.0.1:7000",
)
PAIR = Pair("dspy_task", 8394, 3, 4)


def test_argv_selects_exactly_one_pair() -> None:
    argv = run_argv(SPEC, PAIR, Arm("exp", "solo"))
    for flag, value in [
        ("-r", "dspy_task"),
        ("-t", "8394"),
        ("-f", "3,4"),
        ("--setting", "solo"),
        ("--log-dir", "/logs"),
        ("--dataset-dir", "/ds"),
        ("--name", "exp-solo"),
    ]:
        assert argv[argv.index(flag) + 1] == value
    assert "--no-auto-eval" in argv and "--force" not in argv


def test_only_coop_nocomm_disables_messaging() -> None:
    assert "--no-messaging" not in run_argv(SPEC, PAIR, Arm("exp", "coop-comm"))
    assert "--no-messaging" in run_argv(SPEC, PAIR, Arm("exp", "coop-nocomm"))
    assert "--force" in run_argv(SPEC, PAIR, Arm("exp", "coop-nocomm"), force=True)


def test_coop_settings_never_share_a_log_tree() -> None:
    comm = pair_log_dir(SPEC.logs_dir, PAIR, Arm("exp", "coop-comm"))
    nocomm = pair_log_dir(SPEC.logs_dir, PAIR, Arm("exp", "coop-nocomm"))
    assert comm == Path("/logs/exp-coop-comm/coop/dspy_task/8394/f3_f4")
    assert nocomm == Path("/logs/exp-coop-nocomm/coop/dspy_task/8394/f3_f4")


def test_repeats_and_experiments_never_share_a_log_tree() -> None:
    dirs = {
        pair_log_dir(SPEC.logs_dir, PAIR, arm)
        for arm in (Arm("exp", "solo"), Arm("exp", "solo", 2), Arm("other", "solo"))
    }
    assert dirs == {
        Path("/logs/exp-solo/solo/dspy_task/8394/f3_f4"),
        Path("/logs/exp-solo-r2/solo/dspy_task/8394/f3_f4"),
        Path("/logs/other-solo/solo/dspy_task/8394/f3_f4"),
    }
    argv = run_argv(SPEC, PAIR, Arm("exp", "coop-git", 3))
    assert argv[argv.index("--name") + 1] == "exp-coop-git-r3"
    assert argv[argv.index("--setting") + 1] == "coop" and "--git" in argv


def test_team_flags_reach_team_arms_only() -> None:
    from dataclasses import replace

    spec = replace(SPEC, team_flags=("--team-no-mcp",))
    assert "--team-no-mcp" in run_argv(spec, PAIR, Arm("exp", "team"))
    assert "--team-no-mcp" not in run_argv(spec, PAIR, Arm("exp", "coop-comm"))


def test_backend_is_passed_through() -> None:
    from dataclasses import replace

    argv = run_argv(replace(SPEC, backend="modal"), PAIR, Arm("exp", "solo"))
    assert argv[argv.index("--backend") + 1] == "modal"


REDIS_WITH_PASSWORD = "redis://:hunter2-redis-pw@127.0.0.1:7000"


def test_the_redis_url_is_not_on_the_command_line() -> None:
    from dataclasses import replace

    from cb_assets.runner.command import run_env

    spec = replace(SPEC, redis_url=REDIS_WITH_PASSWORD)
    for setting in ("solo", "coop-comm", "coop-nocomm"):
        argv = run_argv(spec, PAIR, Arm("exp", setting))
        assert "--redis" not in argv and not any("hunter2" in a for a in argv)
    assert run_env(spec) == {"CB_REDIS_URL": REDIS_WITH_PASSWORD}


def test_the_wrapped_cli_hands_upstream_the_redis_url_from_the_environment() -> None:
    from cb_assets.runner.command import upstream_argv

    argv = run_argv(SPEC, PAIR, Arm("exp", "coop-comm"))
    assert upstream_argv(argv, REDIS_WITH_PASSWORD) == [*argv, "--redis", REDIS_WITH_PASSWORD]
    assert upstream_argv(argv, None) == argv  # unset: upstream's own default
    given = [*argv, "--redis", "redis://elsewhere:1"]
    assert upstream_argv(given, REDIS_WITH_PASSWORD) == given  # an explicit --redis wins
    assert upstream_argv(["eval", "--name", "x"], REDIS_WITH_PASSWORD) == ["eval", "--name", "x"]


def _redis_with_password(workdir: Path, password: str):
    import shutil
    import subprocess
    import time

    import redis

    from cb_assets_tests.support.services import free_port, require

    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--requirepass", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://:{password}@127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.from_url(url).ping()
            return url, proc
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def _cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
    return {pid: line.decode(errors="replace") for pid, line in found.items()}


def test_a_launched_pair_run_shows_no_redis_password_in_proc_cmdline(
    tmp_path: Path, lite_dataset: Path, monkeypatch
) -> None:
    """A real coop-comm pair-run, launched as a fresh process (CB_LAUNCHER=subprocess), against
    a Redis that needs a password: the password is in no process's /proc/<pid>/cmdline while
    it runs, and the agents still talk through that Redis."""
    import threading
    import time

    from cb_assets.config import PROJECT_ROOT
    from cb_assets.defs.benchmark.resources import BenchmarkDataset
    from cb_assets.defs.experiments.resources import ExperimentRegistry
    from cb_assets.defs.runs.resources import CooperBenchRunner
    from cb_assets_tests.support.synthetic import make_subset_dataset

    password = "pw-7d1c9e3a5b"
    url, redis_proc = _redis_with_password(tmp_path, password)
    try:
        dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=1)
        pair = BenchmarkDataset(dataset_dir=str(dataset), subset="test").pairs()[0]
        runner = CooperBenchRunner(
            dataset=BenchmarkDataset(dataset_dir=str(dataset), subset="test"),
            logs_dir=str(tmp_path / "logs"),
            redis_url=url,
            launcher="subprocess",
        )
        monkeypatch.setenv("CB_OFFLINE_AGENT_DELAY", "2")
        monkeypatch.delenv("CB_REDIS_URL", raising=False)
        arm = Arm("oracle", "coop-comm")
        experiment = ExperimentRegistry(path=str(PROJECT_ROOT / "experiments.yaml")).get("oracle")
        outcome = {}
        worker = threading.Thread(
            target=lambda: outcome.update(
                result=runner.run_pair(
                    pair, arm, experiment, force=True, log_path=tmp_path / "process.log"
                )
            )
        )
        worker.start()
        children, seen = set(), []
        while worker.is_alive():
            lines = _cmdlines()
            seen += [line for line in lines.values() if password in line]
            children |= {
                pid for pid, line in lines.items() if "cb_assets.agents.cli" in line and
                str(tmp_path / "logs") in line
            }  # fmt: skip
            time.sleep(0.05)
        worker.join()
        assert children, "never saw the cooperbench process"
        assert seen == []
        assert outcome["result"].exit_code == 0, (tmp_path / "process.log").read_text()[-3000:]
        result = json.loads(
            (runner.pair_dir(pair, arm) / "result.json").read_text(encoding="utf-8")
        )
        assert result["messages_sent"] == 2  # upstream got the URL, password and all
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def test_a_log_tail_never_starts_inside_a_line(tmp_path) -> None:
    """A cut through a key would leave a tail no scrubber recognises: tails start at a line."""
    from cb_assets.runner.outcome import LaunchResult
    from cb_assets.shared.secrets import scrub

    log = tmp_path / "run.log"
    key = "sk-canary-0123456789abcdef"
    log.write_text("x" * 5000 + f"\nIncorrect API key provided: {key}\n" + "y" * 10 + "\n")
    tail = LaunchResult(1, log).log_tail(max_chars=28)  # the cut falls inside the key
    assert "0123456789" not in scrub(tail, {"COHERE_API_KEY": key})
