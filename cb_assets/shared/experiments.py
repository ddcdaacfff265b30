"""The experiment registry: `experiments.yaml`, versioned with the project.

An experiment is one agent framework and model over the dataset's pairs in some settings,
repeated `repeats` times. The first entry is the default. An experiment brought in with
`cb-assets import` is `source: import`: its pair-runs are ingested from files, never run.
Every problem is one line naming the file and the key at fault.
"""

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cb_assets.shared.partition_keys import MAX_REPEAT, Arm, check_experiment_name
from cb_assets.shared.settings import DEFAULT_SETTINGS, SETTING_NAMES, TEAM_OPTIONS

BACKENDS = ("docker", "modal", "gcp")
SOURCES = ("run", "import")
_SECRET_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_FIELDS = (
    "name", "agent", "model", "settings", "repeats", "agent_config", "backend", "secrets",
    "team_options", "source", "description", "cost_band",
)  # fmt: skip
DEFAULT_COST_BAND = (0.0, 20.0)  # plausible dollars per agent of one pair-run


class RegistryError(ValueError):
    """experiments.yaml cannot be used as it is (one line: file, key, problem)."""


@dataclass(frozen=True)
class Experiment:
    name: str
    agent: str
    model: str
    settings: tuple[str, ...] = DEFAULT_SETTINGS
    repeats: int = 1
    agent_config: str | None = None
    backend: str = "docker"
    secrets: tuple[str, ...] = ()  # the names of the variables its agent needs, never values
    team_options: tuple[str, ...] = ()
    source: str = "run"
    description: str = ""
    cost_band: tuple[float, float] = DEFAULT_COST_BAND  # the report flags agents outside it

    @property
    def imported(self) -> bool:
        return self.source == "import"

    def arms(self, settings: Iterable[str] | None = None) -> list[Arm]:
        """Its arms, settings in registry order then repeats; `settings` narrows them."""
        chosen = (
            list(self.settings)
            if settings is None
            else [s for s in self.settings if s in set(settings)]
        )
        return [Arm(self.name, s, r) for s in chosen for r in range(1, self.repeats + 1)]

    def team_flags(self) -> list[str]:
        return [f"--team-{option}" for option in self.team_options]


@dataclass(frozen=True)
class Registry:
    path: Path
    experiments: tuple[Experiment, ...] = field(default_factory=tuple)

    @property
    def default(self) -> Experiment:
        if not self.experiments:
            raise RegistryError(f"{self.path}: no experiments: add one under `experiments:`")
        return self.experiments[0]

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.experiments]

    def get(self, name: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise RegistryError(
            f"{self.path}: no experiment {name!r}; it has {', '.join(self.names) or 'none'}"
        )

    def experiment_of(self, arm: Arm) -> Experiment:
        """The experiment `arm` belongs to; an error naming the registry when it has no such
        experiment, setting or repeat (a partition left over from an edited registry). An
        imported experiment's arms are whatever was imported."""
        experiment = self.get(arm.experiment)
        if experiment.imported:
            return experiment
        if arm.setting not in experiment.settings:
            raise RegistryError(
                f"{self.path}: experiment {experiment.name!r} has no setting {arm.setting!r} "
                f"(it has {', '.join(experiment.settings)})"
            )
        if arm.repeat > experiment.repeats:
            raise RegistryError(
                f"{self.path}: experiment {experiment.name!r} has {experiment.repeats} "
                f"repeat(s), not {arm.repeat}"
            )
        return experiment

    def find(self, name: str) -> Experiment | None:
        return next((e for e in self.experiments if e.name == name), None)

    def clash(self, name: str) -> str | None:
        """A registered name that differs from `name` only in case (their run folders would
        be one on a case-insensitive disk)."""
        folded = name.casefold()
        return next((n for n in self.names if n != name and n.casefold() == folded), None)


def _fail(path: Path, where: str, problem: str) -> RegistryError:
    return RegistryError(f"{path}: key '{where}': {problem}")


def _text(entry: dict, key: str, path: Path, where: str, *, required: bool) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise _fail(path, f"{where}.{key}", "missing")
        return None
    if not isinstance(value, str) or not value.strip() or "\n" in value and key != "description":
        raise _fail(path, f"{where}.{key}", f"{value!r} is not a one-line string")
    return value


def _names(entry: dict, key: str, path: Path, where: str, allowed: tuple[str, ...] | None):
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"{where}.{key}", f"{value!r} is not a list of names")
    if len(set(value)) != len(value):
        raise _fail(path, f"{where}.{key}", f"{value!r} names one twice")
    for item in value:
        if allowed is not None and item not in allowed:
            raise _fail(
                path, f"{where}.{key}", f"unknown {key[:-1]} {item!r}; expected one of "
                f"{', '.join(allowed)}"
            )  # fmt: skip
    return tuple(value)


