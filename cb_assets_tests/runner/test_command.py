from pathlib import Path

from cb_assets.dataset import Pair
from cb_assets.runner.command import RunSpec, pair_log_dir, run_argv

SPEC = RunSpec(
    experiment="exp",
    agent="oracle",
    model="oracle",
    dataset_dir=Path("/ds"),
    logs_dir=Path("/logs"),
    redis_url="redis://127.0.0.1:7000",
)
PAIR = Pair("dspy_task", 8394, 3, 4)


def test_argv_selects_exactly_one_pair() -> None:
    argv = run_argv(SPEC, PAIR, "solo")
    for flag, value in [
        ("-r", "dspy_task"),
        ("-t", "8394"),
        ("-f", "3,4"),
        ("--setting", "solo"),
        ("--log-dir", "/logs"),
        ("--dataset-dir", "/ds"),
        ("--name", "exp-solo"),
    ]:
        assert argv[argv.index(flag) + 1] == value
    assert "--no-auto-eval" in argv and "--force" not in argv


def test_only_coop_nocomm_disables_messaging() -> None:
    assert "--no-messaging" not in run_argv(SPEC, PAIR, "coop-comm")
    assert "--no-messaging" in run_argv(SPEC, PAIR, "coop-nocomm")
    assert "--force" in run_argv(SPEC, PAIR, "coop-nocomm", force=True)


def test_coop_settings_never_share_a_log_tree() -> None:
    comm, nocomm = pair_log_dir(SPEC, PAIR, "coop-comm"), pair_log_dir(SPEC, PAIR, "coop-nocomm")
    assert comm == Path("/logs/exp-coop-comm/coop/dspy_task/8394/f3_f4")
    assert nocomm == Path("/logs/exp-coop-nocomm/coop/dspy_task/8394/f3_f4")


def test_backend_is_passed_through() -> None:
    from dataclasses import replace

    argv = run_argv(replace(SPEC, backend="modal"), PAIR, "solo")
    assert argv[argv.index("--backend") + 1] == "modal"
