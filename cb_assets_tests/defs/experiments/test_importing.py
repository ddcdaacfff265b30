"""`cb-assets import`'s logic against real upstream run directories (copied: the originals
are never written next to), checked by walks of the folders independent of the importer."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets.defs.experiments.importing import (
    RunImportError,
    execute_import,
    experiment_from_config,
    plan_import,
    read_run_config,
)
from cb_assets.shared.dataset import dataset_tasks
from cb_assets.shared.experiments import append_experiment
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.services import require

REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"
LLAMA = "llama_index_task-17070-f1_f3"  # its task is in no dataset subset
IN_LITE = "dspy_task-8394-f3_f5"


@pytest.fixture(scope="module")
def real_logs() -> Path:
    require((REAL_LOGS / "nano_msg_2" / "config.json").is_file(), f"no real logs at {REAL_LOGS}")
    return REAL_LOGS


@pytest.fixture(scope="module")
def lite_pairs(lite_dataset: Path) -> set[tuple[str, int]]:
    """The dataset's tasks (its name kept from when pairs were compared)."""
    return dataset_tasks(lite_dataset)


def copy_run(real_logs: Path, name: str, tmp_path: Path) -> Path:
    """A writable copy of a real run (the originals are read-only), times kept."""
    run = shutil.copytree(real_logs / name, tmp_path / "upstream" / name)
    for folder, _, files in os.walk(run):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)
    return run


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: bytes of files, mtimes of files and folders (a file added
    to a folder changes the folder's mtime)."""
    found = {}
    for folder, _, files in os.walk(root):
        found[folder] = ("dir", os.stat(folder).st_mtime_ns)
        for name in files:
            path = Path(folder, name)
            found[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def pair_keys_on_disk(subtree: Path) -> set[str]:
    return {
        f"{p.parent.parent.parent.name}-{p.parent.parent.name}-{p.parent.name}"
        for p in subtree.glob("*/*/*/result.json")
    }


def test_nano_msg_2_arrives_byte_for_byte_and_a_second_import_is_unchanged(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_msg_2", tmp_path), tmp_path / "logs"
    before = snapshot(run)
    arm = Arm("nano", "coop-comm", 2)

    plan = plan_import(run, arm, logs, lite_pairs)
    assert plan.problems == ()
    by_key = {p.key: p for p in plan.pairs}
    assert set(by_key) == pair_keys_on_disk(run / "coop") and len(by_key) == 20
    assert by_key[LLAMA].in_dataset is False and LLAMA in plan.out_of_dataset
    assert by_key[IN_LITE].in_dataset is True and IN_LITE not in plan.out_of_dataset
    root = logs / "nano-coop-comm-r2"
    assert by_key[LLAMA].destination == root / "coop" / "llama_index_task" / "17070" / "f1_f3"

    outcome = execute_import(plan)
    assert (outcome.imported, outcome.unchanged, outcome.skipped) == (20, 0, 0)
    assert outcome.problems == [] and LLAMA in outcome.out_of_dataset
    assert sorted(outcome.destinations) == sorted(p.destination for p in plan.pairs)
    assert files_under(root / "coop") == files_under(run / "coop")
    assert sorted(os.listdir(logs)) == ["nano-coop-comm-r2"]  # nothing else, no staging left
    assert sorted(os.listdir(root)) == ["config.json", "coop", "summary.json"]
    for name in ("config.json", "summary.json"):
        assert (root / name).read_bytes() == (run / name).read_bytes()

    imported = snapshot(root)
    again = execute_import(plan_import(run, arm, logs, lite_pairs))
    assert (again.imported, again.unchanged, again.skipped) == (0, 20, 0)
    assert snapshot(root) == imported  # not rewritten
    assert snapshot(run) == before


def test_a_result_whose_features_disagree_with_its_folder_is_the_one_problem(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_msg_2", tmp_path), tmp_path / "logs"
    bad = run / "coop" / "llama_index_task" / "17070" / "f1_f3" / "result.json"
    data = json.loads(bad.read_text())
    data["features"] = [1, 4]
    bad.write_text(json.dumps(data))
    before = snapshot(run)

    outcome = execute_import(plan_import(run, Arm("nano", "coop-comm"), logs, lite_pairs))
    assert (outcome.imported, outcome.skipped) == (19, 1)
    [problem] = outcome.problems
    assert problem.path == bad and str(bad) in str(problem) and "features" in str(problem)
    assert not (logs / "nano-coop-comm" / "coop" / "llama_index_task" / "17070").exists()
    assert snapshot(run) == before


def test_a_truncated_result_is_the_one_problem(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_msg_2", tmp_path), tmp_path / "logs"
    bad = run / "coop" / "dspy_task" / "8394" / "f3_f5" / "result.json"
    bad.write_bytes(bad.read_bytes()[:200])

    outcome = execute_import(plan_import(run, Arm("nano", "coop-comm"), logs, lite_pairs))
    assert (outcome.imported, outcome.skipped) == (19, 1)
    [problem] = outcome.problems
    assert problem.path == bad and "invalid JSON" in str(problem) and str(bad) in str(problem)
    assert pair_keys_on_disk(logs / "nano-coop-comm" / "coop") == (
        pair_keys_on_disk(run / "coop") - {IN_LITE}
    )


def test_a_no_messaging_run_is_refused_as_a_messaging_setting(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_nomsg_git_1", tmp_path), tmp_path / "logs"
    with pytest.raises(RunImportError, match="messaging_mode") as refused:
        plan_import(run, Arm("nano", "coop-git"), logs, lite_pairs)
    message = str(refused.value)
    assert str(run / "config.json") in message and "coop-git-nocomm" in message
    assert "\n" not in message and not logs.exists()

    outcome = execute_import(plan_import(run, Arm("nano", "coop-git-nocomm"), logs, lite_pairs))
    assert (outcome.imported, outcome.skipped) == (20, 0)
    assert files_under(logs / "nano-coop-git-nocomm" / "coop") == files_under(run / "coop")

    free = copy_run(real_logs, "nano_free_git_1", tmp_path)
    with pytest.raises(RunImportError, match="'free' but coop-git-nocomm has messaging off"):
        plan_import(free, Arm("free", "coop-git-nocomm"), logs, lite_pairs)


def test_a_solo_run_imports_as_solo_only(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_solo_1", tmp_path), tmp_path / "logs"
    with pytest.raises(RunImportError, match="key 'setting' is 'solo' but coop-comm runs"):
        plan_import(run, Arm("nano", "coop-comm"), logs, lite_pairs)

    plan = plan_import(run, Arm("nano", "solo"), logs, lite_pairs)
    assert plan.run_files == ("config.json", "summary.json")  # it has no eval_summary.json
    outcome = execute_import(plan)
    assert (outcome.imported, outcome.skipped) == (20, 0)
    assert files_under(logs / "nano-solo" / "solo") == files_under(run / "solo")


def test_a_broken_config_is_refused_naming_the_file_and_key(
    real_logs: Path, lite_pairs: set[tuple[str, int]], tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_msg_2", tmp_path), tmp_path / "logs"
    config = run / "config.json"
    original = config.read_bytes()
    config.unlink()
    with pytest.raises(RunImportError, match="not found") as refused:
        plan_import(run, Arm("nano", "coop-comm"), logs, lite_pairs)
    assert str(refused.value).startswith(f"{config}: ")

    config.write_bytes(original[:40])
    with pytest.raises(RunImportError, match="invalid JSON"):
        read_run_config(run)
    config.write_text(json.dumps({**json.loads(original), "model": 5}))
    with pytest.raises(RunImportError, match=r"config\.json: key 'model': 5 is not"):
        read_run_config(run)
    config.write_text(json.dumps({**json.loads(original), "messaging_mode": "loud"}))
    with pytest.raises(RunImportError, match="key 'messaging_mode': 'loud'"):
        read_run_config(run)
    assert not logs.exists()


def test_a_run_inside_the_logs_root_is_refused(real_logs: Path, tmp_path: Path) -> None:
    run = copy_run(real_logs, "smoke_ca_1", tmp_path)
    with pytest.raises(RunImportError, match="inside the logs root"):
        plan_import(run, Arm("smoke", "coop-comm"), run.parent, set())


def test_a_differing_destination_is_left_alone_unless_replaced(
    real_logs: Path, tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "smoke_ca_1", tmp_path), tmp_path / "logs"
    arm = Arm("smoke", "coop-comm")
    [planned] = plan_import(run, arm, logs, set()).pairs
    assert planned.in_dataset is False and execute_import(plan_import(run, arm, logs, set()))
    edited = planned.destination / "eval.json"
    os.chmod(edited, 0o644)
    edited.write_text("{}")

    kept = execute_import(plan_import(run, arm, logs, set()))
    assert (kept.imported, kept.unchanged, kept.skipped) == (0, 0, 1)
    assert kept.problems[0].path == edited and edited.read_text() == "{}"

    summary = logs / "smoke-coop-comm" / "summary.json"
    os.chmod(summary, 0o644)
    summary.write_text("{}")
    kept = execute_import(plan_import(run, arm, logs, set()))
    assert sorted(p.path for p in kept.problems) == sorted([edited, summary])
    assert summary.read_text() == "{}"

    replaced = execute_import(plan_import(run, arm, logs, set()), replace=True)
    assert (replaced.imported, replaced.skipped) == (1, 0)
    assert files_under(planned.destination) == files_under(planned.source)
    assert summary.read_bytes() == (run / "summary.json").read_bytes()

    other = copy_run(real_logs, "nano_msg_1", tmp_path)  # another run into the same arm
    with pytest.raises(RunImportError, match="already holds another run"):
        execute_import(plan_import(other, arm, logs, set()))
    assert sorted(os.listdir(logs / "smoke-coop-comm" / "coop")) == ["openai_tiktoken_task"]


def test_hostile_entries_are_problems_and_other_files_come_along(
    real_logs: Path, tmp_path: Path
) -> None:
    run, logs = copy_run(real_logs, "nano_msg_2", tmp_path), tmp_path / "logs"
    coop = run / "coop"
    fifo = coop / "dspy_task" / "8394" / "f3_f5" / "conversation.json"
    fifo.unlink()
    os.mkfifo(fifo)  # reading it would block forever
    outside = tmp_path / "elsewhere.json"
    linked = coop / "pillow_task" / "25" / "f3_f4" / "result.json"
    shutil.copy(linked, outside)
    linked.unlink()
    linked.symlink_to(outside)
    renamed = coop / "pillow_task" / "68" / "f3_f2"
    (coop / "pillow_task" / "68" / "f2_f3").rename(renamed)
    broken_eval = coop / "pallets_jinja_task" / "1465" / "f1_f8" / "eval.json"
    broken_eval.write_bytes(broken_eval.read_bytes()[:-2])
    patch = coop / "dspy_task" / "8587" / "f4_f5" / "agent1.patch"
    patch.write_text("diff --git a/x b/x\n")

    plan = plan_import(run, Arm("nano", "coop-comm"), logs, set())
    expected = [fifo, linked, renamed, broken_eval]
    assert sorted(str(p.path) for p in plan.problems) == sorted(map(str, expected))
    outcome = execute_import(plan)
    assert (outcome.imported, outcome.skipped) == (16, 4)
    copied = logs / "nano-coop-comm" / "coop" / "dspy_task" / "8587" / "f4_f5" / "agent1.patch"
    assert copied.read_bytes() == patch.read_bytes()


def test_the_experiment_of_an_import_goes_into_the_registry(
    real_logs: Path, tmp_path: Path
) -> None:
    config = read_run_config(copy_run(real_logs, "nano_free_git_1", tmp_path))
    assert (config.run_name, config.setting, config.messaging_mode) == (
        "nano_free_git_1",
        "coop",
        "free",
    )
    assert (config.agent_framework, config.model) == ("claude_code", "claude-sonnet-5")
    experiment = experiment_from_config("freegit", config, "coop-git")
    assert experiment.imported and experiment.settings == ("coop-git",)
    assert "nano_free_git_1" in experiment.description
    registry = tmp_path / "experiments.yaml"
    registry.write_text("experiments:\n  - name: oracle\n    agent: oracle\n    model: none\n")
    read_back = append_experiment(registry, experiment, "imported").get("freegit")
    fields = ("agent", "model", "source", "description")
    assert [getattr(read_back, f) for f in fields] == [getattr(experiment, f) for f in fields]
    with pytest.raises(RunImportError, match="not an experiment name"):
        experiment_from_config("free-git", config, "coop-git")
