"""cost_manifest and verification_report over a real 5-pair experiment."""

import json
import random
import re
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

from cb_assets.defs.reports.verification import TRUTH_KEYS, truth_keys
from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.settings import DEFAULT_SETTINGS
from cb_assets_tests.support.platform import key
from cb_assets_tests.support.synthetic import agent_block, write_result

SETTINGS = DEFAULT_SETTINGS  # the shipped oracle experiment's settings


def independent_counts(logs_dir: Path) -> dict[str, dict]:
    """Recount the manifest straight from the log files, sharing no code with it."""
    counts: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for path in logs_dir.rglob("result.json"):
        result = json.loads(path.read_text())
        setting = result["run_name"].removeprefix("oracle-")
        agents = [result["agent"]] if "agent" in result else list(result["agents"].values())
        c = counts[setting]
        c["pairs"] += 1
        c["agents"] += len(agents)
        c["cost_total"] += result["total_cost"]
        c["steps_total"] += sum(a["steps"] for a in agents)
        c["patch_lines_total"] += sum(a["patch_lines"] for a in agents)
        c["nonempty_patches"] += sum(a["patch_lines"] > 0 for a in agents)
        c["submitted"] += sum(a["status"] == "Submitted" for a in agents)
        conversation = path.parent / "conversation.json"
        if conversation.exists():
            c["messages_total"] += len(json.loads(conversation.read_text()))
    return counts


@pytest.fixture
def experiment(make_platform):
    """5 pairs x 3 settings: 2 pairs written beforehand (ingested), 3 run by the oracle."""
    platform = make_platform(n_pairs=5)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    rng = random.Random(7)
    for pair in pairs[:2]:
        p = parse_pair_key(pair)
        write_result(
            platform.logs_dir,
            "oracle-solo",
            p,
            "solo",
            agents=[agent_block(cost=round(rng.uniform(0, 2), 4), steps=rng.randint(1, 50))],
        )
        for setting, messages in (("coop-comm", rng.randint(1, 6)), ("coop-nocomm", 0)):
            blocks = [
                agent_block(
                    status=rng.choice(["Submitted", "LimitsExceeded"]),
                    cost=round(rng.uniform(0, 2), 4),
                    steps=rng.randint(1, 50),
                    patch_lines=rng.choice([0, 12]),
                )
                for _ in range(2)
            ]
            write_result(
                platform.logs_dir, f"oracle-{setting}", p, "coop", agents=blocks, messages=messages
            )
    for pair in pairs:
        for setting in SETTINGS:
            platform.materialize(["run_results"], key(pair, setting), raise_on_error=True)
    assert platform.materialize(["cost_manifest", "verification_report"]).success
    return platform, pairs


def test_manifest_matches_an_independent_count_of_the_log_files(experiment) -> None:
    platform, _ = experiment
    manifest = json.loads(
        (platform.data_dir / "experiments" / "oracle" / "results-manifest.json").read_text()
    )
    expected = independent_counts(platform.logs_dir)
    assert set(expected) == set(SETTINGS)
    for setting in SETTINGS:
        got, want = manifest["settings"][setting], expected[setting]
        assert got["pairs"] == want["pairs"] == 5
        assert got["agents"] == want["agents"]
        assert got["cost_final_results"] == pytest.approx(want["cost_total"])
        # nothing failed or ran twice here: all that was spent is the final results
        assert got["cost_total"] == got["cost_final_results"]
        assert got["steps_total"] == want["steps_total"]
        assert got["patch_lines_total"] == want["patch_lines_total"]
        assert got["nonempty_patches"] == want["nonempty_patches"]
        assert got["status_counts"]["Submitted"] == want["submitted"]
        assert got["messages_total"] == want.get("messages_total", 0)
    assert manifest["settings"]["coop-comm"]["messages_total"] > 0
    assert manifest["settings"]["coop-nocomm"]["messages_total"] == 0
    assert manifest["totals"]["cost_final_results"] == pytest.approx(
        sum(expected[s]["cost_total"] for s in SETTINGS)
    )
    assert manifest["totals"]["cost_total"] == manifest["totals"]["cost_final_results"]
    assert (manifest["experiment"], manifest["agent"], manifest["model"]) == ("oracle",) * 3
    table = platform.query(
        "select experiment, setting, pairs from cost_manifest order by experiment, setting"
    )
    assert table == [
        ("oracle", "coop-comm", 5),
        ("oracle", "coop-nocomm", 5),
        ("oracle", "solo", 5),
        ("oracle", "total", 15),
    ]


