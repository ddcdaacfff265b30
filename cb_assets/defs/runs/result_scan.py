"""Find result.json files written under the logs root since the last look.

The tree is upstream's: `<logs>/<run_name>/<solo|coop|team>/<repo>/<task_id>/f<a>_f<b>/result.json`,
one run name per arm (`oracle-solo`, `nano-coop-comm-r2`: see shared.partition_keys); runs of
every registered experiment are scanned.
A scan walks exactly that depth with `os.scandir` and stats only the result files,
so it stays cheap on a tree of tens of thousands of runs.

Files are found by content state, not by modification time: the key is the inode
change time (`st_ctime`), which the kernel sets on every write, rename, link and
utime and which no user can set. A file copied in with its old mtime kept (`cp -p`,
`rsync -a`, `tar x`) or renamed into place is new by it; a future mtime neither hides
a file nor holds the cursor. (A whole folder moved in with `mv` keeps its files' times:
touch them.) A chmod also counts as a change: ingesting a file again only rewrites its
rows. The cursor is the newest change time already handled, plus the paths handled at
exactly that time.

Nothing here blocks on a file: entries that are not regular files (a FIFO named
result.json, a directory, a socket), folders whose names are not upstream's
canonical ones, and entries that cannot be stat'ed are reported and skipped, and
only regular files of bounded size are ever read.
"""

import json
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cb_assets.defs.runs.results import ResultFileError, file_kind, read_regular_file
from cb_assets.shared.dataset import Pair
from cb_assets.shared.logs_layout import ATTEMPT_MARKER
from cb_assets.shared.partition_keys import Arm, parse_run_name
from cb_assets.shared.settings import get_setting

INCOMPLETE_GRACE_SECONDS = 120.0
QUARANTINE_DIR = "_quarantine"
GUARDED_NAMES = ("result.json", "eval.json")  # what upstream globs for across a run

# Canonical folder names, as upstream writes them: the same repo characters as a partition
# key, decimal integers without sign, space or leading zero (and within int64), features
# ascending. `int()` alone accepts " 8587", "08587", "٨٥٨٧" and "8587\n".
_REPO = re.compile(r"[A-Za-z0-9_.]+")
_INT = r"(?:0|[1-9][0-9]{0,17})"
_TASK = re.compile(_INT)
_FEATURES = re.compile(rf"f({_INT})_f({_INT})")


@dataclass(frozen=True)
class Found:
    path: Path
    changed_ns: int  # st_ctime_ns: when the file's content (or metadata) last changed
    state: str  # identifies this content state of the file; part of the run key
    pair_key: str
    arm: Arm


@dataclass(frozen=True)
class Skipped:
    """An entry reported and never requested: `kind` is `not-regular`, `non-canonical` or
    `unreadable`."""

    path: Path
    kind: str
    problem: str


