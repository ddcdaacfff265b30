"""`cb-assets import RUN_DIR`: bring a run directory written by the upstream runner (the
folder holding its config.json, named anything) into the platform's logs layout as one arm.

Planning reads and checks everything and writes nothing; executing copies what the plan
names into `<logs>/<arm.run_name>/` and nowhere else. Upstream's files are read the one way
the platform reads them (cb_assets.defs.runs.results), so a file the importer accepts is one
ingest can read. A bad pair folder is a problem naming its file and is skipped; the rest is
imported. Every refusal of the whole run is a RunImportError of one line naming the file.
"""

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cb_assets.defs.runs.result_scan import pair_of
from cb_assets.defs.runs.results import (
    ResultFileError,
    agent_blocks,
    check_identity,
    file_kind,
    read_json_file,
)
from cb_assets.shared.dataset import Pair
from cb_assets.shared.experiments import Experiment
from cb_assets.shared.partition_keys import Arm, check_experiment_name
from cb_assets.shared.settings import SETTINGS, UPSTREAM_SETTINGS, Setting, get_setting

CONFIG = "config.json"
RUN_FILES = (CONFIG, "summary.json", "eval_summary.json")  # run-level files brought along
RESULT, EVAL, CONVERSATION = "result.json", "eval.json", "conversation.json"
# A fork's config.json field (upstream 0.0.29 writes none): whether agents could message.
MESSAGING_MODES = {"off": False, "free": True, "structured": True}
_CHUNK = 1 << 20


class RunImportError(ValueError):
    """The run cannot be imported as asked (one line naming the file and the key)."""


def _line(path: Path, text: str) -> str:
    """`<path>: <text>` as ResultFileError spells it: one printable line, secrets scrubbed."""
    return str(ResultFileError(path, text))


def _refuse(path: Path, text: str) -> RunImportError:
    return RunImportError(_line(path, text))


@dataclass(frozen=True)
class RunConfig:
    path: Path  # the config.json read
    run_name: str
    agent_framework: str
    model: str
    setting: str  # upstream's: solo, coop or team
    messaging_mode: str | None  # a fork's: off, free, structured; None when not written
    raw: dict[str, Any]


@dataclass(frozen=True)
class ImportProblem:
    """Something left out of the import, and why; `message` names the file."""

    path: Path
    message: str

    def __str__(self) -> str:
        return self.message


def _problem(path: Path, text: str) -> ImportProblem:
    return ImportProblem(path, _line(path, text))


@dataclass(frozen=True)
class PlannedPair:
    pair: Pair
    source: Path  # the pair folder in the run directory
    destination: Path  # <logs>/<run_name>/<upstream subtree>/<repo>/<task>/f<a>_f<b>
    files: tuple[str, ...]  # paths relative to the pair folder, sorted
    in_dataset: bool

    @property
    def key(self) -> str:
        return self.pair.key


@dataclass(frozen=True)
class ImportPlan:
    run_dir: Path
    arm: Arm
    config: RunConfig
    run_root: Path  # <logs>/<arm.run_name>: the only folder execute_import writes in
    run_files: tuple[str, ...]  # which of RUN_FILES to bring, checked
    pairs: tuple[PlannedPair, ...]
    problems: tuple[ImportProblem, ...]  # each one thing left out

    @property
    def out_of_dataset(self) -> list[str]:
        return [p.key for p in self.pairs if not p.in_dataset]


@dataclass
class ImportOutcome:
    imported: int = 0
    unchanged: int = 0
    skipped: int = 0  # always len(problems): each problem is one thing left out
    problems: list[ImportProblem] = field(default_factory=list)
    out_of_dataset: list[str] = field(default_factory=list)
    destinations: list[Path] = field(default_factory=list)  # pair folders now holding the run


def _config_text(data: dict, key: str, path: Path) -> str:
    value = data.get(key)
    # one line: these become registry values (agent, model) and messages
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise _refuse(path, f"key '{key}': {value!r} is not a one-line string")
    return value


