"""run_results through the real cooperbench runner, a real Redis and a real DuckDB file."""

import json

import pytest

from cb_assets_tests.support.platform import key, pair_dir, run_results_meta, write_registry

SETTINGS = ("solo", "coop-comm", "coop-nocomm")


def first_pair(platform) -> str:
    return platform.query("select pair from benchmark_pairs order by pair limit 1")[0][0]


def result_file(platform, pair: str, setting: str):
    return pair_dir(platform, pair, setting) / "result.json"


@pytest.fixture
def platform(make_platform):
    platform = make_platform(n_pairs=2)
    assert platform.materialize(["benchmark_pairs"]).success
    return platform


def test_one_partition_of_each_setting_runs_through_the_real_runner(platform) -> None:
    pair = first_pair(platform)
    for setting in SETTINGS:
        result = platform.materialize(["run_results"], key(pair, setting), raise_on_error=True)
        meta = run_results_meta(result)
        assert meta["ran"] is True and meta["attempt"] == 1 and meta["in_dataset"] is True
        assert meta["outcome"] == "submitted" and meta["cost"] == 0
        assert meta["result_file"] == str(result_file(platform, pair, setting))
        assert "Submitted" in meta["statuses"] and "failure_reason" not in meta
        upstream = json.loads(result_file(platform, pair, setting).read_text())
        assert (
            upstream["agent_framework"] == "oracle" and upstream["run_name"] == f"oracle-{setting}"
        )

    rows = platform.query(
        "select setting, experiment, repeat, arm, count(*), bool_and(messaging_enabled), "
        "max(messages_sent), string_agg(distinct status, ','), bool_and(in_dataset) "
        "from run_results group by all order by 1"
    )
    assert rows == [
        ("coop-comm", "oracle", 1, "oracle/coop-comm", 2, True, 2, "Submitted", True),
        ("coop-nocomm", "oracle", 1, "oracle/coop-nocomm", 2, False, 0, "Submitted", True),
        ("solo", "oracle", 1, "oracle/solo", 1, False, None, "Submitted", True),
    ]
    attempts = platform.query(
        "select partition, experiment, repeat, arm from run_attempts order by partition"
    )
    assert attempts == [
        (key(pair, s), "oracle", 1, f"oracle/{s}") for s in ("coop-comm", "coop-nocomm", "solo")
    ]
    conversation = json.loads(
        (result_file(platform, pair, "coop-comm").parent / "conversation.json").read_text()
    )
    assert {m["from"] for m in conversation} == {"agent1", "agent2"}
    assert all("my patch touches" in m["message"] for m in conversation)
    # the nocomm run wrote its own tree: the comm conversation was not overwritten
    assert (
        json.loads(
            (result_file(platform, pair, "coop-nocomm").parent / "conversation.json").read_text()
        )
        == []
    )


def test_existing_result_is_ingested_without_rerun_and_force_reruns(platform) -> None:
    pair = first_pair(platform)
    platform.materialize(["run_results"], key(pair, "solo"), raise_on_error=True)
    path = result_file(platform, pair, "solo")
    first_run_id = json.loads(path.read_text())["run_id"]
    mtime = path.stat().st_mtime_ns

    again = platform.materialize(["run_results"], key(pair, "solo"), raise_on_error=True)
    assert run_results_meta(again)["ran"] is False
    assert path.stat().st_mtime_ns == mtime
    assert platform.query("select run_id from run_results") == [(first_run_id,)]

    forced = platform.materialize(
        ["run_results"],
        key(pair, "solo"),
        raise_on_error=True,
        run_config={"ops": {"run_results": {"config": {"force": True}}}},
    )
    assert run_results_meta(forced)["ran"] is True
    new_run_id = json.loads(path.read_text())["run_id"]
    assert new_run_id != first_run_id
    assert platform.query("select run_id from run_results") == [(new_run_id,)]


def test_existing_error_result_is_rerun_only_for_infrastructure(platform) -> None:
    """Upstream reruns every `Error`; the platform reruns only infrastructure errors, since an
    agent that failed on its own merits is a result."""
    pair = first_pair(platform)
    platform.materialize(["run_results"], key(pair, "coop-nocomm"), raise_on_error=True)
    path = result_file(platform, pair, "coop-nocomm")
    data = json.loads(path.read_text())
    data["agents"]["agent1"].update(status="Error", error="ValueError: gave up on the task")
    path.write_text(json.dumps(data))
    kept = platform.materialize(["run_results"], key(pair, "coop-nocomm"), raise_on_error=True)
    assert run_results_meta(kept)["ran"] is False
    assert run_results_meta(kept)["outcome"] == "agent_error"
    assert "gave up on the task" in run_results_meta(kept)["failure_reason"]

    data["agents"]["agent1"]["error"] = "litellm.RateLimitError: 429 Too Many Requests"
    path.write_text(json.dumps(data))
    rerun = platform.materialize(["run_results"], key(pair, "coop-nocomm"), raise_on_error=True)
    assert run_results_meta(rerun)["ran"] is True
    assert platform.query("select distinct status from run_results") == [("Submitted",)]


