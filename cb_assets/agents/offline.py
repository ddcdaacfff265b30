"""Offline agent frameworks registered with cooperbench: `oracle`, `noop`, `flaky`, `replay`.

`oracle` submits the dataset's gold `feature.patch` (solo: both features) and,
when messaging is on, tells its partner over upstream's Redis mailbox which files
its patch touches — so coop-comm has a real conversation. `noop` submits nothing.
`flaky` is `oracle` with faults injected on a seeded schedule (see `faults.py`).
`replay` is `oracle` taking a recorded run's duration and cost (see `replay.py`).
None needs Docker or an LLM, which makes them the harness self-check.
"""

import time
from pathlib import Path
from typing import Any

from cooperbench.agents import AgentResult
from cooperbench.agents.registry import register

from cb_assets import config
from cb_assets.agents.log_dirs import pair_from_log_dir as _pair_from_log_dir
from cb_assets.shared.dataset import gold_patch

DATASET_ENV = "CB_DATASET_DIR"
PARTNER_WAIT_SECONDS = config.oracle_partner_wait_seconds()


def _dataset_dir() -> str:
    return config.child_dataset_dir()


def touched_files(patch: str) -> list[str]:
    return sorted({line[6:].strip() for line in patch.splitlines() if line.startswith("+++ b/")})


def _exchange_messages(
    agent_id: str, agents: list[str], comm_url: str, patch: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Send the partner the files this patch touches; wait for the partner's note."""
    from cooperbench.agents.mini_swe_agent_v2.connectors.messaging import MessagingConnector

    connector = MessagingConnector(agent_id=agent_id, agents=agents, url=comm_url)
    # Upstream's connector clears its inbox on creation, so announce readiness and
    # send only once every partner's inbox exists — otherwise a note can be wiped.
    client, prefix = connector._client, connector._prefix
    client.set(f"{prefix}{agent_id}:ready", "1", ex=3600)
    partners = [a for a in agents if a != agent_id]
    deadline = time.monotonic() + PARTNER_WAIT_SECONDS
    while not all(client.exists(f"{prefix}{a}:ready") for a in partners):
        if time.monotonic() > deadline:
            return [], []
        time.sleep(0.05)
    files = ", ".join(touched_files(patch)) or "no files"
    sent = []
    for partner in partners:
        note = f"{agent_id} here: my patch touches {files}"
        connector.send(partner, note)
        sent.append({"to": partner, "message": note, "timestamp": time.time()})
    received: list[dict[str, Any]] = []
    while len(received) < len(partners) and time.monotonic() < deadline:
        received.extend(connector.receive())
        time.sleep(0.05)
    history = [
        {
            "role": "user",
            "content": f"[Message from {m['from']}]: {m['content']}",
            "timestamp": time.time(),
        }
        for m in received
    ]
    return sent, history


@register("oracle")
class OracleRunner:
    def run(
        self,
        task: str,
        image: str,
        *,
        agent_id: str = "agent",
        agents: list[str] | None = None,
        comm_url: str | None = None,
        messaging_enabled: bool = True,
        log_dir: str | None = None,
        **_: Any,
    ) -> AgentResult:
        repo, task_id, features = _pair_from_log_dir(log_dir)
        if agent_id == "solo":
            mine = features
        else:
            mine = [features[(agents or [agent_id]).index(agent_id)]]
        patch = "".join(gold_patch(_dataset_dir(), repo, task_id, f) for f in mine)
        time.sleep(config.offline_agent_delay_seconds())  # for kill/timeout tests
        sent, history = [], []
        if messaging_enabled and comm_url and agents and len(agents) > 1:
            sent, history = _exchange_messages(agent_id, agents, comm_url, patch)
        return AgentResult(
            status="Submitted", patch=patch, cost=0.0, steps=1, messages=history, sent_messages=sent
        )


@register("noop")
class NoopRunner:
    def run(self, task: str, image: str, **_: Any) -> AgentResult:
        return AgentResult(status="Submitted", patch="", cost=0.0, steps=0)


@register("flaky")
class FlakyRunner:
    """`oracle`, then the fault the schedule gives this pair-run.

    Faults come after messaging, so a partner never waits for an agent that already
    failed, and are reported the way upstream adapters report their own failures:
    status `Error` with the error text and the cost spent so far.
    """

    def run(
        self,
        task: str,
        image: str,
        *,
        agent_id: str = "agent",
        log_dir: str | None = None,
        **kwargs: Any,
    ) -> AgentResult:
        from cb_assets.agents.faults import FAULT_COST, inject_fault

        result = OracleRunner().run(task, image, agent_id=agent_id, log_dir=log_dir, **kwargs)
        if agent_id in ("solo", "agent1") and log_dir:
            error = inject_fault(Path(log_dir), agent_id)
            if error is not None:
                return AgentResult(
                    status="Error",
                    patch="",
                    cost=FAULT_COST,
                    steps=result.steps,
                    sent_messages=result.sent_messages,
                    error=error,
                )
        return result


@register("replay")
class ReplayRunner:
    """`oracle` with a recorded pair-run's duration (scaled) and cost; see `replay.py`.

    Registered here, where the pre-flight reads the offline agents' names; the logic is
    imported on first use, like `flaky`'s."""

    def run(self, task: str, image: str, **kwargs: Any) -> AgentResult:
        from cb_assets.agents.replay import run_replay

        return run_replay(task, image, gold=OracleRunner().run, **kwargs)
