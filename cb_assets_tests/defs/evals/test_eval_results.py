"""eval_results over real eval.json shapes, the analysis views, the figures and the report."""

import json
from collections import Counter

import dagster as dg
import pytest
from PIL import Image

from cb_assets.shared.dataset import parse_pair_key
from cb_assets.shared.settings import SETTING_NAMES, get_setting
from cb_assets_tests.support.synthetic import write_eval

PLAN = ["pass", "fail", "pass", "error", "pass"]  # outcome of each pair, rotated per setting
MERGES = ["clean", "conflicts", "clean", "missing_input", "clean"]


@pytest.fixture
def evaluated(make_platform):
    platform = make_platform(n_pairs=5)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    for i, pair in enumerate(pairs):
        p = parse_pair_key(pair)
        for j, setting in enumerate(SETTING_NAMES):
            key = dg.MultiPartitionKey({"pair": pair, "setting": setting})
            platform.materialize(["run_results"], key, raise_on_error=True)
            outcome = PLAN[(i + j) % 5]
            upstream = get_setting(setting).upstream
            pair_dir = (
                platform.logs_dir
                / f"oracle-{setting}"
                / upstream
                / p.repo
                / str(p.task_id)
                / p.features_dir
            )
            write_eval(
                pair_dir,
                upstream,
                outcome=outcome,
                merge=None if upstream == "solo" else MERGES[(i + j) % 5],
                error="patch missing" if outcome == "error" else None,
            )
            platform.materialize(["eval_results"], key, raise_on_error=True)
    return platform, pairs


def test_eval_results_match_the_files(evaluated) -> None:
    platform, _ = evaluated
    outcomes: Counter = Counter()
    for path in platform.logs_dir.rglob("eval.json"):
        data = json.loads(path.read_text())
        setting = path.parts[-6].removeprefix("oracle-")
        outcome = "error" if data["error"] else ("pass" if data["both_passed"] else "fail")
        outcomes[(setting, outcome)] += 1
    got = Counter(
        {
            (s, o): n
            for s, o, n in platform.query(
                "select setting, outcome, count(*) from eval_results group by all"
            )
        }
    )
    assert got == outcomes and sum(got.values()) == 15


def test_analysis_views_deficit_figures_and_report(evaluated) -> None:
    platform, _ = evaluated
    d = platform.defs()
    result = dg.materialize(
        [*d.assets, *d.asset_checks],
        instance=platform.instance,
        resources=d.resources,
        selection=dg.AssetSelection.assets(
            "coordination_deficit", "cost_manifest", "verification_report"
        ),
    )
    assert result.success
    by_setting = {
        s: (p, f, e, r)
        for s, p, f, e, r in platform.query(
            "select setting, passed, failed, errors, pass_rate from pass_rate_by_setting"
        )
    }
    independent = Counter(
        (s, o) for s, o in platform.query("select setting, outcome from eval_results")
    )
    for setting, (passed, failed, errors, rate) in by_setting.items():
        assert (passed, failed, errors) == (
            independent[(setting, "pass")],
            independent[(setting, "fail")],
            independent[(setting, "error")],
        )
        assert rate == pytest.approx(passed / (passed + failed))
    deficit = dict(
        (s, (n, dv))
        for s, n, dv in platform.query(
            "select coop_setting, pairs, deficit from coordination_deficit"
        )
    )
    assert set(deficit) == {"coop-comm", "coop-nocomm"}
    for name in ("messages_vs_success", "pass_rate_by_repo", "cost_per_passing_pair"):
        assert platform.query(f"select count(*) from {name}")[0][0] > 0
    for png in ("pass_rate", "cost_per_setting", "status_mix"):
        path = platform.data_dir / "figures" / f"{png}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    report = (platform.data_dir / "verification-report.md").read_text()
    assert "![pass rate per setting](figures/pass_rate.png)" in report
    assert "| merge and test outcomes are available for every pair-run | FAILED |" in report
    assert "12/15 pair-runs evaluated: 9 pass, 3 fail, 3 errors" in report
