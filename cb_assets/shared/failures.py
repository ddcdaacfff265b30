"""Classify each attempt at a pair-run: did the agent fail, or the infrastructure?

`submitted`, `limits_exceeded` and `agent_error` are results: the agent ended on its
own merits and the attempt is final. `infra_error` is the platform's or a provider's
fault (a killed container, a 503, Redis down, the runner crashing) and is retried.
`config_error` is the experiment's configuration (a rejected API key): neither a result
nor worth retrying, it stops the experiment; a failure it causes reads
`config_error: <rule>: <detail>` (see `config_error_text`).

The verdict is a pure function of the process exit, its log and the statuses and
error strings in result.json, driven by a pattern table that users can extend.
Every verdict names the rule that decided it.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cb_assets.shared.result_shape import agent_blocks_found
from cb_assets.shared.secrets import scrub

MAX_ATTEMPTS = 3  # an infrastructure failure is retried: one attempt and two retries

SUBMITTED, LIMITS_EXCEEDED, AGENT_ERROR, INFRA_ERROR, CONFIG_ERROR = (
    "submitted",
    "limits_exceeded",
    "agent_error",
    "infra_error",
    "config_error",
)
CLASSIFICATIONS = (SUBMITTED, LIMITS_EXCEEDED, AGENT_ERROR, INFRA_ERROR, CONFIG_ERROR)
RESULTS = (SUBMITTED, LIMITS_EXCEEDED, AGENT_ERROR)  # an attempt that ends in one is final
CONFIG_ERROR_PREFIX = f"{CONFIG_ERROR}:"  # how the failure text of a config error starts


@dataclass(frozen=True)
class Pattern:
    name: str
    regex: str
    classification: str = INFRA_ERROR

    def search(self, text: str) -> bool:
        return re.search(self.regex, text, flags=re.IGNORECASE | re.MULTILINE) is not None


# Strings that the Docker engine, litellm / provider SDKs, redis-py and the kernel
# put in an error message when the fault is not the agent's. The first that matches names
# the verdict, so the specific rules come before the broad ones they overlap.
DEFAULT_PATTERNS: tuple[Pattern, ...] = (
    # Rejected credentials are the configuration's fault: retrying cannot help.
    Pattern(
        "redis-auth",
        r"redis\.exceptions\.AuthenticationError|NOAUTH Authentication required|WRONGPASS",
        CONFIG_ERROR,
    ),
    Pattern(
        "llm-auth",
        r"AuthenticationError|Incorrect API key|invalid[ _-]x-api-key|"
        r"invalid[ _-]api[ _-]?key|API key not valid|"
        r"\b401\b[^\n]{0,20}Unauthori[sz]ed|Unauthori[sz]ed[^\n]{0,20}\b401\b|"
        r"(Error code|status(?:[ _]code)?)[ :=]*401\b",
        CONFIG_ERROR,
    ),
    # What upstream's codex adapter reports when the host has no key for it at all.
    Pattern(
        "llm-credentials-missing", r"no codex credentials|OPENAI_API_KEY missing", CONFIG_ERROR
    ),
    # The agent's sandbox never started. Upstream's DockerEnvironment (mini_swe_agent_v2, and
    # claude_code / codex through it) runs `docker run -d …` with subprocess(check=True): the
    # error is "Command '[…]' returned non-zero exit status N" (or timed out, or died with a
    # signal); openhands_sdk's Modal agent-server that never answers is the same fault.
    Pattern(
        "sandbox-start",
        r"Command '\['[^'\n]*\b(?:docker|podman)', 'run',[^\n]*?\]' "
        r"(?:returned non-zero exit status -?\d+|timed out after [\d.]+ seconds|died with)|"
        r"Agent-server did not become ready",
    ),
    # No Docker engine answers: docker-py's, the CLI's and the socket's own words. Before
    # the LLM rules: its "Connection aborted" and the numbers around it are not a provider's.
    Pattern(
        "docker-unreachable",
        r"Error while fetching server API version|docker\.errors\.DockerException|"
        r"Cannot connect to the Docker daemon|Is the docker daemon running|"
        r"docker daemon socket|"
        r"docker\.sock\b[^\n]{0,120}(?:No such file or directory|Connection refused|"
        r"Permission denied)",
    ),
    Pattern("docker-oom", r"OOMKilled|out of memory|Cannot allocate memory|exit code 137"),
    Pattern("docker-killed", r"container .*(killed|was stopped)|signal: killed|SIGKILL"),
    Pattern(
        "image-pull",
        r"pull access denied|manifest unknown|ImageNotFound|"
        r"error pulling image|No such image",
    ),
    Pattern(
        "container-start",
        r"failed to (create|start) container|OCI runtime|APIError: 500",
    ),
    # A bare 429 is any number in a path, a port, a container id, a timestamp or a
    # traceback's "line 429, in generate": only a 429 a status word introduces is a rate limit.
    Pattern(
        "llm-rate-limit",
        r"RateLimitError|rate limit(ed)? exceeded|Too Many Requests|RESOURCE_EXHAUSTED|"
        r"\b(?:Error code|status(?:[ _]code)?|HTTP(?:/[\d.]+)?|code|error)\W{0,3}429\b",
    ),
    Pattern(
        "llm-server-error",
        r"(?<!line )\b50[0234]\b.{0,40}(error|server|gateway|unavailable|timeout)|"
        r"InternalServerError|ServiceUnavailable|BadGateway|"
        r"Gateway Time-?out|overloaded",
    ),
    Pattern(
        "connection",
        r"Connection (reset|refused|aborted)|ECONNRESET|ECONNREFUSED|"
        r"APIConnectionError|RemoteDisconnected|Temporary failure in name",
    ),
    Pattern(
        "redis", r"redis\.exceptions\.\w*Error|Error \d+ connecting to .*6379|Redis .* unreachable"
    ),
    Pattern("timeout", r"timed? ?out|TimeoutError|deadline exceeded|ReadTimeout"),
)


@dataclass(frozen=True)
class Verdict:
    classification: str
    rule: str  # the pattern name, or the builtin rule that decided
    detail: str = ""

    @property
    def retryable(self) -> bool:
        return self.classification == INFRA_ERROR

    @property
    def is_result(self) -> bool:
        """The agent ended on its own merits: the attempt's rows are the pair-run's result."""
        return self.classification in RESULTS

    @property
    def stops_experiment(self) -> bool:
        """The configuration is at fault: every other pair-run would fail the same way."""
        return self.classification == CONFIG_ERROR


def config_error_text(verdict: Verdict) -> str:
    """The one line a config error fails with (and `cb-assets` stops on), scrubbed."""
    detail = " ".join(verdict.detail.split())
    return scrub(f"{CONFIG_ERROR_PREFIX} {verdict.rule}: {detail}")


_CONFIG_ERROR_LINE = re.compile(rf"^(?:[\w.]+: )?({re.escape(CONFIG_ERROR_PREFIX)}.*)")


def config_error_cause(failure_text: str) -> str | None:
    """The `config_error: …` line a failure reports (Dagster puts the exception's class name
    first), or None when the failure is not a config error."""
    match = _CONFIG_ERROR_LINE.match(failure_text.strip())
    return match.group(1).splitlines()[0] if match else None


def load_patterns(path: Path | None) -> tuple[Pattern, ...]:
    """User patterns (checked first) from a JSON list of {name, regex, classification}."""
    if path is None:
        return DEFAULT_PATTERNS
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        extra = tuple(
            Pattern(e["name"], e["regex"], e.get("classification", INFRA_ERROR)) for e in entries
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"failure pattern file {path}: {exc!r}") from None
    for p in extra:
        if p.classification not in (INFRA_ERROR, AGENT_ERROR, CONFIG_ERROR):
            raise ValueError(
                f"failure pattern file {path}: pattern {p.name!r} has "
                f"classification {p.classification!r}; use infra_error, agent_error "
                "or config_error"
            )
        try:
            re.compile(p.regex)
        except re.error as exc:
            raise ValueError(f"failure pattern file {path}: pattern {p.name!r}: {exc}") from None
    return extra + DEFAULT_PATTERNS


def _match(text: str, patterns: tuple[Pattern, ...]) -> Pattern | None:
    return next((p for p in patterns if text and p.search(text)), None)


def classify_text(text: str, patterns: tuple[Pattern, ...] = DEFAULT_PATTERNS) -> Pattern | None:
    """The infrastructure pattern an error message matches, if it is the infrastructure's."""
    hit = _match(text, patterns)
    return hit if hit is not None and hit.classification == INFRA_ERROR else None


