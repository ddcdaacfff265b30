"""Pre-flight: the configuration is checked before the first pair-run, one line per problem."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cb_assets.config import PROJECT_ROOT, RETIRED, ConfigError
from cb_assets.defs.runs import preflight
from cb_assets_tests.support.platform import write_registry

OFFLINE = {"oracle", "noop", "flaky", "replay"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (
        *RETIRED,
        "CB_EXPERIMENT",
        "CB_EXPERIMENTS",
        "CB_FAILURE_PATTERNS",
        "CB_RETRY_DELAY_SECONDS",
        "CB_LAUNCHER",
        "CB_SENSOR_INTERVAL_SECONDS",
        "CB_REPORT_REFRESH_SECONDS",
        "COOPERBENCH_EXTERNAL_AGENTS",
    ):
        monkeypatch.delenv(var, raising=False)


def use_registry(monkeypatch, tmp_path: Path, *entries: dict, pick: str | None = None) -> Path:
    """A registry of `entries` in tmp_path, picked by CB_EXPERIMENTS (and CB_EXPERIMENT)."""
    path = write_registry(tmp_path / "experiments.yaml", *entries)
    monkeypatch.setenv("CB_EXPERIMENTS", str(path))
    if pick:
        monkeypatch.setenv("CB_EXPERIMENT", pick)
    return path


def test_the_default_configuration_passes() -> None:
    assert preflight.problems() == []
    preflight.check()


def test_known_agents_are_upstreams_and_ours_read_without_importing_cooperbench() -> None:
    code = (
        "import json, sys, time; t = time.monotonic(); from cb_assets.defs.runs import preflight; "
        "names, complete = preflight.known_agents([]); problems = preflight.problems(); "
        "print(json.dumps([sorted(names), complete, problems, time.monotonic() - t, "
        "sorted(m for m in ('cooperbench', 'dagster') if m in sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("CB_", "COOPERBENCH_"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    names, complete, problems, seconds, imported = json.loads(out.stdout)
    assert (complete, problems, imported) == (True, [], []), out.stderr
    assert seconds < 2
    from cooperbench.agents.registry import list_agents  # the truth, at its ~8 s price

    assert set(names) == set(list_agents()) | OFFLINE


def test_an_unknown_agent_is_one_line_naming_the_registry_key(monkeypatch, tmp_path) -> None:
    path = use_registry(
        monkeypatch, tmp_path,
        {"name": "oracle", "agent": "oracle", "model": "oracle"},
        {"name": "mine", "agent": "unknown_agent", "model": "m"},
        pick="mine",
    )  # fmt: skip
    [problem] = preflight.problems()
    assert problem.startswith(
        f"{path}: experiments.mine.agent='unknown_agent': unknown agent framework; expected one of"
    )
    assert "mini_swe_agent_v2" in problem and "oracle" in problem and "\n" not in problem
    with pytest.raises(ConfigError, match="experiments.mine.agent='unknown_agent'"):
        preflight.check()
    # the experiment asked for wins over CB_EXPERIMENT
    assert preflight.problems("oracle") == []
    preflight.check("oracle")
    for name in ("oracle", "flaky", "mini_swe_agent_v2", "codex"):
        assert preflight.agent_problem(name) is None


@pytest.mark.parametrize("var", sorted(RETIRED))
def test_a_retired_variable_says_where_its_setting_went(monkeypatch, var: str) -> None:
    monkeypatch.setenv(var, "oracle")
    [problem] = preflight.problems()
    assert problem.startswith(f"{var}='oracle': no longer read; set `{RETIRED[var]}:`")
    assert "experiments.yaml" in problem and "CB_EXPERIMENT" in problem
    with pytest.raises(ConfigError, match=var):
        preflight.check()


def test_an_unknown_experiment_and_a_broken_registry_are_problems(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CB_EXPERIMENT", "nope")
    [problem] = preflight.problems()
    assert "no experiment 'nope'" in problem and "oracle, noop, flaky" in problem
    path = tmp_path / "experiments.yaml"
    path.write_text("experiments:\n  - {name: a-b, agent: oracle, model: m}\n")
    monkeypatch.setenv("CB_EXPERIMENTS", str(path))
    [problem] = preflight.problems()
    assert problem.startswith(f"{path}: key 'experiments[0].name'")


def test_missing_secrets_and_agent_config_are_named_never_valued(monkeypatch, tmp_path) -> None:
    path = use_registry(
        monkeypatch, tmp_path,
        {"name": "real", "agent": "oracle", "model": "m", "secrets": ["CB_TEST_KEY_A"],
         "agent_config": str(tmp_path / "missing.yaml")},
    )  # fmt: skip
    monkeypatch.delenv("CB_TEST_KEY_A", raising=False)
    assert preflight.problems() == [
        f"{path}: experiments.real.agent_config: no file at {tmp_path / 'missing.yaml'}",
        f"{path}: experiments.real.secrets: CB_TEST_KEY_A is not set in the environment "
        "(its agent needs it)",
    ]
    monkeypatch.setenv("CB_TEST_KEY_A", "sk-value-never-shown")
    (tmp_path / "missing.yaml").write_text("{}")
    assert preflight.problems() == []


def test_external_agent_modules_are_read_without_importing_them(monkeypatch, tmp_path) -> None:
    package = tmp_path / "extpkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "agents.py").write_text(
        "from cooperbench.agents.registry import register\n\n"
        '@register("my_external")\nclass Mine:\n    pass\n'
    )
    (tmp_path / "dynamic_agents.py").write_text(
        "from cooperbench.agents import registry\nregistry.register(NAME)(object)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    monkeypatch.setenv("COOPERBENCH_EXTERNAL_AGENTS", "extpkg.agents, missing.module")
    assert preflight.agent_problem("my_external") is None
    use_registry(monkeypatch, tmp_path, {"name": "other", "agent": "other", "model": "m"})
    [problem] = preflight.problems()
    assert "COOPERBENCH_EXTERNAL_AGENTS modules: extpkg.agents, missing.module" in problem
    # a module that registers a computed name: the name cannot be checked, so it is let through
    monkeypatch.setenv("COOPERBENCH_EXTERNAL_AGENTS", "dynamic_agents")
    assert preflight.problems() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("not json", "JSONDecodeError"),
        ('[{"name": "x", "regex": "("}]', "pattern 'x'"),
    ],
)
def test_a_bad_failure_pattern_file_is_one_line_naming_it(
    monkeypatch, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "patterns.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("CB_FAILURE_PATTERNS", str(path))
    [problem] = preflight.problems()
    assert problem.startswith(f"CB_FAILURE_PATTERNS={str(path)!r}: ") and message in problem
    assert "\n" not in problem


def test_a_good_failure_pattern_file_passes(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "patterns.json"
    path.write_text(json.dumps([{"name": "quota", "regex": "quota exhausted"}]))
    monkeypatch.setenv("CB_FAILURE_PATTERNS", str(path))
    assert preflight.problems() == []


def test_every_problem_is_reported_at_once(monkeypatch, tmp_path) -> None:
    path = use_registry(monkeypatch, tmp_path, {"name": "x", "agent": "nope", "model": "m"})
    monkeypatch.setenv("CB_RETRY_DELAY_SECONDS", "abc")
    monkeypatch.setenv("CB_LAUNCHER", "fork")
    monkeypatch.setenv("CB_AGENT", "nope")
    found = preflight.problems()
    assert [p.split("=")[0] for p in found] == [
        "CB_AGENT", "CB_LAUNCHER", "CB_RETRY_DELAY_SECONDS", f"{path}: experiments.x.agent"
    ]  # fmt: skip


def test_a_fork_server_directory_others_can_use_is_a_preflight_problem(
    tmp_path, monkeypatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("CB_LAUNCHER", "forkserver")
    monkeypatch.setenv("CB_FORKSERVER_SOCKET", str(shared / "fork.sock"))
    problem = preflight.forkserver_problem()
    assert problem is not None and str(shared) in problem and "0o777" in problem
    shared.chmod(0o700)
    assert preflight.forkserver_problem() is None
