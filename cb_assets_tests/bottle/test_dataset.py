"""The bottle's own task (textkit) produces the outcomes it was built for, checked with real git
and pytest, no Docker: every feature's tests fail on the base and pass with its gold patch,
features 1 and 2 conflict, 1 and 3 merge cleanly, 3 and 4 share a byte-identical gold patch, and
runner.sh keeps upstream's contract (pytest's exit code and its "N passed" summary)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cb_assets.bottle

DATASET = Path(cb_assets.bottle.__file__).parent / "dataset"
TASK = DATASET / "textkit_task" / "task1"
FEATURES = (1, 2, 3, 4)

# The host's own git configuration (signing, hooks, default branch) must not change the result.
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
# An outer pytest's options would leak into the inner runs through the environment, and the
# image's pytest has no plugins: the venv's (Dagster's among them) only slow each run down.
PYTEST_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
PYTEST_ENV["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.email=test@bottle.local", "-c", "user.name=test", *args],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def base_repo(tmp_path: Path) -> Path:
    """A checkout of the base commit, made the way the Dockerfile makes it."""
    repo = tmp_path / "repo"
    shutil.copytree(
        TASK / "repo", repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    git(repo, "init", "-q", "-b", "base")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def patch(feature: int, name: str) -> Path:
    return TASK / f"feature{feature}" / name


def apply(repo: Path, *patches: Path) -> None:
    for p in patches:
        git(repo, "apply", str(p))


def reset(repo: Path) -> None:
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-qfdx")


def run_tests(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/"],
        cwd=repo,
        env=PYTEST_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_passes(repo: Path) -> None:
    out = run_tests(repo)
    assert out.returncode == 0, out.stdout + out.stderr


def assert_fails(repo: Path) -> None:
    out = run_tests(repo)
    # A failed assertion or a missing function, not an import or collection error.
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"\d+ failed", out.stdout), out.stdout


def branch_with(repo: Path, name: str, feature: int) -> None:
    git(repo, "checkout", "-q", "-b", name, "base")
    apply(repo, patch(feature, "feature.patch"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"feature {feature}")


def merge(repo: Path, ours: int, theirs: int) -> subprocess.CompletedProcess[str]:
    """Merge like upstream's eval: the second feature's branch merges the first's."""
    branch_with(repo, f"f{ours}", ours)
    branch_with(repo, f"f{theirs}", theirs)
    return git(repo, "merge", f"f{ours}", "--no-ff", "-m", "merge", check=False)


def changed_paths(p: Path) -> list[str]:
    return re.findall(r"^diff --git a/(\S+) b/", p.read_text(), re.MULTILINE)


@pytest.mark.parametrize("feature", FEATURES)
def test_feature_tests_fail_on_the_base_and_pass_with_the_gold_patch(tmp_path, feature) -> None:
    assert not any(p.startswith("tests/") for p in changed_paths(patch(feature, "feature.patch")))
    assert changed_paths(patch(feature, "tests.patch")) == [f"tests/test_feature{feature}.py"]
    repo = base_repo(tmp_path)
    assert_passes(repo)  # the existing tests hold on the base

    apply(repo, patch(feature, "tests.patch"))
    assert_fails(repo)
    reset(repo)

    apply(repo, patch(feature, "feature.patch"), patch(feature, "tests.patch"))
    assert_passes(repo)


@pytest.mark.parametrize(("gold", "tests"), [(1, 2), (2, 1)])
def test_one_conflicting_feature_does_not_satisfy_the_other(tmp_path, gold, tests) -> None:
    repo = base_repo(tmp_path)
    apply(repo, patch(gold, "feature.patch"), patch(tests, "tests.patch"))
    assert_fails(repo)


def test_features_1_and_2_apply_alone_but_conflict_when_merged(tmp_path) -> None:
    repo = base_repo(tmp_path)
    out = merge(repo, 1, 2)  # each branch_with applies its patch alone to the base
    assert out.returncode != 0
    assert "CONFLICT" in out.stdout and "textkit/core.py" in out.stdout, out.stdout + out.stderr


def test_features_1_and_3_merge_cleanly_and_both_pass(tmp_path) -> None:
    repo = base_repo(tmp_path)
    out = merge(repo, 1, 3)
    assert out.returncode == 0, out.stdout + out.stderr
    for feature in (1, 3):
        apply(repo, patch(feature, "tests.patch"))
        assert_passes(repo)
        reset(repo)


def test_features_3_and_4_share_one_gold_patch_and_both_pass(tmp_path) -> None:
    assert patch(3, "feature.patch").read_bytes() == patch(4, "feature.patch").read_bytes()
    assert patch(3, "tests.patch").read_bytes() != patch(4, "tests.patch").read_bytes()
    repo = base_repo(tmp_path)
    out = merge(repo, 3, 4)
    assert out.returncode == 0, out.stdout + out.stderr
    for feature in (3, 4):
        apply(repo, patch(feature, "tests.patch"))
        assert_passes(repo)
        reset(repo)


@pytest.mark.parametrize("feature", FEATURES)
def test_the_combined_patch_passes_every_feature(tmp_path, feature) -> None:
    repo = base_repo(tmp_path)
    apply(repo, TASK / "combined.patch", patch(feature, "tests.patch"))
    assert_passes(repo)


def run_runner(repo: Path, patches: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # runner.sh calls `python3` from PATH; the host's may lack pytest, the venv's has it.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**PYTEST_ENV, **GIT_ENV, "PATH": path}
    env |= {"CB_TASK_REPO": str(repo), "CB_TASK_PATCHES": str(patches)}
    return subprocess.run(
        ["bash", str(TASK / "runner.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_runner_exits_with_pytests_code_and_prints_its_summary(tmp_path) -> None:
    repo = base_repo(tmp_path)
    patches = tmp_path / "patches"
    patches.mkdir()
    for name in ("tests.patch", "feature.patch"):
        shutil.copy(patch(1, name), patches / name)

    out = run_runner(repo, patches, "tests.patch", "feature.patch")
    output = out.stdout + out.stderr
    assert out.returncode == 0, output
    # upstream's parser (cooperbench.eval.sandbox._parse_results) reads "N passed"
    assert re.search(r"\b5 passed\b", output), output
    assert git(repo, "status", "--porcelain").stdout == ""  # the trap put the base back

    out = run_runner(repo, patches, "tests.patch")
    output = out.stdout + out.stderr
    assert out.returncode == 1, output
    assert re.search(r"\b2 failed\b", output) and re.search(r"\b3 passed\b", output), output
    assert git(repo, "status", "--porcelain").stdout == ""


def test_the_subset_lists_only_pairs_of_existing_features() -> None:
    subset = json.loads((DATASET / "subsets" / "bottle.json").read_text())
    assert subset["name"] == "bottle"
    pairs = [
        (task["repo"], task["task_id"], tuple(pair))
        for task in subset["tasks"]
        for pair in task["pairs"]
    ]
    assert pairs
    for repo, task_id, pair in pairs:
        task_dir = DATASET / repo / f"task{task_id}"
        assert len(pair) == 2 and pair[0] < pair[1], pair
        for feature in pair:
            for name in ("feature.md", "feature.patch", "tests.patch"):
                assert (task_dir / f"feature{feature}" / name).is_file(), (repo, task_id, pair)
    assert len(set(pairs)) == len(pairs)
    assert subset["stats"] == {
        "tasks": len(subset["tasks"]),
        "pairs": len(pairs),
        "repos": len({repo for repo, _, _ in pairs}),
    }
