"""Fault injection through the real runner: what is retried, what is not, what is kept."""

import json
from collections import Counter

import dagster as dg
import pytest

from cb_assets.agents.faults import FAULT_COST, fault_for, parse_rates
from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.runs.partitions import materialized_by_run, partitions_needing_runs
from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.experiments import load_registry
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import get_setting
from cb_assets_tests.support.faults import (
    EXPECTED_ATTEMPTS,
    RATES,
    run_key,
    seed_with_every_fault,
)
from cb_assets_tests.support.platform import key as partition_of
from cb_assets_tests.support.platform import open_platform

# the shipped registry's flaky experiment: the oracle with injected faults
SETTINGS = load_registry(PROJECT_ROOT / "experiments.yaml").get("flaky").settings


@pytest.fixture(scope="module", params=["run per partition", "run per setting"])
def flaky(request, tmp_path_factory, lite_dataset, redis_url, fork_socket):
    with (
        pytest.MonkeyPatch.context() as mp,
        open_platform(
            tmp_path_factory.mktemp("flaky"), lite_dataset, redis_url, fork_socket, mp, n_pairs=8
        ) as platform,
    ):
        mp.setenv("CB_EXPERIMENT", "flaky")
        mp.setenv("CB_FLAKY_RATES", RATES)
        yield run_schedule(platform, mp, batched=request.param == "run per setting")


def run_schedule(platform, mp, batched: bool):
    """Run every partition under a seeded fault schedule, one Dagster run per partition or
    one per setting (a partition range, as backfills and the main job batch them); return
    the platform, the schedule, and (materialized?, run id) per partition."""
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = platform.instance.get_dynamic_partitions("pairs")
    keys = [(p, s) for p in pairs for s in SETTINGS]
    rates = parse_rates(RATES)
    seed = seed_with_every_fault(keys, rates)
    mp.setenv("CB_FLAKY_SEED", seed)
    schedule = {k: fault_for(seed, run_key(*k), rates) for k in keys}
    partition = {k: partition_of(*k, experiment="flaky") for k in keys}
    assert partition[keys[0]] == str(
        dg.MultiPartitionKey({"arm": f"flaky/{keys[0][1]}", "pair": keys[0][0]})
    )
    outcomes = {}
    if not batched:
        for key in keys:
            result = platform.materialize(["run_results"], partition[key])
            outcomes[key] = (result.success, result.run_id)
    for setting in SETTINGS if batched else ():
        result = platform.materialize(
            ["run_results"],
            partition_range=(partition[pairs[0], setting], partition[pairs[-1], setting]),
        )
        done = Counter(materialized_by_run(platform.instance, result.run_id))
        assert max(done.values()) == 1  # a retry never materializes a partition twice
        assert result.success == all(schedule[p, setting] != "permanent" for p in pairs), [
            e.event_specific_data.error.message for e in result.all_events if e.is_step_failure
        ]
        for pair in pairs:
            outcomes[pair, setting] = (partition[pair, setting] in done, result.run_id)
    # Dagster's own partition status says failed for exactly the partitions that gave up
    failed = partitions_needing_runs(
        platform.instance, partition.values(), failed=True, missing=True
    )
    assert failed == {partition[k]: "failed" for k, f in schedule.items() if f == "permanent"}
    return platform, schedule, outcomes


def test_retries_follow_the_taxonomy(flaky) -> None:
    platform, schedule, outcomes = flaky
    attempts = platform.query(
        "select pair, setting, list(classification order by attempt), "
        "list(rule order by attempt), list(final order by attempt) "
        "from run_attempts group by all"
    )
    by_key = {(p, s): (c, r, f) for p, s, c, r, f in attempts}
    for key, fault in schedule.items():
        classes, rules, finals = by_key[key]
        assert len(classes) == EXPECTED_ATTEMPTS[fault], (key, fault, classes)
        materialized, run_id = outcomes[key]
        if fault == "permanent":
            assert not materialized
            assert classes == ["infra_error"] * 3 and finals == [False, False, True]
            assert rules == ["connection"] * 3
            run = platform.instance.get_run_by_id(run_id)
            assert run.tags["cb_assets/classification"] == "infra_error"
        elif fault in ("transient", "crash"):
            assert materialized
            assert classes == ["infra_error", "submitted"]
            assert rules[0] == ("llm-server-error" if fault == "transient" else "runner-crash")
        elif fault == "agent":
            assert materialized and classes == ["agent_error"] and finals == [True]
        else:
            assert materialized and classes == ["submitted"]
    # exactly one row per attempt made, none lost, none doubled
    # every row names its arm: the flaky experiment's, repeat 1, keyed `<arm>|<pair>`
    assert platform.query(
        "select distinct experiment, repeat, partition = arm || '|' || pair from run_attempts"
    ) == [("flaky", 1, True)]
    assert platform.query(
        "select distinct experiment, repeat, arm = experiment || '/' || setting from run_results"
    ) == [("flaky", 1, True)]
    total = platform.query("select count(*) from run_attempts")[0][0]
    assert total == sum(EXPECTED_ATTEMPTS[f] for f in schedule.values())
    assert (
        platform.query(
            "select count(*) from (select partition, attempt from run_attempts "
            "group by all having count(*) > 1)"
        )[0][0]
        == 0
    )


def test_agent_errors_are_results_and_failed_partitions_hold_no_rows(flaky) -> None:
    platform, schedule, _ = flaky
    rows = dict(
        ((p, s), c)
        for p, s, c in platform.query(
            "select pair, setting, any_value(classification) from run_results group by all"
        )
    )
    for key, fault in schedule.items():
        if fault == "permanent":
            assert key not in rows
        elif fault == "agent":
            assert rows[key] == "agent_error"
        else:
            assert rows[key] == "submitted"


def test_every_attempts_files_and_cost_are_kept(flaky) -> None:
    platform, schedule, _ = flaky
    archive = platform.logs_dir / "_attempts"
    for (pair, setting), fault in schedule.items():
        p = parse_pair_key(pair)
        base = (
            archive
            / Arm("flaky", setting).run_name
            / get_setting(setting).upstream
            / p.repo
            / str(p.task_id)
            / p.features_dir
        )
        if fault == "transient":
            kept = json.loads((base / "1" / "result.json").read_text())
            blocks = [kept["agent"]] if "agent" in kept else list(kept["agents"].values())
            assert "Error" in {b["status"] for b in blocks}
        if fault == "permanent":
            assert sorted(d.name for d in base.iterdir()) == ["1", "2"]  # 3rd is still in place
    manifest_run = platform.materialize(["cost_manifest"])
    assert manifest_run.success
    manifest_file = platform.data_dir / "experiments" / "flaky" / "results-manifest.json"
    manifest = json.loads(manifest_file.read_text())
    counts = Counter(schedule.values())
    want = FAULT_COST * (counts["transient"] + 3 * counts["permanent"])
    assert manifest["totals"]["failed_attempts_cost"] == pytest.approx(want)
    assert manifest["totals"]["failed_attempts"] == (
        counts["transient"] + counts["crash"] + 3 * counts["permanent"]
    )
    # final results' cost includes agent errors' spend, never failed attempts'
    assert manifest["totals"]["cost_final_results"] == pytest.approx(FAULT_COST * counts["agent"])
    # the headline total is every attempt's spend: final results and failed attempts
    assert manifest["totals"]["cost_total"] == pytest.approx(FAULT_COST * counts["agent"] + want)
