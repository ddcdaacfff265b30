"""eval_results over real eval.json shapes, the analysis views, the figures and the report."""

import json
import re
from collections import Counter

import dagster as dg
import pytest
from PIL import Image

from cb_assets.shared.settings import DEFAULT_SETTINGS, get_setting
from cb_assets_tests.support.platform import key, pair_dir
from cb_assets_tests.support.synthetic import write_eval

PLAN = ["pass", "fail", "pass", "error", "pass"]  # outcome of each pair, rotated per setting
MERGES = ["clean", "conflicts", "clean", "missing_input", "clean"]


@pytest.fixture
def evaluated(make_platform):
    platform = make_platform(n_pairs=5)
    assert platform.materialize(["benchmark_pairs"]).success
    pairs = [r[0] for r in platform.query("select pair from benchmark_pairs order by pair")]
    for i, pair in enumerate(pairs):
        for j, setting in enumerate(DEFAULT_SETTINGS):  # the shipped oracle experiment's
            partition = key(pair, setting)
            platform.materialize(["run_results"], partition, raise_on_error=True)
            outcome = PLAN[(i + j) % 5]
            upstream = get_setting(setting).upstream
            write_eval(
                pair_dir(platform, pair, setting),
                upstream,
                outcome=outcome,
                merge=None if upstream == "solo" else MERGES[(i + j) % 5],
                error="patch missing" if outcome == "error" else None,
            )
            platform.materialize(["eval_results"], partition, raise_on_error=True)
    return platform, pairs


def test_eval_results_match_the_files(evaluated) -> None:
    platform, _ = evaluated
    outcomes: Counter = Counter()
    for path in platform.logs_dir.rglob("eval.json"):
        data = json.loads(path.read_text())
        setting = path.parts[-6].removeprefix("oracle-")
        outcome = "error" if data["error"] else ("pass" if data["both_passed"] else "fail")
        outcomes[("oracle", setting, 1, f"oracle/{setting}", outcome)] += 1
    got = Counter(
        {
            row[:-1]: row[-1]
            for row in platform.query(
                "select experiment, setting, repeat, arm, outcome, count(*) from eval_results "
                "group by all"
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
            "coordination_deficit", "cost_manifest", "verification_report", "experiment_comparison"
        ),
    )
    assert result.success
    by_setting = {
        s: (p, f, e, r)
        for x, s, p, f, e, r in platform.query(
            "select experiment, setting, passed, failed, errors, pass_rate "
            "from pass_rate_by_setting"
        )
        if x == "oracle"
    }
    assert set(by_setting) == set(DEFAULT_SETTINGS)
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
    deficit = platform.query(
        "select experiment, coop_setting, coalesce(cast(repeat as varchar), 'pooled'), pairs "
        "from coordination_deficit order by all"
    )
    # one row per repeat and one pooled over repeats, for each coop setting, over the pairs
    # evaluated without error both solo and in that setting
    ok = {
        (pair, setting)
        for pair, setting in platform.query(
            "select pair, setting from eval_results where outcome <> 'error'"
        )
    }
    matched = {
        coop: sum((pair, "solo") in ok for pair, s in ok if s == coop)
        for coop in ("coop-comm", "coop-nocomm")
    }
    assert matched == {"coop-comm": 3, "coop-nocomm": 3}  # PLAN's errors fall on other pairs
    assert deficit == [
        ("oracle", "coop-comm", "1", matched["coop-comm"]),
        ("oracle", "coop-comm", "pooled", matched["coop-comm"]),
        ("oracle", "coop-nocomm", "1", matched["coop-nocomm"]),
        ("oracle", "coop-nocomm", "pooled", matched["coop-nocomm"]),
    ]
    comparison = platform.query(
        "select experiment, setting, evaluated, passed from experiment_comparison order by all"
    )
    assert {(e, s) for e, s, _, _ in comparison} == {("oracle", s) for s in DEFAULT_SETTINGS}
    for _, setting, evaluated, passed in comparison:
        assert (evaluated, passed) == (
            by_setting[setting][0] + by_setting[setting][1],
            by_setting[setting][0],
        )
    for name in ("messages_vs_success", "pass_rate_by_repo", "cost_per_passing_pair"):
        assert platform.query(f"select count(*) from {name}")[0][0] > 0
    experiment_dir = platform.data_dir / "experiments" / "oracle"
    for path in (
        experiment_dir / "figures" / "cost_per_setting.png",
        experiment_dir / "figures" / "status_mix.png",
        platform.data_dir / "comparison" / "pass_rate_by_experiment.png",
    ):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
    report = (experiment_dir / "verification-report.md").read_text()
    assert "| merge and test outcomes are available for every pair-run | FAILED |" in report
    assert "12/15 pair-runs evaluated: 9 pass, 3 fail, 3 errors" in report
    # every figure the report links is drawn, the pass rate one among them
    linked = re.findall(r"!\[([^\]]*)\]\(([^)]+\.png)\)", report)
    assert any("pass rate" in alt for alt, _ in linked), linked
    for _, target in linked:
        assert (experiment_dir / target).is_file(), f"the report links {target}, never drawn"
