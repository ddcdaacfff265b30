"""The rules real failures called for: a sandbox that never started, an agent that died
without a word, an unreachable Docker engine, a 429 that is only a number, and what
`cooperbench eval` prints when it writes no eval.json."""

import pytest

from cb_assets.shared.failures import (
    AGENT_ERROR,
    CONFIG_ERROR,
    INFRA_ERROR,
    classify,
    classify_text,
    eval_refusal,
)

DOCKER_RUN_125 = (
    "Command '['docker', 'run', '-d', '--name', 'minisweagent-1a2b3c4d', '-w', "
    "'/workspace/repo', '--entrypoint', '/bin/bash', '--rm', "
    "'akhatua/cooperbench-typst:task6554', '-c', 'sleep 2h']' returned non-zero exit status 125."
)
DOCKER_PY_NO_ENGINE = (
    "docker.errors.DockerException: Error while fetching server API version: "
    "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
)


def coop(*agents: tuple[str, str | None]) -> dict:
    return {
        "setting": "coop",
        "agents": {f"agent{i}": {"status": s, "error": e} for i, (s, e) in enumerate(agents, 1)},
    }


def verdict(result: dict | None, exit_code: int | None = 0, log: str = ""):
    return classify(exit_code=exit_code, timed_out=False, log_text=log, result=result)


@pytest.mark.parametrize(
    "error",
    [
        DOCKER_RUN_125,
        # claude_code and codex start theirs through the same DockerEnvironment, with more
        # run args (a host mapping, a network) and a configured executable
        "Command '['/usr/bin/docker', 'run', '-d', '--name', 'minisweagent-0f0f0f0f', '-w', "
        "'/workspace/repo', '--entrypoint', '/bin/bash', '--network', 'cb-git-1', '--rm', "
        "'--add-host=host.docker.internal:host-gateway', 'akhatua/cooperbench-dspy:task8394', "
        "'-c', 'sleep 7200']' returned non-zero exit status 1.",
        "Command '['docker', 'run', '-d', '--name', 'minisweagent-9', '--rm', "
        "'akhatua/cooperbench-pillow:task25', '-c', 'sleep 2h']' timed out after 120 seconds",
        "Agent-server did not become ready within 120s. Last error: ConnectError(...)",
    ],
)
def test_a_sandbox_that_never_started_is_infra_and_says_so(error: str) -> None:
    v = verdict(coop(("Submitted", None), ("Error", error)))
    assert (v.classification, v.rule, v.retryable) == (INFRA_ERROR, "sandbox-start", True)
    assert classify_text(error).name == "sandbox-start"


def test_a_docker_command_the_agent_ran_inside_its_sandbox_is_not_a_sandbox_start() -> None:
    error = "Command '['git', 'apply', 'patch.txt']' returned non-zero exit status 1."
    assert verdict(coop(("Error", error), ("Submitted", None))).classification == AGENT_ERROR


@pytest.mark.parametrize("error", [None, "", "   \n"])
def test_an_agent_error_without_text_is_an_infra_error_retried(error: str | None) -> None:
    v = verdict(coop(("Submitted", None), ("Error", error)))
    assert (v.classification, v.rule, v.retryable) == (INFRA_ERROR, "agent-error-empty", True)
    both = verdict(coop(("Error", error), ("Error", error)))
    assert (both.classification, both.rule) == (INFRA_ERROR, "agent-error-empty")


def test_an_empty_error_masks_neither_a_config_error_nor_a_named_infra_error() -> None:
    v = verdict(coop(("Error", None), ("Error", "litellm.AuthenticationError: invalid x-api-key")))
    assert (v.classification, v.rule) == (CONFIG_ERROR, "llm-auth")
    v = verdict(coop(("Error", ""), ("Error", DOCKER_RUN_125)))
    assert (v.classification, v.rule) == (INFRA_ERROR, "sandbox-start")
    v = verdict(coop(("Error", DOCKER_RUN_125), ("Error", "")))
    assert (v.classification, v.rule) == (INFRA_ERROR, "sandbox-start")
    # and an agent's own failure does not hide that its partner's process died
    v = verdict(coop(("Error", "ValueError: bad action"), ("Error", None)))
    assert (v.classification, v.rule) == (INFRA_ERROR, "agent-error-empty")