def classify(
    *,
    exit_code: int | None,
    timed_out: bool,
    log_text: str,
    result: dict[str, Any] | None,
    patterns: tuple[Pattern, ...] = DEFAULT_PATTERNS,
) -> Verdict:
    """One attempt's verdict. `exit_code` None means the pair was ingested, not run."""
    if timed_out:
        return Verdict(INFRA_ERROR, "runner-timeout", "the cooperbench process timed out")
    if exit_code not in (None, 0) or result is None:
        hit = _match(log_text, patterns)
        why = (
            f"cooperbench exited with {exit_code}"
            if result is not None or exit_code
            else "no result.json was written"
        )
        if hit is not None and hit.classification == CONFIG_ERROR:
            line = next((x for x in log_text.splitlines() if hit.search(x)), "")
            return Verdict(CONFIG_ERROR, hit.name, f"{why}: {line.strip()[:400]}")
        if hit is not None and hit.classification == INFRA_ERROR:
            return Verdict(INFRA_ERROR, hit.name, why)
        return Verdict(INFRA_ERROR, "runner-crash", why)
    agents = agent_blocks_found(result)
    errors = [str(a.get("error") or "") for a in agents if a.get("status") == "Error"]
    for error in errors:  # a rejected key stops the experiment, whatever else went wrong
        hit = _match(error, patterns)
        if hit is not None and hit.classification == CONFIG_ERROR:
            return Verdict(CONFIG_ERROR, hit.name, error[:500])
    for error in errors:
        hit = _match(error, patterns)
        if hit is not None and hit.classification == INFRA_ERROR:
            return Verdict(INFRA_ERROR, hit.name, error[:500])
    if any(not e.strip() for e in errors):  # the agent process died without a result
        return Verdict(
            INFRA_ERROR, "agent-error-empty", "an agent ended in Error with no error text"
        )
    if errors:
        hit = _match(errors[0], patterns)
        return Verdict(AGENT_ERROR, hit.name if hit else "agent-status-error", errors[0][:500])
    statuses = {a.get("status") for a in agents}
    if "LimitsExceeded" in statuses:
        return Verdict(LIMITS_EXCEEDED, "agent-status-limits")
    if statuses and statuses <= {"Submitted"}:
        return Verdict(SUBMITTED, "agent-status-submitted")
    return Verdict(AGENT_ERROR, "agent-status-other", f"statuses: {sorted(map(str, statuses))}")


