"""Failures seen with real data that were once blamed on the agent or misnamed: a sandbox that
did not start, an Error with no error text, a Docker socket that does not answer."""

from cb_assets.shared.failures import AGENT_ERROR, INFRA_ERROR, classify, classify_text

SANDBOX = (
    "Command '['docker', 'run', '-d', '--name', 'minisweagent-1a2b3c4d', '-w', "
    "'/workspace/repo', '--entrypoint', '/bin/bash', '--rm', "
    "'akhatua/cooperbench-typst:task6554', '-c', 'sleep 2h']' returned non-zero exit status 125."
)
SOCKET = (
    "docker.errors.DockerException: Error while fetching server API version: "
    "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
)


def _verdict(*errors: str | None):
    agents = {f"agent{i}": {"status": "Error", "error": e} for i, e in enumerate(errors, 1)}
    return classify(exit_code=0, timed_out=False, log_text="", result={"agents": agents})


def test_a_sandbox_that_does_not_start_is_infrastructure() -> None:
    verdict = _verdict(SANDBOX)
    assert (verdict.classification, verdict.rule) == (INFRA_ERROR, "sandbox-start")


def test_an_error_without_text_is_infrastructure_and_retried() -> None:
    for empty in (None, "", "   "):
        verdict = _verdict(empty)
        assert (verdict.classification, verdict.rule) == (INFRA_ERROR, "agent-error-empty")
        assert verdict.retryable
    # a named error of the other agent still names the rule
    assert _verdict("", SANDBOX).rule == "sandbox-start"
    # an agent's own error text is still the agent's
    assert _verdict("ValueError: bad patch").classification == AGENT_ERROR


def test_an_unanswering_docker_socket_is_named_so_not_a_rate_limit() -> None:
    hit = classify_text(f"evaluating /logs/run-429/x at 10:42:9 port 4290\n{SOCKET}")
    assert hit is not None and hit.name == "docker-unreachable"
    assert classify_text("wrote 429 files to /tmp/run_429/out") is None
    assert classify_text("Error code: 429 - rate limit").name == "llm-rate-limit"
