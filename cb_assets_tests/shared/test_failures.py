import json
from pathlib import Path

import pytest

from cb_assets.shared.failures import (
    AGENT_ERROR,
    CONFIG_ERROR,
    INFRA_ERROR,
    LIMITS_EXCEEDED,
    SUBMITTED,
    classify,
    config_error_cause,
    config_error_text,
    load_patterns,
)


def solo(status: str, error: str | None = None) -> dict:
    return {"setting": "solo", "agent": {"status": status, "error": error}}


def coop(*agents: tuple[str, str | None]) -> dict:
    return {
        "setting": "coop",
        "agents": {f"agent{i}": {"status": s, "error": e} for i, (s, e) in enumerate(agents, 1)},
    }


def verdict(result: dict | None, exit_code: int | None = 0, log: str = "", timed_out=False, **kw):
    return classify(exit_code=exit_code, timed_out=timed_out, log_text=log, result=result, **kw)


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        ("litellm.RateLimitError: 429 Too Many Requests", "llm-rate-limit"),
        ("litellm.InternalServerError: 500 Internal Server Error", "llm-server-error"),
        ("502 Bad Gateway from upstream", "llm-server-error"),
        ("litellm.ServiceUnavailableError: 503 Service Unavailable", "llm-server-error"),
        ("504 Gateway Timeout", "llm-server-error"),
        ("ConnectionResetError: [Errno 104] Connection reset by peer", "connection"),
        ("ConnectionRefusedError: [Errno 111] Connection refused", "connection"),
        ("docker.errors.APIError: container abc was OOMKilled", "docker-oom"),
        ("docker.errors.ImageNotFound: No such image: akhatua/x:task1", "image-pull"),
        ("Error response from daemon: pull access denied for akhatua/x", "image-pull"),
        ("failed to create container: no space left", "container-start"),
        ("redis.exceptions.ConnectionError: Error 111 connecting to localhost:6379", "redis"),
        ("command timed out after 600 seconds", "timeout"),
    ],
)
def test_infrastructure_errors_in_result_json_are_infra(error: str, rule: str) -> None:
    v = verdict(coop(("Submitted", None), ("Error", error)))
    assert (v.classification, v.rule) == (INFRA_ERROR, rule)
    assert v.retryable and error[:40] in v.detail


def test_agent_failing_on_its_own_merits_is_not_retried() -> None:
    v = verdict(solo("Error", "ValueError: could not parse the model's action"))
    assert (v.classification, v.rule, v.retryable) == (AGENT_ERROR, "agent-status-error", False)


def test_statuses_without_error() -> None:
    assert verdict(solo("Submitted")).classification == SUBMITTED
    assert (
        verdict(coop(("Submitted", None), ("LimitsExceeded", None))).classification
        == LIMITS_EXCEEDED
    )
    assert verdict(solo("Weird")).rule == "agent-status-other"


def test_process_failures_are_infra() -> None:
    assert verdict(None, exit_code=137).rule == "runner-crash"
    assert verdict(None, exit_code=1, log="Traceback…\nConnection refused").rule == "connection"
    assert verdict(solo("Submitted"), timed_out=True).rule == "runner-timeout"
    assert verdict(None, exit_code=0).classification == INFRA_ERROR  # exited 0, wrote nothing


def test_ingested_result_is_classified_from_the_file_alone() -> None:
    assert verdict(solo("Submitted"), exit_code=None).classification == SUBMITTED


