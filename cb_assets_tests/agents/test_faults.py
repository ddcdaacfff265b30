from collections import Counter

import pytest

from cb_assets.agents.faults import FAULTS, fault_for, parse_rates


def test_schedule_is_deterministic_and_follows_the_rates() -> None:
    rates = parse_rates("transient=0.3,permanent=0.1,crash=0.1,agent=0.1")
    keys = [f"run/solo/r/1/f1_f{i}" for i in range(4000)]
    first = [fault_for("7", k, rates) for k in keys]
    assert first == [fault_for("7", k, rates) for k in keys]
    counts = Counter(first)
    for name, rate in rates.items():
        assert abs(counts[name] / len(keys) - rate) < 0.03
    assert abs(counts[None] / len(keys) - 0.4) < 0.03
    assert first != [fault_for("8", k, rates) for k in keys]


@pytest.mark.parametrize(
    ("text", "message"),
    [("flood=0.1", "unknown fault"), ("transient=0.8,agent=0.5", "more than 1")],
)
def test_bad_rates_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rates(text)


def test_no_rates_no_faults() -> None:
    assert all(fault_for("0", f"k{i}", parse_rates("")) is None for i in range(100))
    assert set(FAULTS) == {"transient", "crash", "permanent", "agent", "auth"}
