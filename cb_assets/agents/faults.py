"""Seeded fault injection for the `flaky` agent.

Each pair-run draws one fault from `CB_FLAKY_RATES` (e.g.
`transient=0.3,permanent=0.1,crash=0.1,agent=0.1`; the rest run clean) with
`CB_FLAKY_SEED`, so a schedule is reproducible across processes and retries:
- transient: the first attempt fails like a provider outage (HTTP 503), later ones pass
- crash:     the first attempt kills the cooperbench process outright (no result.json)
- permanent: every attempt fails with a connection reset
- agent:     the agent gives up on its own merits (not an infrastructure failure)
- auth:      every attempt fails like a provider refusing the API key (HTTP 401), quoting
             the key as providers do: a configuration error that must stop the experiment
Attempts are counted in `<logs>/_faults/`, outside upstream's tree.
"""

import hashlib
import os
from pathlib import Path

from cb_assets import config

FAULTS = ("transient", "crash", "permanent", "agent", "auth")
FAULT_COST = 0.05  # what a failed attempt "spent", so failed-attempt spend is measurable

MESSAGES = {
    "transient": "litellm.ServiceUnavailableError: 503 Service Unavailable (injected)",
    "permanent": "ConnectionResetError: [Errno 104] Connection reset by peer (injected)",
    "agent": "ValueError: the agent could not locate the feature's entry point (injected)",
}


def parse_rates(text: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in FAULTS:
            raise ValueError(f"CB_FLAKY_RATES: unknown fault {name!r} (known: {', '.join(FAULTS)})")
        rates[name] = float(value)
    if sum(rates.values()) > 1:
        raise ValueError(f"CB_FLAKY_RATES: rates add up to more than 1: {text!r}")
    return rates


def fault_for(seed: str, run_key: str, rates: dict[str, float]) -> str | None:
    """The fault of one pair-run; the same for every process that asks."""
    draw = int(hashlib.sha256(f"{seed}|{run_key}".encode()).hexdigest()[:12], 16) / 16**12
    edge = 0.0
    for name in FAULTS:
        edge += rates.get(name, 0.0)
        if draw < edge:
            return name
    return None


def _count_attempt(log_dir: Path, agent_id: str) -> int:
    """1 for the first call for this pair-run and agent, 2 for the next, …"""
    logs_root, run_name = log_dir.parents[4], log_dir.parents[3].name
    counter = logs_root / "_faults" / run_name / "-".join([*log_dir.parts[-3:], agent_id])
    counter.parent.mkdir(parents=True, exist_ok=True)
    with open(counter, "ab") as f:
        f.write(b".")
        return f.tell()


def inject_fault(log_dir: Path, agent_id: str) -> str | None:
    """The error this attempt ends with, or None; a `crash` never returns."""
    rates = parse_rates(config.flaky_rates())
    run_key = "/".join(log_dir.parts[-5:])  # run_name/setting/repo/task/pair
    fault = fault_for(config.flaky_seed(), run_key, rates)
    if fault is None:
        return None
    attempt = _count_attempt(log_dir, agent_id)
    if fault in ("transient", "crash") and attempt > 1:
        return None
    if fault == "crash":
        os._exit(137)
    if fault == "auth":
        key = os.environ.get("COHERE_API_KEY", "sk-not-set-0000")
        return (
            "litellm.AuthenticationError: Error code: 401 - {'message': "
            f"'Incorrect API key provided: {key}. (injected)'}}"
        )
    return MESSAGES[fault]