def test_invalid_result_names_the_file_and_keeps_other_partitions(platform) -> None:
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    for pair in pairs:
        platform.materialize(["run_results"], key(pair, "coop-comm"), raise_on_error=True)
    before = platform.query("select * from run_results order by pair, agent_id")
    assert len(before) == 4
    broken = result_file(platform, pairs[0], "coop-comm")
    text = broken.read_text()
    broken.write_text(text[: len(text) // 2])  # truncated mid-write

    result = platform.materialize(["run_results"], key(pairs[0], "coop-comm"))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.event_specific_data.error.message
    assert str(broken) in message and "invalid JSON" in message
    assert broken.read_text() == text[: len(text) // 2]  # the evidence is left as it was
    assert platform.query("select * from run_results order by pair, agent_id") == before
    ok = platform.materialize(["run_results"], key(pairs[1], "coop-comm"))
    assert ok.success


def test_unreachable_redis_fails_before_any_agent_starts(platform, monkeypatch) -> None:
    monkeypatch.setenv("CB_REDIS_URL", "redis://127.0.0.1:1")
    pair = first_pair(platform)
    result = platform.materialize(["run_results"], key(pair, "coop-comm"))
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert (
        "Redis at redis://127.0.0.1:1 is unreachable" in failure.event_specific_data.error.message
    )
    assert not result_file(platform, pair, "coop-comm").exists()  # no agent ever started
    # Redis being down is an infrastructure failure: retried, then given up on
    assert platform.query(
        "select list(rule order by attempt), list(final order by attempt) from run_attempts"
    ) == [(["redis"] * 3, [False, False, True])]


def test_experiments_and_repeats_run_side_by_side(make_platform, tmp_path) -> None:
    """Two experiments of one registry (one with two repeats) over the same pair: every arm is
    its own partition, its own upstream run and its own rows."""
    registry = write_registry(
        tmp_path / "experiments.yaml",
        {"name": "oracle", "agent": "oracle", "model": "oracle", "settings": ["solo"]},
        {"name": "mine", "agent": "noop", "model": "noop", "settings": ["solo"], "repeats": 2},
    )
    platform = make_platform(n_pairs=1, experiments=registry)
    assert platform.materialize(["benchmark_pairs"]).success
    assert sorted(platform.instance.get_dynamic_partitions("arms")) == [
        "mine/solo", "mine/solo/r2", "oracle/solo"
    ]  # fmt: skip
    pair = first_pair(platform)
    for experiment, repeat in [("oracle", 1), ("mine", 1), ("mine", 2)]:
        platform.materialize(
            ["run_results"], key(pair, "solo", experiment, repeat), raise_on_error=True
        )
        upstream = json.loads(
            (pair_dir(platform, pair, "solo", experiment, repeat) / "result.json").read_text()
        )
        assert upstream["agent_framework"] == ("noop" if experiment == "mine" else "oracle")
    assert platform.query(
        "select experiment, repeat, arm, agent_framework from run_results order by all"
    ) == [
        ("mine", 1, "mine/solo", "noop"),
        ("mine", 2, "mine/solo/r2", "noop"),
        ("oracle", 1, "oracle/solo", "oracle"),
    ]
    # a partition of an arm the registry does not hold fails at once, naming the registry
    platform.instance.add_dynamic_partitions("arms", ["mine/solo/r3"])
    result = platform.materialize(["run_results"], key(pair, "solo", "mine", 3))
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "has 2 repeat(s), not 3" in failure.event_specific_data.error.message
    assert str(registry) in failure.event_specific_data.error.message


def test_subprocess_launcher_runs_the_wrapped_cli(make_platform) -> None:
    platform = make_platform(n_pairs=1, launcher="subprocess")
    assert platform.materialize(["benchmark_pairs"]).success
    pair = first_pair(platform)
    platform.materialize(["run_results"], key(pair, "coop-comm"), raise_on_error=True)
    assert platform.query("select count(*), max(messages_sent) from run_results") == [(2, 2)]