@dataclass
class Cursor:
    changed_ns: int = 0
    paths_at_changed: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps({"changed_ns": self.changed_ns, "paths": self.paths_at_changed})

    @classmethod
    def loads(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        if "changed_ns" in data:
            return cls(int(data["changed_ns"]), list(data["paths"]))
        # A cursor of mtimes, from before: files changed since then are looked at again
        # (ingesting a file twice only rewrites its rows).
        return cls(int(float(data["mtime"]) * 1e9), [])


class ScanResult(NamedTuple):
    found: list[Found]
    cursor: Cursor
    deferred: int  # files left for a later tick (still being written or beyond the limit)
    skipped: list[Skipped]


def _dirs(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _settled(path: Path) -> bool:
    """Nothing more to wait for: it parses and has the keys upstream writes last, or it can
    never be read (not a regular file, over the size limit), so its run should say why."""
    try:
        data = json.loads(read_regular_file(path))
    except ResultFileError:
        return os.path.lexists(path)  # gone: wait for what replaces it
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "log_dir" in data and ("agent" in data or "agents" in data)


def _written_by_platform(pair_dir: str, changed_ns: int) -> bool:
    """The platform's own runs leave a marker after result.json; those need no ingest."""
    try:
        return os.stat(os.path.join(pair_dir, ATTEMPT_MARKER)).st_mtime_ns >= changed_ns
    except OSError:
        return False


def _pair(repo: str, task_id: str, features: str) -> Pair | None:
    """The pair named by canonical folder names, else None."""
    match = _FEATURES.fullmatch(features)
    if match is None or _TASK.fullmatch(task_id) is None or _REPO.fullmatch(repo) is None:
        return None
    a, b = int(match[1]), int(match[2])
    return Pair(repo, int(task_id), a, b) if a < b else None


def _entries(logs_root: Path, experiments: Collection[str]):
    """(result path, pair folder, arm, stat result or the OSError of stat, whether the
    folder names are canonical, the folder names) of every result.json entry of the
    `experiments`; missing ones are left out. Folder names are checked once per folder."""
    for run in _dirs(str(logs_root)):
        arm = parse_run_name(run.name)
        if arm is None or arm.experiment not in experiments:
            continue
        for repo in _dirs(os.path.join(run.path, get_setting(arm.setting).upstream)):
            repo_ok = _REPO.fullmatch(repo.name) is not None
            for task in _dirs(repo.path):
                task_ok = repo_ok and _TASK.fullmatch(task.name) is not None
                for pair in _dirs(task.path):
                    result = os.path.join(pair.path, "result.json")
                    try:
                        info: os.stat_result | OSError = os.stat(result)
                    except FileNotFoundError:
                        continue
                    except OSError as exc:  # a symlink loop, a folder we may not enter
                        info = exc
                    match = _FEATURES.fullmatch(pair.name) if task_ok else None
                    canonical = match is not None and int(match[1]) < int(match[2])
                    names = (repo.name, task.name, pair.name)
                    yield result, pair.path, arm, info, canonical, names


def iter_result_files(logs_root: Path, experiments: Collection[str]):
    """(result path, mtime, pair folder, arm) of every result.json of the `experiments`,
    whatever kind of entry it is (the reader says why one cannot be read); mtime is 0.0
    for an entry that cannot be stat'ed."""
    for result, pair_dir, arm, info, _, _ in _entries(logs_root, experiments):
        mtime = 0.0 if isinstance(info, OSError) else info.st_mtime
        yield result, mtime, Path(pair_dir), arm


def pair_of(pair_dir: Path) -> Pair | None:
    """The pair a folder `<repo>/<task_id>/f<a>_f<b>` holds, or None if it is no canonical
    pair folder (see _TASK, _FEATURES: " 8587" or "f03_f1" is not the pair 8587 or 1, 3)."""
    task_dir, features = os.path.split(pair_dir)
    repo_dir, task_id = os.path.split(task_dir)
    return _pair(os.path.basename(repo_dir), task_id, features)


def scan(
    logs_root: Path,
    experiments: Collection[str],
    cursor: Cursor,
    *,
    limit: int,
    settle_seconds: float,
    now: float,
) -> ScanResult:
    """New complete result files of the `experiments`, oldest change first, at most `limit`.

    Returns them, the cursor to store, how many files were left for a later tick (still
    being written or beyond the limit), and the entries skipped on every tick until fixed:
    not regular files, non-canonical folders, entries that cannot be stat'ed."""
    candidates = []
    skipped: list[Skipped] = []
    for result, pair_dir, arm, info, canonical, names in _entries(logs_root, experiments):
        if isinstance(info, OSError):
            skipped.append(Skipped(Path(result), "unreadable", info.strerror or str(info)))
            continue
        if not canonical:
            problem = "is not a canonical pair folder"
            skipped.append(Skipped(Path(pair_dir), "non-canonical", problem))
            continue
        if not stat.S_ISREG(info.st_mode):
            kind = file_kind(info.st_mode)
            skipped.append(Skipped(Path(result), "not-regular", f"is {kind}, not a regular file"))
            continue
        changed = info.st_ctime_ns
        if changed > cursor.changed_ns or (
            changed == cursor.changed_ns and result not in cursor.paths_at_changed
        ):
            state = f"{info.st_ino}-{info.st_size}-{info.st_mtime_ns}-{changed}"
            candidates.append((changed, result, pair_dir, arm, names, state))
    candidates.sort(key=lambda c: (c[0], c[1]))
    found: list[Found] = []
    deferred = 0
    new_cursor = Cursor(cursor.changed_ns, list(cursor.paths_at_changed))
    for i, (changed, result, pair_dir, arm, names, state) in enumerate(candidates):
        age = now - changed / 1e9
        # A file still being written stops the scan (the cursor may not pass it); one that
        # stays unreadable past the grace period is handed on, and its run names the problem.
        if (
            len(found) >= limit
            or age < settle_seconds
            or (age < INCOMPLETE_GRACE_SECONDS and not _settled(Path(result)))
        ):
            deferred = len(candidates) - i
            break
        if changed > new_cursor.changed_ns:
            new_cursor = Cursor(changed, [])
        new_cursor.paths_at_changed.append(result)
        if _written_by_platform(pair_dir, changed):
            continue
        pair = _pair(*names)
        if pair is not None:  # always, as `canonical` said
            found.append(Found(Path(result), changed, state, pair.key, arm))
    return ScanResult(found, new_cursor, deferred, skipped)


def _moved_to(target: Path) -> Path:
    """`target`, or `target.1`, `target.2`, … : the first name not taken (nothing is replaced)."""
    candidate, n = target, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    return candidate


def _regular(entry: os.DirEntry) -> bool:
    """A regular file, or a symlink to one (looked at, never followed into a folder)."""
    try:
        return entry.is_file(follow_symlinks=True)
    except OSError:
        return False


def quarantine_non_regular(run_dir: Path, quarantine_root: Path) -> list[Path]:
    """Move aside every `result.json` / `eval.json` under an upstream run directory that is
    not a regular file (a FIFO, a directory, a socket, a device, a dangling or looping
    symlink, a symlink to any of these), to `<quarantine_root>/<run name>/<path within the
    run>` (`.1`, `.2`, … appended if taken). Returns the paths it moved, as they were.

    Upstream's `get_run_totals` globs every result.json of a run and opens it: a FIFO hangs
    it, a directory breaks it. Call this with `<logs>/_quarantine` before a launch. Links are
    never followed into folders and never resolved to move their target; nothing is deleted
    or replaced; only `os.rename` is used (the quarantine must be on the same filesystem)."""
    run_dir, quarantine_root = Path(run_dir), Path(quarantine_root)
    aside = os.path.abspath(quarantine_root)
    moved: list[Path] = []
    pending = [str(run_dir)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if entry.name in GUARDED_NAMES and not _regular(entry):
                source = Path(entry.path)
                target = _moved_to(quarantine_root / run_dir.name / source.relative_to(run_dir))
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(source, target)
                except OSError as exc:
                    raise ResultFileError(
                        source, f"cannot move it aside to {target}: {exc.strerror or exc}"
                    ) from None
                moved.append(source)
            elif entry.is_dir(follow_symlinks=False) and os.path.abspath(entry.path) != aside:
                pending.append(entry.path)
    return sorted(moved)


SKIPPED_KINDS = {
    "not-regular": "result.json entries that are not regular files",
    "non-canonical": "pair folders with non-canonical names",
    "unreadable": "result.json entries that cannot be stat'ed",
}


def skipped_note(skipped: list[Skipped]) -> str:
    """', 2 pair folders with non-canonical names skipped (e.g. '…/ 8587/f1_f2')', …"""
    parts = []
    for kind, what in SKIPPED_KINDS.items():
        of_kind = [s for s in skipped if s.kind == kind]
        if of_kind:
            first = of_kind[0]
            # repr: a folder name's control characters are shown escaped, never sent raw
            parts.append(
                f", {len(of_kind)} {what} skipped (e.g. {str(first.path)!r}: {first.problem})"
            )
    return "".join(parts)
