"""The bottle's model server through the real litellm client: answers priced as declared,
and each fault it serves comes out of litellm as the exception a real provider's would, which
the failure taxonomy classifies as infrastructure under a rule named for what matched."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm: no fetch

from cb_assets.bottle import policy  # noqa: E402
from cb_assets.bottle.model_server import (  # noqa: E402
    PRICE_PER_INPUT_TOKEN,
    PRICE_PER_OUTPUT_TOKEN,
    Fault,
    FaultSchedule,
    ModelServer,
    litellm_registry,
    read_ledger,
)
from cb_assets.shared.failures import INFRA_ERROR, classify  # noqa: E402

DATASET = Path(__file__).parents[2] / "cb_assets" / "bottle" / "dataset"
FEATURES = policy.load_features(DATASET)


def _feature(n: int) -> str:
    return (DATASET / "textkit_task" / "task1" / f"feature{n}" / "feature.md").read_text()


def solo_task(a: int, b: int) -> list[dict]:
    task = f"## Feature {a}\n\n{_feature(a)}\n\n---\n\n## Feature {b}\n\n{_feature(b)}"
    return [{"role": "system", "content": "s"}, {"role": "user", "content": task}]


def coop_task(n: int, me: str, other: str, messaging: bool) -> list[dict]:
    howto = f"## Messaging\nsend_message {other} <<'MSG'\n" if messaging else ""
    # like upstream's coop template, which names send_message even with messaging off
    task = f"{_feature(n)}\n\nYou are **{me}**. Your colleague is {other}.\n{howto}send_message"
    return [{"role": "system", "content": "s"}, {"role": "user", "content": task}]


def test_the_policy_reads_who_it_is_and_what_it_was_asked() -> None:
    solo = policy.read_brief(solo_task(1, 2), FEATURES)
    assert (solo.key, solo.colleague) == ("solo:1,2:solo", None)
    comm = policy.read_brief(coop_task(3, "agent2", "agent1", True), FEATURES)
    assert comm.key == "comm:3:agent2" and comm.messaging
    nocomm = policy.read_brief(coop_task(4, "agent2", "agent1", False), FEATURES)
    assert nocomm.key == "nocomm:4:agent2"
    sends = [a for a in policy.plan(comm) if a.command.startswith("send_message agent1")]
    assert len(sends) == 1
    assert not any("send_message" in a.command for a in policy.plan(nocomm))
    assert policy.plan(solo)[-1].command == policy.SUBMIT
    with pytest.raises(ValueError, match="names no feature"):
        policy.read_brief([{"role": "user", "content": "write me a poem"}], FEATURES)


def test_the_container_id_is_read_from_the_first_observation() -> None:
    observation = '{"returncode": 0, "output": "0123456789ab\\n M textkit/core.py\\n"}'
    assert policy.container_of([{"role": "tool", "content": observation}]) == "0123456789ab"
    assert policy.container_of([{"role": "tool", "content": "<output>\nno\n</output>"}]) is None


_FAULTED = {  # kind -> the conversation it hits (each its own policy key)
    "429": ("solo:1,2:solo", lambda: solo_task(1, 2)),
    "500": ("solo:1,3:solo", lambda: solo_task(1, 3)),
    "502": ("solo:3,4:solo", lambda: solo_task(3, 4)),
    "503": ("solo:2,3:solo", lambda: solo_task(2, 3)),
    "reset": ("comm:2:agent2", lambda: coop_task(2, "agent2", "agent1", True)),
    "slow": ("nocomm:3:agent2", lambda: coop_task(3, "agent2", "agent1", False)),
    "malformed": ("comm:4:agent2", lambda: coop_task(4, "agent2", "agent1", True)),
}


@pytest.fixture
def server(tmp_path: Path):
    schedule = FaultSchedule(
        {f"bottle|{key}": Fault(kind, 1) for kind, (key, _) in _FAULTED.items()}
    )
    started = ModelServer(DATASET, tmp_path / "ledger.jsonl", schedule=schedule).start()
    yield started
    started.stop()


_RULES = {
    "429": "llm-rate-limit",
    "500": "llm-server-error",
    "502": "llm-server-error",
    "503": "llm-server-error",
    "reset": "llm-server-error",  # litellm raises InternalServerError("Connection error.")
    "slow": "timeout",
    "malformed": "llm-server-error",
}


def _complete(server: ModelServer, messages: list[dict]):
    import litellm

    litellm.utils.register_model(litellm_registry(["bottle"]))
    return litellm.completion(
        model="openai/bottle",
        messages=messages,
        tools=[],
        api_base=server.url,
        api_key="local",
        timeout=2,
        max_retries=0,
    )


def test_answers_are_priced_as_declared_and_written_to_the_ledger(server: ModelServer) -> None:
    import litellm

    response = _complete(server, coop_task(1, "agent1", "agent2", False))
    command = json.loads(response.choices[0].message.tool_calls[0].function.arguments)["command"]
    assert "hostname" in command
    cost = litellm.cost_calculator.completion_cost(response, model="openai/bottle")
    usage = response.usage
    expected = (
        usage.prompt_tokens * PRICE_PER_INPUT_TOKEN
        + usage.completion_tokens * PRICE_PER_OUTPUT_TOKEN
    )
    assert cost == pytest.approx(expected) and cost > 0
    (row,) = read_ledger(server.ledger)
    assert row["cost"] == pytest.approx(cost) and row["key"] == "nocomm:1:agent1"


@pytest.mark.parametrize("kind", list(_FAULTED))
def test_each_fault_reaches_the_taxonomy_as_infrastructure(server: ModelServer, kind: str) -> None:
    key, messages = _FAULTED[kind]
    with pytest.raises(Exception) as raised:
        _complete(server, messages())
    error = f"{type(raised.value).__module__}.{type(raised.value).__name__}: {raised.value}"
    # what upstream's mini_swe_agent_v2 adapter writes: status Error, the exception's text
    result = {"agents": {"solo": {"status": "Error", "error": str(raised.value)}}}
    verdict = classify(exit_code=0, timed_out=False, log_text="", result=result)
    assert (verdict.classification, verdict.rule) == (INFRA_ERROR, _RULES[kind]), error
    assert not read_ledger(server.ledger)  # a fault is not an answer: nothing was served
    # the next attempt of the same conversation is answered
    assert _complete(server, messages()).choices[0].message.tool_calls
