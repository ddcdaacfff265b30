"""The `replay` agent: the recorded duration (scaled) and cost of its pair, the gold patch,
and one `replay:` line naming the tree and the pair when it cannot replay. In-process for
the lookups, then through the real runner, as a fresh process and through the fork server."""

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml

from cb_assets.agents.offline import OracleRunner
from cb_assets.agents.replay import ReplayError, find_recording, replay_config, run_replay
from cb_assets.defs.runs.preflight import agent_problem
from cb_assets.runner.command import RunSpec, pair_log_dir, run_argv, run_env
from cb_assets.runner.launch import child_env, launch
from cb_assets.shared.dataset import Pair, gold_patch, load_pairs
from cb_assets.shared.failures import classify_result, load_patterns
from cb_assets.shared.partition_keys import Arm
from cb_assets_tests.support.synthetic import agent_block, make_subset_dataset, write_result

RUN = "recorded"


def record(tree: Path, pair: Pair, setting: str, duration: float, costs: list[float]) -> Path:
    """A recorded pair-run in upstream's layout under `tree` (a logs root), run `recorded`."""
    folder = write_result(
        tree,
        RUN,
        pair,
        setting,
        agents=[agent_block(cost=c, steps=7 + i) for i, c in enumerate(costs)],
    )
    result = json.loads((folder / "result.json").read_text())
    result["duration_seconds"] = duration
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def agent_config(path: Path, tree: Path | str, scale: float) -> Path:
    path.write_text(yaml.safe_dump({"replay_tree": str(tree), "replay_scale": scale}))
    return path


