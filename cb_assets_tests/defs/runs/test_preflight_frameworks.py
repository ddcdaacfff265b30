"""Pre-flight for agent frameworks: the credentials and tools upstream's adapters need are
named, one line each, before any pair-run starts."""

import json
from pathlib import Path

import pytest

from cb_assets.defs.runs import preflight
from cb_assets.shared.experiments import Experiment

REGISTRY = Path("/reg/experiments.yaml")
WHERE = f"{REGISTRY}: experiments.x"
CREDENTIALS = sorted(
    {
        name
        for table in (preflight.FRAMEWORK_CREDENTIALS, preflight.PROVIDER_CREDENTIALS)
        for alternatives in table.values()
        for names in alternatives
        for name in names
    }
)


@pytest.fixture(autouse=True)
def bare_host(monkeypatch, tmp_path: Path) -> Path:
    """No credential set, nobody logged in to Claude, a docker CLI on PATH."""
    for name in (*CREDENTIALS, "MSWEA_DOCKER_EXECUTABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return tmp_path


def problems(agent: str, model: str = "m", **kw) -> list[str]:
    return preflight.experiment_problems(Experiment("x", agent, model, **kw), REGISTRY)


def test_claude_code_needs_an_anthropic_credential(monkeypatch, bare_host: Path) -> None:
    assert problems("claude_code", "claude-sonnet-4-6") == [
        f"{WHERE}.agent: claude_code needs ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN, or "
        "ANTHROPIC_AUTH_TOKEN, or ANTHROPIC_BASE_URL, or a `claude login` "
        "(~/.claude/.credentials.json)) set in the environment (not set)"
    ]
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, "sk-value-never-shown")
        assert problems("claude_code") == []
        monkeypatch.delenv(name)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  ")  # blank is not set
    assert len(problems("claude_code")) == 1
    login = bare_host / "home" / ".claude" / ".credentials.json"
    login.parent.mkdir(parents=True)
    login.write_text(json.dumps({"claudeAiOauth": {"accessToken": "tok"}}))
    assert problems("claude_code") == []


def test_codex_needs_an_openai_key_or_both_azure_variables(monkeypatch) -> None:
    expected = [
        f"{WHERE}.agent: codex needs OPENAI_API_KEY (or AZURE_OPENAI_API_KEY and "
        "AZURE_OPENAI_ENDPOINT) set in the environment (not set)"
    ]
    assert problems("codex", "gpt-5") == expected
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    assert problems("codex", "gpt-5") == expected  # half of Azure is not Azure
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.com/openai/v1")
    assert problems("codex", "gpt-5") == []


@pytest.mark.parametrize(
    ("model", "variable"),
    [
        ("openai/gpt-4o", "OPENAI_API_KEY"),
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("gemini/gemini-2.5-pro", "GEMINI_API_KEY"),
        ("cohere/command-a-03-2025", "COHERE_API_KEY"),
        ("command-a-03-2025", "COHERE_API_KEY"),
        ("gpt-4o", "OPENAI_API_KEY"),
    ],
)
def test_mini_swe_agent_needs_the_key_of_its_models_provider(
    monkeypatch, model: str, variable: str
) -> None:
    [line] = problems("mini_swe_agent_v2", model)
    assert line.startswith(f"{WHERE}.agent: mini_swe_agent_v2 needs {variable} ")
    assert line.endswith(f"set in the environment for model {model} (not set)")
    assert "model.model_kwargs.api_key in its agent_config" in line
    monkeypatch.setenv(variable, "sk-value-never-shown")
    assert problems("mini_swe_agent_v2", model) == []


def test_an_api_key_in_the_agent_config_needs_no_variable(tmp_path: Path) -> None:
    for text in (
        "model:\n  model_kwargs:\n    api_key: sk-local\n",
        "config:\n  model:\n    model_kwargs:\n      api_key: sk-local\n",
    ):
        path = tmp_path / "agent.yaml"
        path.write_text(text)
        assert problems("mini_swe_agent_v2", "openai/qwen", agent_config=str(path)) == []
    path.write_text("model:\n  model_kwargs:\n    api_base: http://localhost:8000/v1\n")
    [line] = problems("mini_swe_agent_v2", "openai/qwen", agent_config=str(path))
    assert "needs OPENAI_API_KEY" in line


def test_azure_serves_every_litellm_model(monkeypatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "k")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://x.openai.azure.com/openai/v1")
    assert problems("mini_swe_agent_v2", "anthropic/claude-sonnet-4-5") == []
    assert problems("swe_agent", "gpt-4o") == []


def test_an_unknown_provider_and_a_key_the_experiment_lists_are_not_checked_twice() -> None:
    assert problems("mini_swe_agent_v2", "vertex_ai/gemini-2.5-pro") == []
    assert problems("mini_swe_agent_v2", "hosted_vllm/qwen") == []
    assert problems("mini_swe_agent_v2", "openai/gpt-4o", secrets=("OPENAI_API_KEY",)) == [
        f"{WHERE}.secrets: OPENAI_API_KEY is not set in the environment (its agent needs it)"
    ]


@pytest.mark.parametrize("agent", ["oracle", "noop", "flaky"])
def test_offline_agents_need_nothing(monkeypatch, agent: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert problems(agent) == []


def test_the_docker_backend_needs_the_docker_cli(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-value-never-shown")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert problems("codex", "gpt-5") == [
        f"{WHERE}.backend: docker needs the docker CLI on PATH (not found)"
    ]
    assert problems("codex", "gpt-5", backend="gcp") == []


def test_openhands_sdk_needs_a_key_and_the_modal_backend() -> None:
    found = problems("openhands_sdk", "anthropic/claude-sonnet-4-5")
    assert found == [
        f"{WHERE}.agent: openhands_sdk needs GEMINI_API_KEY (or ANTHROPIC_API_KEY, or "
        "OPENAI_API_KEY, or AZURE_OPENAI_API_KEY and AZURE_OPENAI_ENDPOINT, or "
        "GOOGLE_APPLICATION_CREDENTIALS, or VERTEXAI_PROJECT) set in the environment (not set)",
        f"{WHERE}.backend: openhands_sdk needs backend modal ('docker': cooperbench eval "
        "refuses to evaluate its runs anywhere else)",
    ]


def test_no_line_shows_a_value(monkeypatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "sk-value-never-shown")
    assert not any("never-shown" in line for line in problems("codex", "gpt-5"))


def test_the_registry_reports_them_with_everything_else(monkeypatch, tmp_path: Path) -> None:
    from cb_assets_tests.support.platform import write_registry

    path = write_registry(
        tmp_path / "experiments.yaml",
        {"name": "cc", "agent": "claude_code", "model": "claude-sonnet-4-6"},
    )
    monkeypatch.setenv("CB_EXPERIMENTS", str(path))
    monkeypatch.delenv("CB_EXPERIMENT", raising=False)
    assert preflight.registry_problems() == [
        f"{path}: experiments.cc.agent: claude_code needs ANTHROPIC_API_KEY (or "
        "CLAUDE_CODE_OAUTH_TOKEN, or ANTHROPIC_AUTH_TOKEN, or ANTHROPIC_BASE_URL, or a "
        "`claude login` (~/.claude/.credentials.json)) set in the environment (not set)"
    ]
