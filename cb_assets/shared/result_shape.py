"""The shape of upstream's result.json: where it keeps its agents.

A solo result holds one agent block under `agent`; a coop result holds agent id -> block
under `agents`. Readers that must not fail on a malformed file (cost accounting, failure
classification) take `agent_blocks_found`; `cb_assets.defs.runs.results` validates the
shape strictly with the same keys.
"""

from typing import Any

SOLO_KEY, COOP_KEY = "agent", "agents"


def agent_blocks_found(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The agent blocks of `result` that are objects; none for an unknown shape."""
    if isinstance(result.get(SOLO_KEY), dict):
        return [result[SOLO_KEY]]
    agents = result.get(COOP_KEY)
    return [a for a in agents.values() if isinstance(a, dict)] if isinstance(agents, dict) else []