@pytest.fixture
def pairs(lite_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> list[Pair]:
    monkeypatch.setenv("CB_DATASET_DIR", str(lite_dataset))  # where oracle reads gold patches
    return load_pairs(lite_dataset, "lite")[:3]


def log_dir(pair: Pair, kind: str) -> str:
    """What upstream hands an agent: <logs>/<run>/<kind>/<repo>/<task>/f<a>_f<b>."""
    return f"/logs/replay-x/{kind}/{pair.repo}/{pair.task_id}/{pair.features_dir}"


def test_replays_the_pairs_duration_and_cost_with_the_gold_patch(
    tmp_path: Path, pairs: list[Pair], lite_dataset: Path
) -> None:
    pair, other = pairs[0], pairs[1]
    record(tmp_path / "tree", pair, "coop", duration=60.0, costs=[0.25, 0.5])
    record(tmp_path / "tree", other, "coop", duration=6000.0, costs=[9.0, 9.0])
    record(tmp_path / "tree", pair, "solo", duration=3000.0, costs=[1.5])
    config = {"replay_tree": str(tmp_path / "tree" / RUN), "replay_scale": 100}
    agents = ["agent1", "agent2"]
    results = {}
    for agent_id in agents:
        start = time.monotonic()
        results[agent_id] = run_replay(
            "task", "image", agent_id=agent_id, agents=agents, log_dir=log_dir(pair, "coop"),
            config=config, messaging_enabled=False, gold=OracleRunner().run,
        )  # fmt: skip
        assert 0.6 <= time.monotonic() - start < 3  # 60 s / 100
    assert [results[a].cost for a in agents] == [0.25, 0.5]
    assert [results[a].steps for a in agents] == [7, 8]
    assert results["agent2"].patch == gold_patch(
        lite_dataset, pair.repo, pair.task_id, pair.feature_b
    )
    solo = run_replay(
        "task", "image", agent_id="solo", log_dir=log_dir(pair, "solo"),
        config={**config, "replay_scale": 3000}, gold=OracleRunner().run,
    )  # fmt: skip
    assert solo.cost == 1.5 and solo.status == "Submitted"
    assert solo.patch == "".join(
        gold_patch(lite_dataset, pair.repo, pair.task_id, f)
        for f in (pair.feature_a, pair.feature_b)
    )


def test_tree_is_a_run_folder_or_a_logs_root_relative_to_its_config_file(
    tmp_path: Path, pairs: list[Pair]
) -> None:
    pair = pairs[0]
    record(tmp_path / "logs", pair, "coop", duration=1.0, costs=[0.1, 0.2])
    config_file = agent_config(tmp_path / "replay.yaml", "logs", 10)
    settings = replay_config(yaml.safe_load(config_file.read_text()), str(config_file))
    assert settings.tree == (tmp_path / "logs").resolve() and settings.scale == 10
    found = find_recording(
        settings.tree, "coop", pair.repo, pair.task_id, [pair.feature_b, pair.feature_a]
    )
    assert (
        found
        == settings.tree
        / RUN
        / "coop"
        / pair.repo
        / str(pair.task_id)
        / pair.features_dir
        / "result.json"
    )
    assert (
        find_recording(
            settings.tree / RUN, "coop", pair.repo, pair.task_id, [pair.feature_a, pair.feature_b]
        )
        == found
    )


def test_a_pair_the_tree_lacks_or_a_bad_tree_is_one_line_naming_them(
    tmp_path: Path, pairs: list[Pair]
) -> None:
    pair, missing = pairs[0], pairs[1]
    folder = record(tmp_path / "tree", pair, "coop", duration=1.0, costs=[0.1, 0.2])
    tree = tmp_path / "tree" / RUN
    call = {
        "agent_id": "agent1",
        "agents": ["agent1", "agent2"],
        "messaging_enabled": False,
        "gold": OracleRunner().run,
    }

    def replay(config: dict, target: Pair = pair, kind: str = "coop", **extra) -> None:
        run_replay("task", "image", log_dir=log_dir(target, kind), config=config, **call, **extra)

    lacking = f"no recorded coop run of {missing.repo}/{missing.task_id} {missing.features_dir}"
    with pytest.raises(ReplayError, match=re.escape(f"replay: {lacking} in the tree {tree} (")):
        replay({"replay_tree": str(tree)}, missing)
    with pytest.raises(ReplayError, match=f"no recorded solo run of {pair.repo}/{pair.task_id}"):
        replay({"replay_tree": str(tree)}, kind="solo")
    with pytest.raises(ReplayError, match="replay_tree is not set \\(no agent config given\\)"):
        replay({"backend": "docker"})
    with pytest.raises(
        ReplayError, match=re.escape(f"replay_tree {tmp_path / 'nowhere'} is not a folder")
    ):
        replay({"replay_tree": str(tmp_path / "nowhere")}, agent_config="/x/replay.yaml")
    with pytest.raises(ReplayError, match=r"replay_scale=0 \(no agent config given\): expected"):
        replay({"replay_tree": str(tree), "replay_scale": 0})
    (folder / "result.json").write_text('{"duration_seconds": "long", "agents": {}}')
    with pytest.raises(
        ReplayError, match=re.escape(f"{folder / 'result.json'}: duration_seconds 'long'")
    ):
        replay({"replay_tree": str(tree)})
    (folder / "result.json").write_text("{not json")
    with pytest.raises(ReplayError, match=re.escape(f"{folder / 'result.json'}: cannot read")):
        replay({"replay_tree": str(tree)})


def test_the_platform_knows_the_agent() -> None:
    assert agent_problem("replay", []) is None


@pytest.mark.parametrize("launcher", ["subprocess", "forkserver"])
def test_through_the_real_runner(
    launcher: str, tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    """`cooperbench run -a replay --agent-config FILE` for a pair it has and one it lacks:
    the first's result holds the recorded costs and lasts at least the scaled duration, the
    second's agents end in Error naming the tree and the pair (a result, not a retry)."""
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", 2)
    pair, missing = load_pairs(dataset, "test")
    record(tmp_path / "tree", pair, "coop", duration=150.0, costs=[0.3, 0.4])
    config_file = agent_config(tmp_path / "replay.yaml", tmp_path / "tree" / RUN, 100)
    logs = tmp_path / "logs"
    spec = RunSpec("replay", "replay", dataset, logs, redis_url, agent_config=config_file)
    arm = Arm("replay", "coop-nocomm", 1)
    env = child_env(os.environ, {**run_env(spec), "CB_DATASET_DIR": str(dataset)})
    for target in (pair, missing):
        outcome = launch(
            launcher, run_argv(spec, target, arm), env,
            logs / "_attempts" / f"{target.features_dir}.log", 120, fork_socket,
        )  # fmt: skip
        assert outcome.exit_code == 0, outcome.log_path.read_text()[-2000:]
    result = json.loads((pair_log_dir(logs, pair, arm) / "result.json").read_text())
    assert {a["feature_id"]: a["cost"] for a in result["agents"].values()} == {
        pair.feature_a: 0.3,
        pair.feature_b: 0.4,
    }
    assert result["total_cost"] == pytest.approx(0.7) and result["duration_seconds"] >= 1.5
    assert all(
        a["status"] == "Submitted" and a["patch_lines"] > 0 for a in result["agents"].values()
    )
    lacking = json.loads((pair_log_dir(logs, missing, arm) / "result.json").read_text())
    errors = {a["error"] for a in lacking["agents"].values()}
    assert errors == {
        f"replay: no recorded coop run of {missing.repo}/{missing.task_id} "
        f"{missing.features_dir} in the tree {(tmp_path / 'tree' / RUN).resolve()} (looked for "
        f"{(tmp_path / 'tree' / RUN).resolve()}/coop/{missing.repo}/{missing.task_id}/"
        f"{missing.features_dir}/result.json)"
    }
    assert classify_result(lacking).classification == "agent_error"
    # docs/experiments.md: a pattern file makes it a config error that stops the experiment
    patterns = tmp_path / "patterns.json"
    patterns.write_text(
        json.dumps([{"name": "replay", "regex": "^replay: ", "classification": "config_error"}])
    )
    assert classify_result(lacking, load_patterns(patterns)).classification == "config_error"
