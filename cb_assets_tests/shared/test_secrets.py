"""What the platform stores is scrubbed of secrets, known to this process or not."""

from pathlib import Path

import pytest

from cb_assets.defs.evals.outcomes import eval_row
from cb_assets.defs.runs.results import result_rows
from cb_assets.shared.dataset import Pair
from cb_assets.shared.failures import DEFAULT_PATTERNS
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.secrets import scrub
from cb_assets_tests.support.synthetic import agent_block, write_eval, write_result

PAIR = Pair("dspy_task", 8394, 3, 4)
NO_ENV: dict[str, str] = {}


def test_values_of_secret_named_variables_are_masked() -> None:
    env = {"MY_SERVICE_TOKEN": "tok-0123456789", "PATH": "/usr/bin"}
    assert scrub("sent tok-0123456789 to /usr/bin", env) == "sent *** to /usr/bin"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-canary-7f3a9c1e5b2d4680.", "sk-canary-7f3a9c1e5b2d4680"),
        ("invalid key sk-ant-api03-AbCdEf_123-456xyz", "sk-ant-api03-AbCdEf_123-456xyz"),
        ("key sk-proj-Zx9Yw8Vu7Ts6", "sk-proj-Zx9Yw8Vu7Ts6"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "eyJhbGciOiJIUzI1NiJ9.abc.def"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
        ("git: ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
        ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        ("redis.ConnectionError: redis://:hunter2pw@10.0.0.5:6379/0", "hunter2pw"),
        ("postgresql://cb:s3cr3t-Pass@db.internal/cb", "s3cr3t-Pass"),
        ("client error: api_key=abcdef123456 rejected", "abcdef123456"),
        ('{"x-api-key": "Zq81-kk29-ss03"}', "Zq81-kk29-ss03"),
    ],
)
def test_secret_shaped_tokens_are_masked_without_knowing_them(text: str, secret: str) -> None:
    scrubbed = scrub(text, NO_ENV)
    assert secret not in scrubbed and "***" in scrubbed
    assert scrub(scrubbed, NO_ENV) == scrubbed  # idempotent


def test_what_says_which_secret_it_was_is_kept() -> None:
    assert scrub("redis://:pw123456@host:6379", NO_ENV) == "redis://:***@host:6379"
    assert scrub("postgres://user:pw123456@db/x", NO_ENV) == "postgres://user:***@db/x"
    assert scrub("Incorrect API key provided: sk-canary-7f3a9c1e", NO_ENV) == (
        "Incorrect API key provided: sk-***"
    )


@pytest.mark.parametrize(
    "text",
    [
        "redis://127.0.0.1:6379",
        "http://host:8080/path and mail@example.com",
        "task-12345678 of disk-usage-exceeded-123 failed",
        "ValueError: could not parse the model's action",
        "litellm.RateLimitError: 429 Too Many Requests",
        "password: ***",
        "Bearer token missing",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub(text, NO_ENV) == text


def test_the_environment_is_this_process_s_by_default(monkeypatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "plain-value-42")
    assert scrub("got plain-value-42") == "got ***"


def test_result_rows_store_the_error_scrubbed(tmp_path: Path) -> None:
    """upstream records the provider's message; a key it echoes must not reach DuckDB."""
    error = "litellm.AuthenticationError: Incorrect API key provided: sk-canary-7f3a9c1e5b2d4680"
    d = write_result(
        tmp_path, "e-solo", PAIR, "solo", agents=[agent_block(status="Error", error=error)]
    )
    [row] = result_rows(d, PAIR, Arm("e", "solo"), ran=True)
    assert row["error"] == "litellm.AuthenticationError: Incorrect API key provided: sk-***"


def test_eval_rows_store_the_error_scrubbed(tmp_path: Path) -> None:
    write_eval(
        tmp_path,
        "solo",
        outcome="fail",
        error="git clone https://bot:ghs_abcdefghijklmnopqrstuv@github.com/x failed",
    )
    row = eval_row(tmp_path, PAIR, Arm("e", "solo"), ran=False, patterns=DEFAULT_PATTERNS)
    assert "ghs_abcdefghijklmnopqrstuv" not in row["error"] and "github.com/x" in row["error"]