@pytest.mark.parametrize(
    "text",
    [
        DOCKER_PY_NO_ENGINE,
        # what an evaluation's log holds when no engine answers: a traceback full of numbers
        "2026-07-03 00:05:56,429 INFO evaluating pallets_click_task/2956 [3,6] on port 4290\n"
        "Traceback (most recent call last):\n"
        '  File "/app/.venv/lib/python3.12/site-packages/docker/api/client.py", line 429, '
        "in _retrieve_server_version\n"
        '  File "/app/.venv/lib/python3.12/site-packages/urllib3/connectionpool.py", line 502, '
        "in _make_request (server 7f429a0c)\n"
        f"{DOCKER_PY_NO_ENGINE}\n",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?",
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/info"',
    ],
)
def test_an_unreachable_docker_engine_is_named_before_any_llm_rule(text: str) -> None:
    assert classify_text(text).name == "docker-unreachable"
    v = verdict(None, exit_code=1, log=text)
    assert (v.classification, v.rule) == (INFRA_ERROR, "docker-unreachable")


@pytest.mark.parametrize(
    "text",
    [
        'File "/app/cooperbench/eval/sandbox.py", line 429, in test_merged',
        "logs/oracle-coop-comm-r1/coop/pallets_click_task/429/f1_f2/eval.json",
        "listening on 127.0.0.1:429 and 0.0.0.0:4290",
        "container 429f0e1c2d3b exited",
        "started at 2026-07-03T00:05:56.429",
        "task429 feature 429 took 429 seconds",
    ],
)
def test_a_429_that_is_only_a_number_is_not_a_rate_limit(text: str) -> None:
    assert classify_text(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "litellm.RateLimitError: 429 Too Many Requests",
        "Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error'}}",
        "HTTP/1.1 429",
        "status_code=429",
        '{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}',
        "anthropic: rate limit exceeded, retry later",
    ],
)
def test_a_429_that_a_status_word_introduces_is_a_rate_limit(text: str) -> None:
    assert classify_text(text).name == "llm-rate-limit"


def test_a_traceback_line_number_is_not_a_server_error() -> None:
    text = 'File "/app/urllib3/connectionpool.py", line 503, in _retrieve_server_version'
    assert classify_text(text) is None
    assert classify_text("503 Service Unavailable").name == "llm-server-error"


def test_codex_without_any_key_is_a_config_error() -> None:
    error = (
        "no codex credentials (OPENAI_API_KEY or AZURE_OPENAI_API_KEY+AZURE_OPENAI_ENDPOINT) set"
    )
    v = verdict(coop(("Error", error), ("Error", error)))
    assert (v.classification, v.rule, v.stops_experiment) == (
        CONFIG_ERROR,
        "llm-credentials-missing",
        True,
    )


# What upstream 0.0.29's `cooperbench eval` printed (through rich, at 80 columns) when it
# wrote no eval.json, captured from the real command.
OPENHANDS_ON_DOCKER = (
    "warning: run ohrun was produced by agent_framework=openhands_sdk, which requires\n"
    "--backend modal. Refusing to evaluate with --backend docker. Rerun with \n"
    "--backend modal.\n"
)


@pytest.mark.parametrize(
    ("log", "name", "config", "said"),
    [
        (
            OPENHANDS_ON_DOCKER,
            "eval-backend-refused",
            True,
            "agent_framework=openhands_sdk, which requires --backend modal. "
            "Refusing to evaluate with --backend docker",
        ),
        (
            "04:03:45 - LiteLLM:WARNING: model cost map fetch failed\nno runs found to evaluate\n",
            "eval-no-runs",
            False,
            "no runs found to evaluate",
        ),
    ],
)
def test_what_eval_prints_when_it_writes_nothing_for_good(
    log: str, name: str, config: bool, said: str
) -> None:
    refusal, text = eval_refusal(log)
    assert (refusal.name, refusal.config, text) == (name, config, said)


@pytest.mark.parametrize(
    "log",
    [
        DOCKER_PY_NO_ENGINE,
        "subprocess.TimeoutExpired: Command 'docker exec' timed out after 600 seconds",
        "all runs already evaluated",
        "",
    ],
)
def test_transient_eval_failures_are_no_refusal(log: str) -> None:
    assert eval_refusal(log) is None
