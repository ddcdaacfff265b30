"""Seeded fault schedules for the flaky agent (cb_assets.agents.faults)."""

from cb_assets.agents.faults import fault_for
from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import get_setting

RATES = "transient=0.25,crash=0.15,permanent=0.15,agent=0.15"
EXPECTED_ATTEMPTS = {None: 1, "agent": 1, "transient": 2, "crash": 2, "permanent": 3}


def run_key(pair: str, setting: str, experiment: str = "flaky", repeat: int = 1) -> str:
    """The key the flaky agent draws its fault for: the last five parts of its log folder."""
    p = parse_pair_key(pair)
    run_name = Arm(experiment, setting, repeat).run_name
    return f"{run_name}/{get_setting(setting).upstream}/{p.repo}/{p.task_id}/{p.features_dir}"


def seed_with_every_fault(keys: list[tuple[str, str]], rates: dict[str, float]) -> str:
    """The first seed whose schedule over `keys` holds every kind of fault: deterministic,
    and no luck needed."""
    return next(
        str(s)
        for s in range(100)
        if {fault_for(str(s), run_key(*k), rates) for k in keys} >= set(EXPECTED_ATTEMPTS)
    )