def read_run_config(run_dir: Path) -> RunConfig:
    """The config.json upstream writes at the top of a run directory."""
    path = Path(run_dir) / CONFIG
    if not os.path.lexists(path):
        raise _refuse(
            path,
            "not found; RUN_DIR must be an upstream run directory (the folder holding "
            "config.json and the solo/, coop/ or team/ tree)",
        )
    try:
        data = read_json_file(path, root=Path(run_dir))
    except ResultFileError as exc:
        raise RunImportError(str(exc)) from None
    except OSError as exc:
        raise _refuse(path, f"cannot read it: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise _refuse(path, f"expected a JSON object, got {type(data).__name__}")
    setting = _config_text(data, "setting", path)
    if setting not in UPSTREAM_SETTINGS:
        raise _refuse(
            path, f"key 'setting': {setting!r}; expected one of {', '.join(UPSTREAM_SETTINGS)}"
        )
    mode = data.get("messaging_mode")
    if mode is not None and mode not in MESSAGING_MODES:
        raise _refuse(
            path,
            f"key 'messaging_mode': {mode!r}; expected one of {', '.join(MESSAGING_MODES)} "
            "(or no key)",
        )
    return RunConfig(
        path=path,
        run_name=_config_text(data, "run_name", path),
        agent_framework=_config_text(data, "agent_framework", path),
        model=_config_text(data, "model", path),
        setting=setting,
        messaging_mode=mode,
        raw=data,
    )


def experiment_from_config(name: str, config: RunConfig, setting: str) -> Experiment:
    """The registry entry for a new experiment whose one arm is this imported run. (Importing
    more repeats or settings into it means widening its `repeats`/`settings`.)"""
    problem = check_experiment_name(name)
    if problem:
        raise RunImportError(problem)
    get_setting(setting)
    mode = f", messaging_mode {config.messaging_mode}" if config.messaging_mode else ""
    return Experiment(
        name=name,
        agent=config.agent_framework,
        model=config.model,
        settings=(setting,),
        source="import",
        description=(
            f"imported with `cb-assets import` from {config.path.parent} (upstream run "
            f"{config.run_name!r}, setting {config.setting}{mode})"
        ),
    )


def _alternative(setting: Setting) -> str:
    """The setting this run would be with messaging the other way, for the refusal's hint."""
    for other in SETTINGS.values():
        if (other.upstream, other.git, other.messaging) == (
            setting.upstream,
            setting.git,
            not setting.messaging,
        ):
            return f"; import it as {other.name}"
    return ""


def _check_setting(config: RunConfig, setting: Setting) -> None:
    if config.setting != setting.upstream:
        raise _refuse(
            config.path,
            f"key 'setting' is {config.setting!r} but {setting.name} runs are {setting.upstream!r}",
        )
    # Solo has no partner to message: a fork may write its default mode there, meaning nothing.
    if config.messaging_mode is None or not setting.is_coop:
        return  # upstream writes no such field: the user's word is all there is
    if MESSAGING_MODES[config.messaging_mode] != setting.messaging:
        said = "on" if setting.messaging else "off"
        raise _refuse(
            config.path,
            f"key 'messaging_mode' is {config.messaging_mode!r} but {setting.name} has "
            f"messaging {said}{_alternative(setting)}",
        )


def _inside(path: Path, root: Path) -> bool:
    """Is `path`, links resolved (also of a prefix that exists), within `root`?"""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _subdirs(folder: Path, problems: list[ImportProblem]) -> list[Path]:
    """The real folders in `folder`, sorted; anything else (a file, a symlink) is a problem:
    upstream writes only folders at these levels, and a linked one may lead out of the run."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(_problem(folder, f"cannot list it: {exc.strerror or exc}"))
        return []
    found = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found.append(Path(entry.path))
            continue
        try:
            kind = file_kind(entry.stat(follow_symlinks=False).st_mode)
        except OSError:
            kind = "an entry that cannot be stat'ed"
        problems.append(_problem(Path(entry.path), f"is {kind}, not a folder"))
    return found


def _pair_files(pair_dir: Path, run_dir: Path) -> tuple[str, ...]:
    """Every file of the pair folder (patches, trajectories, …), relative, sorted: regular
    files, or symlinks to regular files inside the run (brought as copies of their target)."""

    def unreadable(exc: OSError) -> None:  # os.walk would skip a folder it cannot list
        raise ResultFileError(Path(exc.filename or pair_dir), f"cannot list it: {exc.strerror}")

    files = []
    for folder, dirs, names in os.walk(pair_dir, onerror=unreadable):
        for name in dirs:
            if os.path.islink(os.path.join(folder, name)):
                raise ResultFileError(Path(folder, name), "is a symbolic link to a folder")
        for name in names:
            path = Path(folder, name)
            if path.is_symlink() and not _inside(path, run_dir):
                raise ResultFileError(path, "is a symbolic link leading out of the run (or a loop)")
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                raise ResultFileError(path, f"cannot stat it: {exc.strerror}") from None
            if not stat.S_ISREG(mode):
                raise ResultFileError(path, f"is {file_kind(mode)}, not a regular file")
            files.append(str(path.relative_to(pair_dir)))
    return tuple(sorted(files))


def _check_pair(pair_dir: Path, pair: Pair, setting: Setting, run_dir: Path) -> tuple[str, ...]:
    """The files to bring from a pair folder; ResultFileError naming the first bad file."""
    result_path = pair_dir / RESULT
    result = read_json_file(result_path, root=run_dir)
    agent_blocks(result, result_path)
    check_identity(result, pair, setting, result_path)
    for name, check_text in ((EVAL, True), (CONVERSATION, False)):
        if os.path.lexists(pair_dir / name):
            read_json_file(pair_dir / name, root=run_dir, check_text=check_text)
    return _pair_files(pair_dir, run_dir)


def plan_import(
    run_dir: Path, arm: Arm, logs_root: Path, dataset_tasks: set[tuple[str, int]]
) -> ImportPlan:
    """What importing `run_dir` as `arm` under `logs_root` would bring, and what it leaves
    out and why. Reads only; raises RunImportError when the run as a whole cannot be it."""
    run_dir, logs_root = Path(run_dir).absolute(), Path(logs_root).absolute()
    if not run_dir.is_dir():
        raise _refuse(run_dir, "not a folder")
    # Importing from inside the logs root would bring the platform's own files back into it;
    # a logs root inside the run would write next to the originals.
    if _inside(run_dir, logs_root) or _inside(logs_root, run_dir):
        raise _refuse(
            run_dir,
            f"is inside the logs root {logs_root} (or holds it): import a run directory "
            "from outside it",
        )
    config = read_run_config(run_dir)
    setting = get_setting(arm.setting)
    _check_setting(config, setting)
    subtree = run_dir / setting.upstream
    if subtree.is_symlink():
        raise _refuse(subtree, "is a symbolic link: import the run it leads to")
    if not subtree.is_dir():
        raise _refuse(subtree, f"not found: the run has no {setting.upstream} pairs")
    problems: list[ImportProblem] = []
    run_files = []
    for name in RUN_FILES[1:]:
        if os.path.lexists(run_dir / name):
            try:
                read_json_file(run_dir / name, root=run_dir)
                run_files.append(name)
            except ResultFileError as exc:
                problems.append(ImportProblem(exc.path, str(exc)))
    run_root = logs_root / arm.run_name
    pairs = []
    for repo_dir in _subdirs(subtree, problems):
        for task_dir in _subdirs(repo_dir, problems):
            for pair_dir in _subdirs(task_dir, problems):
                pair = pair_of(pair_dir)
                if pair is None:
                    problems.append(
                        _problem(
                            pair_dir,
                            "not a canonical pair folder <repo>/<task id>/f<a>_f<b> (a < b, "
                            "no leading zeros)",
                        )
                    )
                    continue
                try:
                    files = _check_pair(pair_dir, pair, setting, run_dir)
                except ResultFileError as exc:
                    problems.append(ImportProblem(exc.path, str(exc)))
                    continue
                except OSError as exc:  # e.g. a folder we may not enter
                    problems.append(_problem(pair_dir, f"{exc.strerror or exc}"))
                    continue
                destination = run_root / pair_dir.relative_to(run_dir)
                in_dataset = (pair.repo, pair.task_id) in dataset_tasks
                pairs.append(PlannedPair(pair, pair_dir, destination, files, in_dataset))
    return ImportPlan(
        run_dir, arm, config, run_root, (CONFIG, *run_files), tuple(pairs), tuple(problems)
    )


def _same_file(source: Path, destination: Path) -> bool:
    """Does `destination` hold a regular file with the bytes of `source`? (Size first.)"""
    try:
        info = os.lstat(destination)
        if not stat.S_ISREG(info.st_mode) or info.st_size != os.stat(source).st_size:
            return False
        with open(source, "rb") as a, open(destination, "rb") as b:
            while True:
                chunk = a.read(_CHUNK)
                if chunk != b.read(_CHUNK):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


def _first_difference(planned: PlannedPair) -> Path | None:
    """The first file of the pair the destination does not hold as it is in the run, or None
    when it holds them all. Files only the destination has (the platform's own) are fine."""
    for name in planned.files:
        if not _same_file(planned.source / name, planned.destination / name):
            return planned.destination / name
    return None


def _copy_pair(planned: PlannedPair, build: Path) -> None:
    for name in planned.files:
        target = build / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(planned.source / name, target)


def _place(build: Path, destination: Path, aside: Path) -> None:
    """Rename the built folder into place, moving an existing one aside first (a rename
    cannot replace a folder that has files) and back if the second rename fails."""
    had_one = os.path.lexists(destination)
    if had_one:
        os.rename(destination, aside)
    try:
        os.rename(build, destination)
    except OSError:
        if had_one:
            os.rename(aside, destination)
        raise


def _check_run_files(plan: ImportPlan, replace: bool) -> None:
    """Refuse before writing anything when the arm's folder holds another run: two upstream
    runs merged into one arm could never be told apart again."""
    existing = plan.run_root / CONFIG
    if os.path.lexists(existing) and not replace and not _same_file(plan.config.path, existing):
        raise _refuse(
            existing,
            f"differs from {plan.config.path}: {plan.arm.key} already holds another run; "
            "import this one as another arm (or replace it)",
        )


def execute_import(plan: ImportPlan, *, replace: bool = False) -> ImportOutcome:
    """Copy what `plan` names into `plan.run_root`; idempotent.

    Files are copied (shutil.copy2, times kept), never hard-linked, though a link would
    save space: a link shares the inode, so anything that ever rewrote an imported file in
    place (upstream's runner truncates result.json, an editor may too) would change the
    original run as well, a chmod would change both, and the comparison that makes a second
    import `unchanged` could not notice an original edited afterwards. The JSON files are
    small; only trajectories cost disk, once.

    Each pair folder is built in a staging folder inside `run_root` (the same filesystem, and
    outside the `<upstream>/` subtree, so no scan ever sees half a pair) and renamed into
    place. A destination already holding the pair's files byte for byte is left alone
    (`unchanged`); one that differs is a problem and is left as it is unless `replace`, which
    swaps in the run's folder whole (files only the old folder had are dropped)."""
    _check_run_files(plan, replace)
    outcome = ImportOutcome(problems=list(plan.problems), out_of_dataset=plan.out_of_dataset)
    run_root = plan.run_root
    run_root.mkdir(parents=True, exist_ok=True)
    staging: Path | None = None

    def stage() -> Path:  # made on first need: an import with nothing to do writes nothing
        nonlocal staging
        if staging is None:
            staging = Path(tempfile.mkdtemp(prefix=".import-", dir=run_root))
        return staging

    try:
        # config.json first: it marks whose run this folder holds, even if the rest fails
        for name in plan.run_files:
            source, destination = plan.run_dir / name, run_root / name
            if _same_file(source, destination):
                continue
            if os.path.lexists(destination) and not replace:
                message = f"differs from {source}; left as it is"
                outcome.problems.append(_problem(destination, message))
                continue
            try:
                shutil.copy2(source, stage() / name)
                os.replace(stage() / name, destination)
            except OSError as exc:
                message = f"cannot write it: {exc.strerror or exc}"
                outcome.problems.append(_problem(destination, message))
        for i, planned in enumerate(plan.pairs):
            destination = planned.destination
            difference = _first_difference(planned) if os.path.lexists(destination) else None
            if os.path.lexists(destination) and difference is None:
                outcome.unchanged += 1
                outcome.destinations.append(destination)
                continue
            if difference is not None and not replace:
                source = planned.source / difference.relative_to(destination)
                message = f"differs from {source} (or is missing); the pair folder is left as it is"
                outcome.problems.append(_problem(difference, message))
                continue
            try:
                # a symlinked folder in the logs tree must not carry the import elsewhere
                if not _inside(destination.parent, run_root):
                    raise _refuse(destination.parent, f"leads outside {run_root}")
                destination.parent.mkdir(parents=True, exist_ok=True)
                build = stage() / str(i)
                _copy_pair(planned, build)
                _place(build, destination, stage() / f"{i}.old")
            except (OSError, RunImportError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                outcome.problems.append(_problem(destination, f"not imported: {reason}"))
                continue
            outcome.imported += 1
            outcome.destinations.append(destination)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    outcome.skipped = len(outcome.problems)
    return outcome
