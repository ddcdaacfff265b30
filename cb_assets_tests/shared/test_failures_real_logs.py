"""Every error text in the real upstream run directories, classified as written here by hand.

A new error text in the logs fails `test_the_table_holds_every_error_text_on_disk` until
someone decides, in the table below, what it is.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cb_assets.shared.failures import (
    INFRA_ERROR,
    LIMITS_EXCEEDED,
    SUBMITTED,
    classify_result,
    classify_text,
)
from cb_assets.shared.result_shape import agent_blocks_found
from cb_assets_tests.support.services import require_real_logs

AGENT, EVAL = "agent", "eval"  # an Error agent's `error` in result.json; any other `error`

# (where, error text) → (classification, rule). An empty text is an Error agent whose
# error was null or blank: the agent's process died without saying why.
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    (AGENT, ""): (INFRA_ERROR, "agent-error-empty"),
}

# The result.json files (relative to the logs) whose verdict is not a result: reruns.
EXPECTED_RETRIED = {
    "nano_free_git_1/coop/pallets_click_task/2800/f1_f7/result.json",
    "nano_free_git_1/coop/pallets_click_task/2956/f3_f6/result.json",
}


@pytest.fixture(scope="module")
def logs() -> Path:
    return require_real_logs()


def _errors_in(value: Any) -> Iterator[str]:
    """Every string under a key named `error` (eval.json, summaries, anything else)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "error" and isinstance(item, str):
                yield item
            else:
                yield from _errors_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _errors_in(item)


def error_texts(logs: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted(logs.rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "result.json":
            found |= {
                (AGENT, str(a.get("error") or "").strip())
                for a in agent_blocks_found(data)
                if a.get("status") == "Error"
            }
            data = {k: v for k, v in data.items() if k not in ("agent", "agents")}
        found |= {(EVAL, text) for text in _errors_in(data)}
    return found


def test_the_table_holds_every_error_text_on_disk(logs: Path) -> None:
    assert error_texts(logs) == set(EXPECTED)


@pytest.mark.parametrize(("where", "text"), sorted(EXPECTED))
def test_each_error_text_is_classified_as_the_table_says(where: str, text: str) -> None:
    if where == AGENT:
        result = {"setting": "coop", "agents": {
            "agent1": {"status": "Submitted", "error": None},
            "agent2": {"status": "Error", "error": text or None},
        }}  # fmt: skip
        v = classify_result(result)
        got = (v.classification, v.rule)
    else:
        hit = classify_text(text)
        got = (INFRA_ERROR, hit.name) if hit else ("eval_error", "eval-error")
    assert got == EXPECTED[(where, text)]


def test_every_real_result_is_classified_from_its_own_file(logs: Path) -> None:
    retried: set[str] = set()
    for path in sorted(logs.rglob("result.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        v = classify_result(data)
        errors = [
            str(a.get("error") or "").strip()
            for a in agent_blocks_found(data)
            if a.get("status") == "Error"
        ]
        if errors:
            assert (v.classification, v.rule) == EXPECTED[(AGENT, errors[0])], path
            retried.add(str(path.relative_to(logs)))
        else:
            assert v.classification in (SUBMITTED, LIMITS_EXCEEDED), path
    assert retried == EXPECTED_RETRIED