def test_user_patterns_extend_and_take_precedence(tmp_path: Path) -> None:
    path = tmp_path / "patterns.json"
    path.write_text(
        json.dumps(
            [
                {"name": "quota", "regex": r"quota exhausted"},
                {
                    "name": "bad-tool",
                    "regex": r"Connection refused by the tool",
                    "classification": "agent_error",
                },
            ]
        )
    )
    patterns = load_patterns(path)
    assert verdict(solo("Error", "provider quota exhausted"), patterns=patterns).rule == "quota"
    v = verdict(solo("Error", "Connection refused by the tool sandbox"), patterns=patterns)
    # a user pattern overrides the built-in one that would call this infra_error
    assert (v.classification, v.rule, v.retryable) == (AGENT_ERROR, "bad-tool", False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "failure pattern file"),
        ('[{"name": "x"}]', "KeyError"),
        ('[{"name": "x", "regex": "("}]', "pattern 'x'"),
        ('[{"name": "x", "regex": "a", "classification": "submitted"}]', "use infra_error"),
    ],
)
def test_bad_pattern_files_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "patterns.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_patterns(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "error",
    [
        "litellm.AuthenticationError: OpenAIException - Incorrect API key provided: sk-canary-7f3",
        "litellm.AuthenticationError: AnthropicException - invalid x-api-key",
        "Error code: 401 - {'error': {'message': 'Unauthorized'}}",
        "HTTP 401 Unauthorized",
        "cohere.errors.UnauthorizedError: status_code: 401, invalid api token",
        "API key not valid. Please pass a valid API key.",
    ],
)
def test_a_rejected_api_key_is_a_config_error_that_stops_the_experiment(error: str) -> None:
    v = verdict(solo("Error", error))
    assert (v.classification, v.rule) == (CONFIG_ERROR, "llm-auth")
    assert not v.retryable and not v.is_result and v.stops_experiment


def test_a_config_error_wins_over_an_infra_error_of_the_partner() -> None:
    v = verdict(coop(("Error", "503 Service Unavailable"), ("Error", "Incorrect API key provided")))
    assert (v.classification, v.rule) == (CONFIG_ERROR, "llm-auth")


def test_a_crash_on_a_rejected_key_is_a_config_error_and_a_traceback_line_401_is_not() -> None:
    log = "Traceback…\nlitellm.exceptions.AuthenticationError: invalid x-api-key\n"
    v = verdict(None, exit_code=1, log=log)
    assert (v.classification, v.rule) == (CONFIG_ERROR, "llm-auth")
    assert "invalid x-api-key" in v.detail
    crash = verdict(None, exit_code=1, log='File "adapter.py", line 401, in authenticate\n')
    assert (crash.classification, crash.rule) == (INFRA_ERROR, "runner-crash")
    redis = verdict(None, exit_code=1, log="redis.exceptions.AuthenticationError: invalid password")
    assert (redis.classification, redis.rule) == (CONFIG_ERROR, "redis-auth")


def test_results_and_retries_are_not_config_errors() -> None:
    assert verdict(solo("Submitted")).is_result
    assert not verdict(solo("Submitted")).stops_experiment
    assert not verdict(None, exit_code=137).stops_experiment


def test_the_config_error_line_is_scrubbed_and_read_back_through_dagsters_prefix() -> None:
    v = verdict(solo("Error", "AuthenticationError: Incorrect API key provided: sk-canary-7f3a9"))
    text = config_error_text(v)
    assert text.startswith("config_error: llm-auth: ") and "sk-canary" not in text
    assert config_error_cause(text) == text
    assert config_error_cause(f"dagster._core.definitions.events.Failure: {text}\n") == text
    assert config_error_cause("infra_error on attempt 3 of x: connection") is None
    assert config_error_cause("Exception: something config_error: later") is None


def test_user_patterns_may_declare_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "patterns.json"
    path.write_text(
        json.dumps([{"name": "quota", "regex": "quota", "classification": "config_error"}])
    )
    v = verdict(solo("Error", "provider quota exhausted"), patterns=load_patterns(path))
    assert (v.classification, v.rule, v.stops_experiment) == (CONFIG_ERROR, "quota", True)


def test_a_step_failing_with_config_failure_is_read_back_by_the_cli() -> None:
    """The contract between the run step and `cb-assets`: the step raises
    `policies.config_failure`, Dagster reports it, the CLI finds `config_error: …` in it."""
    import dagster as dg

    from cb_assets.defs.policies import config_failure

    v = verdict(solo("Error", "AuthenticationError: Incorrect API key provided: sk-canary-7f3a9"))

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def rejected() -> None:
        raise config_failure(v)

    result = dg.materialize([rejected], raise_on_error=False)
    events = [e for e in result.all_events if e.is_step_failure or e.is_step_up_for_retry]
    [failure] = events  # not retried
    message = failure.event_specific_data.error.message
    assert config_error_cause(message.splitlines()[0]) == config_error_text(v)
    assert failure.event_specific_data.user_failure_data.metadata["rule"].value == "llm-auth"
