"""Read a CooperBench dataset directory: subsets, tasks and feature pairs.

The layout is upstream's (`cooperbench prepare`): `<root>/subsets/<name>.json` and
`<root>/<repo>/task<id>/feature<n>/feature.md`.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMAGE_NAMESPACE = "akhatua"
_PAIR_KEY = re.compile(r"^(?P<repo>[A-Za-z0-9_.]+)-(?P<task>\d+)-f(?P<a>\d+)_f(?P<b>\d+)$")


class DatasetError(RuntimeError):
    """The dataset directory is missing or malformed."""


class PairKeyError(ValueError):
    """A partition key that does not name a feature pair."""


@dataclass(frozen=True)
class Pair:
    repo: str
    task_id: int
    feature_a: int
    feature_b: int

    @property
    def key(self) -> str:
        return f"{self.repo}-{self.task_id}-f{self.feature_a}_f{self.feature_b}"

    @property
    def features_dir(self) -> str:
        """The upstream per-pair directory name, `f<a>_f<b>`."""
        return f"f{self.feature_a}_f{self.feature_b}"

    def image(self, namespace: str = DEFAULT_IMAGE_NAMESPACE) -> str:
        return image_name(self.repo, self.task_id, namespace)


def image_name(repo: str, task_id: int, namespace: str = DEFAULT_IMAGE_NAMESPACE) -> str:
    """Upstream's image naming: `akhatua/cooperbench-<repo without _task, _ → ->:task<id>`."""
    return f"{namespace}/cooperbench-{repo.removesuffix('_task').replace('_', '-')}:task{task_id}"


def parse_pair_key(key: str) -> Pair:
    match = _PAIR_KEY.match(key)
    if not match:
        raise PairKeyError(
            f"invalid pair key {key!r}: expected <repo>-<task_id>-f<a>_f<b>, "
            "e.g. dspy_task-8394-f3_f4"
        )
    a, b = sorted((int(match["a"]), int(match["b"])))
    return Pair(match["repo"], int(match["task"]), a, b)


def _hint(dataset_dir: Path) -> str:
    return (
        f"get one with `cooperbench prepare` (it writes ./dataset) and point CB_DATASET_DIR "
        f"at it; looked in {dataset_dir}"
    )


def load_pairs(dataset_dir: Path | str, subset: str) -> list[Pair]:
    """All feature pairs of `subset`, validated against the task folders on disk."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"no CooperBench dataset at {root}: {_hint(root)}")
    subset_file = root / "subsets" / f"{subset}.json"
    if not subset_file.is_file():
        known = sorted(p.stem for p in (root / "subsets").glob("*.json"))
        raise DatasetError(
            f"subset {subset!r} not found: {subset_file} is missing "
            f"(subsets here: {', '.join(known) or 'none'}); {_hint(root)}"
        )
    try:
        spec = json.loads(subset_file.read_text(encoding="utf-8"))
        tasks = spec["tasks"]
        pairs = [
            Pair(t["repo"], int(t["task_id"]), *sorted(int(f) for f in p))
            for t in tasks
            for p in t["pairs"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"malformed subset file {subset_file}: {exc!r}") from exc
    for pair in pairs:
        task_dir = root / pair.repo / f"task{pair.task_id}"
        for feature in (pair.feature_a, pair.feature_b):
            spec_file = task_dir / f"feature{feature}" / "feature.md"
            if not spec_file.is_file():
                raise DatasetError(f"dataset is incomplete: {spec_file} is missing; {_hint(root)}")
    return sorted(set(pairs), key=lambda p: p.key)


def gold_patch(dataset_dir: Path | str, repo: str, task_id: int, feature: int) -> str:
    """The dataset's reference implementation of one feature."""
    path = Path(dataset_dir) / repo / f"task{task_id}" / f"feature{feature}" / "feature.patch"
    if not path.is_file():
        raise DatasetError(f"gold patch missing: {path}")
    return path.read_text(encoding="utf-8")


def dataset_tasks(dataset_dir: Path | str) -> set[tuple[str, int]]:
    """(repo, task id) of every task folder of the dataset, whichever subsets hold it."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"no CooperBench dataset at {root}: {_hint(root)}")
    return {
        (repo.name, int(task.name.removeprefix("task")))
        for repo in root.iterdir()
        if repo.is_dir() and repo.name.endswith("_task")
        for task in repo.iterdir()
        if task.is_dir() and task.name.startswith("task") and task.name[4:].isdecimal()
    }


def task_in_dataset(dataset_dir: Path | str, pair: Pair) -> bool:
    return (Path(dataset_dir) / pair.repo / f"task{pair.task_id}").is_dir()
