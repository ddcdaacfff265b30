"""Turn upstream's eval.json (written by `cooperbench eval`) into one row per pair-run.

Outcomes follow upstream's own tally: `error` when the evaluation itself failed,
`pass` when both features' tests passed, `fail` otherwise (merge conflicts included).
Errors are kept apart from pass rates.
"""

from pathlib import Path
from typing import Any

import pandas as pd

from cb_assets.defs.runs.results import ResultFileError, read_json_file
from cb_assets.shared.dataset import Pair
from cb_assets.shared.failures import INFRA_ERROR, Pattern, classify_text
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.secrets import scrub
from cb_assets.shared.settings import get_setting

MERGE_STATUSES = ("clean", "conflicts", "missing_input", "error", "identical")

EVAL_DTYPES = {
    "experiment": "string",
    "setting": "string",
    "repeat": "Int64",
    "arm": "string",
    "pair": "string",
    "repo": "string",
    "task_id": "Int64",
    "merge_status": "string",
    "merge_strategy": "string",
    "feature1_passed": "boolean",
    "feature2_passed": "boolean",
    "both_passed": "boolean",
    "error": "string",
    "outcome": "string",
    "classification": "string",
    "rule": "string",
    "evaluated_at": "string",
    "eval_path": "string",
    "ran": "boolean",
}


def _passed(block: Any, path: Path, key: str) -> bool | None:
    if block is None or block == {}:
        return None
    if not isinstance(block, dict):
        raise ResultFileError(path, f"invalid key '{key}': expected an object")
    value = block.get("passed")
    if value is not None and not isinstance(value, bool):
        raise ResultFileError(path, f"invalid key '{key}.passed': {value!r} is not a boolean")
    return value


def eval_row(
    pair_dir: Path,
    pair: Pair,
    arm: Arm,
    *,
    ran: bool,
    patterns: tuple[Pattern, ...],
    logs_root: Path | None = None,
) -> dict[str, Any]:
    path = pair_dir / "eval.json"
    setting = get_setting(arm.setting)
    data = read_json_file(path, root=logs_root)
    if not isinstance(data, dict):
        raise ResultFileError(path, f"expected a JSON object, got {type(data).__name__}")
    if data.get("setting") != setting.upstream:
        raise ResultFileError(
            path, f"key 'setting' is {data.get('setting')!r}, expected {setting.upstream!r}"
        )
    merge = data.get("merge") or {}
    if not isinstance(merge, dict):
        raise ResultFileError(path, "invalid key 'merge': expected an object or null")
    both = data.get("both_passed")
    if not isinstance(both, bool):
        raise ResultFileError(path, f"missing or invalid key 'both_passed': {both!r}")
    error = data.get("error")
    error = None if error in (None, "") else str(error)
    outcome = "error" if error else ("pass" if both else "fail")
    classification, rule = ("evaluated", "eval-completed")
    if error:
        hit = classify_text(error, patterns)
        classification, rule = (INFRA_ERROR, hit.name) if hit else ("eval_error", "eval-error")
    return {
        "experiment": arm.experiment,
        "setting": setting.name,
        "repeat": arm.repeat,
        "arm": arm.key,
        "pair": pair.key,
        "repo": pair.repo,
        "task_id": pair.task_id,
        "merge_status": merge.get("status"),
        "merge_strategy": merge.get("strategy"),
        "feature1_passed": _passed(data.get("feature1"), path, "feature1"),
        "feature2_passed": _passed(data.get("feature2"), path, "feature2"),
        "both_passed": both,
        "error": None if error is None else scrub(error),
        "outcome": outcome,
        "classification": classification,
        "rule": rule,
        "evaluated_at": data.get("evaluated_at"),
        "eval_path": str(path),
        "ran": ran,
    }


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(EVAL_DTYPES)).astype(EVAL_DTYPES)
