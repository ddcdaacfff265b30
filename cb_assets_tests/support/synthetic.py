"""Result trees in upstream's layout and shapes (cooperbench 0.0.29), for tests and benchmarks."""

import json
from pathlib import Path
from typing import Any

from cb_assets.shared.dataset import Pair, load_pairs


def agent_block(
    status: str = "Submitted",
    cost: float = 0.5,
    steps: int = 10,
    patch_lines: int = 20,
    error: str | None = None,
    **extra: Any,
) -> dict:
    return {
        "status": status,
        "cost": cost,
        "steps": steps,
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "patch_lines": patch_lines,
        "error": error,
        **extra,
    }


def write_result(
    logs_dir: Path,
    run_name: str,
    pair: Pair,
    setting: str,
    *,
    agents: list[dict] | None = None,
    messages: int = 0,
    run_id: str = "abcd1234",
) -> Path:
    """Write one pair's files; `setting` is upstream's: 'solo' or 'coop'."""
    pair_dir = logs_dir / run_name / setting / pair.repo / str(pair.task_id) / pair.features_dir
    pair_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "repo": pair.repo,
        "task_id": pair.task_id,
        "features": [pair.feature_a, pair.feature_b],
        "setting": setting,
        "run_id": run_id,
        "run_name": run_name,
        "agent_framework": "mini_swe_agent_v2",
        "model": "command-a-03-2025",
        "started_at": "2026-11-25T10:00:00",
        "ended_at": "2026-11-25T10:05:00",
        "duration_seconds": 300.0,
        "log_dir": str(pair_dir),
    }
    if setting == "solo":
        block = (agents or [agent_block()])[0]
        result.update(agent=block, total_cost=block["cost"], total_steps=block["steps"])
        (pair_dir / "solo.patch").write_text("")
    else:
        blocks = agents or [agent_block(), agent_block()]
        named = {
            f"agent{i + 1}": {"feature_id": f, **b}
            for i, (f, b) in enumerate(zip([pair.feature_a, pair.feature_b], blocks, strict=True))
        }
        result.update(
            agents=named,
            total_cost=sum(b["cost"] for b in blocks),
            total_steps=sum(b["steps"] for b in blocks),
            messages_sent=messages,
        )
        conversation = [
            {
                "from": "agent1",
                "to": "agent2",
                "message": f"note {i}",
                "timestamp": 1.0 + i,
                "feature_id": pair.feature_a,
            }
            for i in range(messages)
        ]
        (pair_dir / "conversation.json").write_text(json.dumps(conversation))
    (pair_dir / "result.json").write_text(json.dumps(result, indent=2))
    return pair_dir


def write_eval(
    pair_dir: Path,
    setting: str,
    *,
    outcome: str,
    merge: str | None = "clean",
    error: str | None = None,
) -> Path:
    """An eval.json as `cooperbench eval` writes it (eval/evaluate.py, _evaluate_single)."""
    passed = outcome == "pass"
    data: dict[str, Any] = {
        "repo": "r",
        "task_id": 1,
        "features": [1, 2],
        "setting": setting,
        "feature1": {"passed": passed or outcome == "half", "test_output": "..."},
        "feature2": {"passed": passed, "test_output": "..."},
        "both_passed": passed,
        "error": error,
        "evaluated_at": "2026-11-25T10:00:00",
    }
    if setting == "coop":
        data["merge"] = None if merge is None else {"status": merge, "strategy": "naive"}
        data["apply_status"] = "applied"
    else:
        data["merge"] = None
    pair_dir.mkdir(parents=True, exist_ok=True)
    (pair_dir / "eval.json").write_text(json.dumps(data, indent=2))
    return pair_dir / "eval.json"


def make_subset_dataset(source: Path, target: Path, n_pairs: int, name: str = "test") -> Path:
    """A dataset folder holding the first `n_pairs` lite pairs (task folders are symlinks)."""
    pairs = load_pairs(source, "lite")[:n_pairs]
    (target / "subsets").mkdir(parents=True)
    tasks: dict[tuple[str, int], list[list[int]]] = {}
    for p in pairs:
        tasks.setdefault((p.repo, p.task_id), []).append([p.feature_a, p.feature_b])
        (target / p.repo).mkdir(exist_ok=True)
        link = target / p.repo / f"task{p.task_id}"
        if not link.exists():
            link.symlink_to(source / p.repo / f"task{p.task_id}")
    spec = {
        "name": name,
        "tasks": [{"repo": r, "task_id": t, "pairs": ps} for (r, t), ps in tasks.items()],
    }
    (target / "subsets" / f"{name}.json").write_text(json.dumps(spec))
    return target
