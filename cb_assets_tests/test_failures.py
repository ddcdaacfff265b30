import json
from pathlib import Path

import pytest

from cb_assets.failures import (
    AGENT_ERROR,
    INFRA_ERROR,
    LIMITS_EXCEEDED,
    SUBMITTED,
    classify,
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