def test_report_verdict_turns_failed_when_a_result_file_is_removed(experiment) -> None:
    platform, pairs = experiment
    report = platform.data_dir / "experiments" / "oracle" / "verification-report.md"
    text = report.read_text()
    complete = "is complete on the test subset: every pair-run ended in a result"
    assert f"| solo {complete} | VERIFIED |" in text
    assert (
        "| a smoke run of 5 pairs went end to end in every setting "
        "(solo, coop-comm, coop-nocomm) | VERIFIED |"
    ) in text
    assert "experiment: oracle\n" in text and "score: 12/15 truths verified" in text
    verdicts = dict(
        platform.query("select key, verdict from verification_report where experiment = 'oracle'")
    )
    assert verdicts["cost_tracked"] == "VERIFIED"
    assert "team_complete" not in verdicts  # the oracle experiment does not run team
    assert verdicts["images_present"] == "NOT CHECKED"

    p = parse_pair_key(pairs[3])
    (
        platform.logs_dir
        / "oracle-solo"
        / "solo"
        / p.repo
        / str(p.task_id)
        / p.features_dir
        / "result.json"
    ).unlink()
    d = platform.defs()
    result = dg.materialize(
        [*d.assets, *d.asset_checks],
        instance=platform.instance,
        resources=d.resources,
        selection=dg.AssetSelection.assets("verification_report")
        | dg.AssetSelection.checks_for_assets("verification_report"),
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    checks = {k: (e.passed, e.metadata["verdict"].value) for k, e in evaluations.items()}
    assert checks["solo_complete"] == (False, "FAILED")
    assert checks["coop_comm_complete"] == (True, "VERIFIED")
    assert checks["images_present"] == (False, "NOT CHECKED")
    assert len(checks) == len(TRUTH_KEYS)
    # a truth of a setting no experiment here runs is not applicable, and passes
    assert checks["team_complete"] == (True, "NOT APPLICABLE")
    applicable = {k: v for k, v in checks.items() if v[1] != "NOT APPLICABLE"}
    assert set(applicable) == set(truth_keys(SETTINGS))
    # a truth with no data to check is a warning in the UI; a failed one an error
    assert evaluations["images_present"].severity == dg.AssetCheckSeverity.WARN
    images = evaluations["images_present"].metadata
    assert images["note"].value == "not checked for oracle"
    assert images["evidence"].value.startswith("oracle: NOT CHECKED: no task_images recorded yet")
    assert evaluations["solo_complete"].severity == dg.AssetCheckSeverity.ERROR
    for check, (_, verdict) in applicable.items():
        want = (
            dg.AssetCheckSeverity.WARN if verdict == "NOT CHECKED" else dg.AssetCheckSeverity.ERROR
        )
        assert evaluations[check].severity == want, check
    [materialization] = result.asset_materializations_for_node("verification_report")
    ui = materialization.metadata["report"].value  # what the UI renders
    assert ui.startswith("| Field | Value |\n|---|---|\n| phase | ")
    assert "](data:image/png;base64," in ui and "](figures/" not in ui
    assert materialization.metadata["score"].value == "oracle 10/15"
    # the costs, in the report the UI renders: nothing failed, all spent is final results
    costs = dict(
        re.findall(r"^\| (?:Total spent|Final results)[^|]*\(`(\w+)`\) \| ([\d.]+) \|$", ui, re.M)
    )
    assert set(costs) == {"cost_total", "cost_final_results"}
    assert float(costs["cost_total"]) == pytest.approx(float(costs["cost_final_results"]))
    assert float(costs["cost_total"]) > 0
    text = report.read_text()
    assert f"| solo {complete} | FAILED |" in text
    # the broken pair-run named by its partition key (the table cell escapes the `|`)
    assert f"missing or broken: oracle/solo\\|{pairs[3]} |" in text
    assert f"missing or broken: oracle/solo|{pairs[3]}\n" in text
    assert f"| coop-comm {complete} | VERIFIED |" in text
    assert "status: gaps_found" in text
    verdicts = dict(
        platform.query("select key, verdict from verification_report where experiment = 'oracle'")
    )
    assert verdicts["solo_complete"] == "FAILED" and verdicts["smoke_run"] == "FAILED"