def classify_result(
    result: dict[str, Any], patterns: tuple[Pattern, ...] = DEFAULT_PATTERNS
) -> Verdict:
    """The verdict of a result.json found on disk (ingested, not run here)."""
    return classify(exit_code=None, timed_out=False, log_text="", result=result, patterns=patterns)


@dataclass(frozen=True)
class EvalRefusal:
    """A reason `cooperbench eval` prints for ending without an eval.json that another
    attempt would meet again."""

    name: str
    regex: str
    config: bool  # the experiment's configuration is at fault: every pair would be refused


# Upstream's evaluate() returns, exit status 0 and no eval.json, after printing one of these
# (through rich, which wraps long lines: hence \s+ between words).
EVAL_REFUSALS: tuple[EvalRefusal, ...] = (
    # openhands_sdk runs are evaluated on Modal only; any other --backend is refused.
    EvalRefusal(
        "eval-backend-refused",
        r"agent_framework=\S+\s+which\s+requires\s+--backend\s+\S+\s+"
        r"Refusing\s+to\s+evaluate\s+with\s+--backend\s+\w+",
        config=True,
    ),
    # discover_runs found no result.json under the name, repo, task and features asked for.
    EvalRefusal("eval-no-runs", r"\bno\s+runs\s+found\s+to\s+evaluate\b", config=False),
)


def eval_refusal(log_text: str) -> tuple[EvalRefusal, str] | None:
    """The refusal `cooperbench eval`'s output shows, with its words on one line, or None."""
    for refusal in EVAL_REFUSALS:
        match = re.search(refusal.regex, log_text, flags=re.IGNORECASE)
        if match is not None:
            return refusal, " ".join(match.group(0).split())
    return None