def parse_experiment(entry: Any, path: Path, where: str) -> Experiment:
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(map(str, entry)) - set(_FIELDS))
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", f"unknown key; expected {', '.join(_FIELDS)}")
    name = _text(entry, "name", path, where, required=True)
    problem = check_experiment_name(name)
    if problem:
        raise _fail(path, f"{where}.name", problem)
    where = f"experiments.{name}"
    source = _text(entry, "source", path, where, required=False) or "run"
    if source not in SOURCES:
        raise _fail(path, f"{where}.source", f"{source!r}; expected one of {', '.join(SOURCES)}")
    repeats = entry.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEAT:
        raise _fail(path, f"{where}.repeats", f"{repeats!r} is not a whole number 1–{MAX_REPEAT}")
    backend = _text(entry, "backend", path, where, required=False) or "docker"
    if backend not in BACKENDS:
        raise _fail(path, f"{where}.backend", f"{backend!r}; expected one of {', '.join(BACKENDS)}")
    secrets = _names(entry, "secrets", path, where, None) or ()
    for secret in secrets:
        if not secret or not set(secret) <= _SECRET_NAME_CHARS or secret[0].isdigit():
            raise _fail(
                path, f"{where}.secrets", f"{secret!r} is not a variable name (the registry "
                "holds the names of secret variables, never their values)"
            )  # fmt: skip
    settings = _names(entry, "settings", path, where, SETTING_NAMES)
    if settings == () or (settings is None and source == "import"):
        settings = ()  # an imported experiment's arms are what was imported
    if settings == () and source == "run":
        raise _fail(path, f"{where}.settings", "empty: name at least one setting")
    team_options = _names(entry, "team_options", path, where, TEAM_OPTIONS) or ()
    band = entry.get("cost_band", list(DEFAULT_COST_BAND))
    if (
        not isinstance(band, list)
        or len(band) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in band)
        or not 0 <= band[0] <= band[1]
    ):
        raise _fail(
            path, f"{where}.cost_band", f"{band!r}: expected [low, high] dollars per agent, "
            "0 <= low <= high"
        )  # fmt: skip
    return Experiment(
        name=name,
        agent=_text(entry, "agent", path, where, required=True),
        model=_text(entry, "model", path, where, required=True),
        settings=DEFAULT_SETTINGS if settings is None else settings,
        repeats=repeats,
        agent_config=_text(entry, "agent_config", path, where, required=False),
        backend=backend,
        secrets=secrets,
        team_options=team_options,
        source=source,
        description=_text(entry, "description", path, where, required=False) or "",
        cost_band=(float(band[0]), float(band[1])),
    )


def parse_registry(text: str, path: Path) -> Registry:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RegistryError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), list):
        raise RegistryError(f"{path}: key 'experiments': expected a list of experiments")
    extra = sorted(set(map(str, data)) - {"experiments"})
    if extra:
        raise RegistryError(f"{path}: key '{extra[0]}': unknown; the file holds `experiments:`")
    experiments: list[Experiment] = []
    for i, entry in enumerate(data["experiments"]):
        experiment = parse_experiment(entry, path, f"experiments[{i}]")
        # casefold: `Nano` and `nano` would share run folders on a case-insensitive disk
        if any(e.name.casefold() == experiment.name.casefold() for e in experiments):
            raise _fail(path, f"experiments.{experiment.name}", "duplicate experiment name")
        experiments.append(experiment)
    return Registry(path, tuple(experiments))


def load_registry(path: Path) -> Registry:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(
            f"{path}: no experiment registry here (set CB_EXPERIMENTS to its path)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read the experiment registry: {exc}") from None
    return parse_registry(text, path)


def registry_entry(experiment: Experiment, comment: str) -> str:
    """`experiment` as a YAML list item to append under `experiments:`, after `comment`."""
    entry: dict[str, Any] = {"name": experiment.name, "agent": experiment.agent}
    entry["model"] = experiment.model
    if not experiment.imported:  # an imported one's arms are what was imported
        entry["settings"] = list(experiment.settings)
        entry["repeats"] = experiment.repeats
    entry["source"] = experiment.source
    if experiment.description:
        entry["description"] = experiment.description
    body = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None)
    lines = "".join(f"  {line}\n" for line in body.splitlines())
    return f"  # {comment}\n{lines}"


def append_experiment(path: Path, experiment: Experiment, comment: str) -> Registry:
    """Add `experiment` at the end of the registry file (comments and order kept) and return
    the registry read back. Two imports at once take turns (a lock beside the file), each
    re-reading it; the file is replaced whole, so a crash leaves the old one."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8")
        registry = parse_registry(text, path)
        if registry.find(experiment.name):
            raise RegistryError(f"{path}: key 'experiments.{experiment.name}': already registered")
        new_text = (
            text + ("" if text.endswith("\n") else "\n") + registry_entry(experiment, comment)
        )
        updated = parse_registry(new_text, path)  # refuse to write what would not read back
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(new_text, encoding="utf-8")
        tmp.replace(path)
        return updated
