"""cost_manifest and verification_report over a real 5-pair experiment."""

import json
import random
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.settings import SETTING_NAMES
from cb_assets_tests.support.synthetic import agent_block, write_result


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
        for setting in SETTING_NAMES:
            key = dg.MultiPartitionKey({"pair": pair, "setting": setting})
            platform.materialize(["run_results"], key, raise_on_error=True)
    assert platform.materialize(["cost_manifest", "verification_report"]).success
    return platform, pairs


def test_manifest_matches_an_independent_count_of_the_log_files(experiment) -> None:
    platform, _ = experiment
    manifest = json.loads((platform.data_dir / "results-manifest.json").read_text())
    expected = independent_counts(platform.logs_dir)
    assert set(expected) == set(SETTING_NAMES)
    for setting in SETTING_NAMES:
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
        sum(expected[s]["cost_total"] for s in SETTING_NAMES)
    )
    assert manifest["totals"]["cost_total"] == manifest["totals"]["cost_final_results"]
    table = platform.query("select setting, pairs from cost_manifest order by setting")
    assert table == [("coop-comm", 5), ("coop-nocomm", 5), ("solo", 5), ("total", 15)]


def test_report_verdict_turns_failed_when_a_result_file_is_removed(experiment) -> None:
    platform, pairs = experiment
    report = platform.data_dir / "verification-report.md"
    text = report.read_text()
    assert "| solo is complete on the test subset | VERIFIED |" in text
    assert "| a smoke run of 5 pairs went end to end in all three settings | VERIFIED |" in text
    verdicts = dict(platform.query("select key, verdict from verification_report"))
    assert verdicts["cost_tracked"] == "VERIFIED"
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
    assert len(checks) == 10
    # a truth with no data to check is a warning in the UI; a failed one an error
    assert evaluations["images_present"].severity == dg.AssetCheckSeverity.WARN
    assert (
        evaluations["images_present"]
        .metadata["note"]
        .value.startswith("not checked: no task_images recorded yet")
    )
    assert evaluations["solo_complete"].severity == dg.AssetCheckSeverity.ERROR
    for key, (_, verdict) in checks.items():
        want = (
            dg.AssetCheckSeverity.WARN if verdict == "NOT CHECKED" else dg.AssetCheckSeverity.ERROR
        )
        assert evaluations[key].severity == want, key
    [materialization] = result.asset_materializations_for_node("verification_report")
    ui = materialization.metadata["report"].value  # what the UI renders
    assert ui.startswith("| Field | Value |\n|---|---|\n| phase | ")
    assert "](data:image/png;base64," in ui and "](figures/" not in ui
    assert materialization.metadata["cost_total"].value == pytest.approx(
        materialization.metadata["cost_final_results"].value
    )
    text = report.read_text()
    assert "| solo is complete on the test subset | FAILED |" in text
    assert f"missing or broken: {pairs[3]}" in text
    assert "| coop-comm is complete on the test subset | VERIFIED |" in text
    assert "status: gaps_found" in text
    verdicts = dict(platform.query("select key, verdict from verification_report"))
    assert verdicts["solo_complete"] == "FAILED" and verdicts["smoke_run"] == "FAILED"
