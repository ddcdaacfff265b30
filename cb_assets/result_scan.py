"""Find result.json files written under the logs root since the last look.

The tree is upstream's: `<logs>/<run_name>/<solo|coop>/<repo>/<task_id>/f<a>_f<b>/result.json`.
A scan walks exactly that depth with `os.scandir` and stats only the result files,
so it stays cheap on a tree of tens of thousands of runs. The cursor is the newest
modification time already handled, plus the paths handled at exactly that time.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cb_assets.attempts import ATTEMPTS_DIR, MARKER
from cb_assets.dataset import Pair
from cb_assets.settings import SETTING_NAMES, get_setting, run_name_for

INCOMPLETE_GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class Found:
    path: Path
    mtime: float
    pair_key: str
    setting: str


@dataclass
class Cursor:
    mtime: float = 0.0
    paths_at_mtime: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps({"mtime": self.mtime, "paths": self.paths_at_mtime})

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(float(data["mtime"]), list(data["paths"]))


def _dirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _complete(path: Path) -> bool:
    """Written to the end: it parses and has the keys upstream writes last."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "log_dir" in data and ("agent" in data or "agents" in data)


def _written_by_platform(pair_dir: Path, result_mtime: float) -> bool:
    """The platform's own runs leave a marker after result.json; those need no ingest."""
    try:
        return (pair_dir / MARKER).stat().st_mtime >= result_mtime
    except OSError:
        return False


def iter_result_files(logs_root: Path, experiment: str):
    """(result path, mtime, pair folder, setting) of every result.json of `experiment`."""
    settings = {run_name_for(experiment, s): get_setting(s) for s in SETTING_NAMES}
    for run in _dirs(str(logs_root)):
        setting = settings.get(run.name)
        if setting is None or run.name == ATTEMPTS_DIR:
            continue
        for repo in _dirs(os.path.join(run.path, setting.upstream)):
            for task in _dirs(repo.path):
                for pair in _dirs(task.path):
                    result = os.path.join(pair.path, "result.json")
                    try:
                        mtime = os.stat(result).st_mtime
                    except FileNotFoundError:
                        continue
                    yield result, mtime, Path(pair.path), setting.name


def pair_of(pair_dir: Path) -> Pair | None:
    """The pair a folder `<repo>/<task_id>/f<a>_f<b>` holds, or None if it is no pair folder."""
    task_dir, features = os.path.split(pair_dir)
    repo_dir, task_id = os.path.split(task_dir)
    try:
        a, b = (int(f.lstrip("f")) for f in features.split("_"))
        return Pair(os.path.basename(repo_dir), int(task_id), a, b)
    except ValueError:
        return None


def scan(
    logs_root: Path,
    experiment: str,
    cursor: Cursor,
    *,
    limit: int,
    settle_seconds: float,
    now: float,
) -> tuple[list[Found], Cursor, int]:
    """New complete result files of `experiment`, oldest first, at most `limit`.

    Returns them, the cursor to store, and how many files were left for a later tick
    (still being written or beyond the limit)."""
    candidates = [
        (mtime, result, pair_dir, setting)
        for result, mtime, pair_dir, setting in iter_result_files(logs_root, experiment)
        if mtime > cursor.mtime or (mtime == cursor.mtime and result not in cursor.paths_at_mtime)
    ]
    candidates.sort()
    found: list[Found] = []
    deferred = 0
    new_cursor = Cursor(cursor.mtime, list(cursor.paths_at_mtime))
    for i, (mtime, result, pair_dir, setting) in enumerate(candidates):
        age = now - mtime
        # A file still being written stops the scan (the cursor may not pass it); one that
        # stays unreadable past the grace period is handed on, and its run names the problem.
        if (
            len(found) >= limit
            or age < settle_seconds
            or (age < INCOMPLETE_GRACE_SECONDS and not _complete(Path(result)))
        ):
            deferred = len(candidates) - i
            break
        if mtime > new_cursor.mtime:
            new_cursor = Cursor(mtime, [])
        new_cursor.paths_at_mtime.append(result)
        if _written_by_platform(pair_dir, mtime):
            continue
        pair = pair_of(pair_dir)
        if pair is not None:
            found.append(Found(Path(result), mtime, pair.key, setting))
    return found, new_cursor, deferred
