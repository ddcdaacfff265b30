"""Check the configuration before the first pair-run: one line per problem, naming the variable.

`problems()` reads the configuration (through `config`) and returns what is wrong with it;
`check()` raises `config.ConfigError` with those lines. `cb-assets` runs it before it
starts anything, and a run step can run it (or `agent_problem` / `patterns_problem` on its
resource's values) before launching a pair. Pure: no Dagster, and no import of
cooperbench, whose agent names are read from its source (importing it costs ~8 s).
"""

import ast
import functools
import importlib.util
import os
from importlib.machinery import PathFinder
from pathlib import Path

from cb_assets import config
from cb_assets.shared.experiments import Experiment, RegistryError, load_registry
from cb_assets.shared.failures import load_patterns

OFFLINE_AGENTS_MODULE = config.PROJECT_ROOT / "cb_assets" / "agents" / "offline.py"


def _is_register(func: ast.expr) -> bool:
    """`register(...)` or `<...>registry.register(...)` (not atexit's, signal's, …)."""
    if isinstance(func, ast.Name):
        return func.id == "register"
    if isinstance(func, ast.Attribute) and func.attr == "register":
        owner = func.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
        return name == "registry"
    return False


def _registered_names(source: Path) -> set[str] | None:
    """Names a module registers with `@register("name")` / `register("name")`; None when
    the module is not readable source or registers a name that is not a literal."""
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_register(node.func):
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                return None
            names.add(arg.value)
    return names


def _module_source(name: str) -> Path | None:
    """Where module `name` is, found without importing it or its packages."""
    search: list[str] | None = None
    spec = None
    parts = name.split(".")
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _upstream_adapter_modules(registry: Path) -> list[str]:
    """The adapter modules upstream's registry imports to register its agents."""
    tree = ast.parse(registry.read_text(encoding="utf-8"))
    return [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("cooperbench.agents.")
    ]


@functools.cache
def upstream_agents() -> frozenset[str]:
    """Agent frameworks built into cooperbench, read from its registry's source; if that
    cannot be read, from cooperbench itself (a one-off import)."""
    spec = importlib.util.find_spec("cooperbench")  # top-level: finds, does not import
    names: set[str] = set()
    if spec is not None and spec.submodule_search_locations:
        registry = Path(next(iter(spec.submodule_search_locations))) / "agents" / "registry.py"
        try:
            modules = _upstream_adapter_modules(registry)
        except (OSError, SyntaxError, ValueError):
            modules = []
        for module in modules:
            source = _module_source(module)
            found = _registered_names(source) if source else None
            names |= found or set()
    if not names:
        from cooperbench.agents.registry import list_agents

        names = set(list_agents())
    return frozenset(names)


def known_agents(external_modules: list[str]) -> tuple[frozenset[str], bool]:
    """Every agent framework `cooperbench run --agent` accepts here: upstream's, ours
    (`oracle`, `noop`, `flaky`) and those of `external_modules` (COOPERBENCH_EXTERNAL_AGENTS).
    The flag says whether the list is complete (an external module that registers a name
    computed at run time makes it incomplete)."""
    names = set(upstream_agents()) | (_registered_names(OFFLINE_AGENTS_MODULE) or set())
    complete = True
    for module in external_modules:
        source = _module_source(module)
        if source is None:
            continue  # upstream warns and goes on without it
        found = _registered_names(source)
        if found is None:
            complete = False
        else:
            names |= found
    return frozenset(names), complete


def agent_problem(
    agent: str, external_modules: list[str] | None = None, *, where: str = "agent"
) -> str | None:
    """What is wrong with agent framework `agent` (named `where`, e.g. the registry key),
    or None."""
    modules = config.external_agent_modules() if external_modules is None else external_modules
    names, complete = known_agents(modules)
    if agent in names or not complete:
        return None
    extra = (
        f" (COOPERBENCH_EXTERNAL_AGENTS modules: {', '.join(modules)})"
        if modules
        else "; more through COOPERBENCH_EXTERNAL_AGENTS"
    )
    return (
        f"{where}={agent!r}: unknown agent framework; expected one of "
        f"{', '.join(sorted(names))}{extra}"
    )


def patterns_problem(path: str | None) -> str | None:
    """What is wrong with the CB_FAILURE_PATTERNS file `path`, or None."""
    if path is None:
        return None
    try:
        load_patterns(Path(path))
    except ValueError as exc:
        return f"CB_FAILURE_PATTERNS={path!r}: {exc}"
    return None


def experiment_problems(experiment: Experiment, registry_path: Path) -> list[str]:
    """What stops `experiment` from running here, one line each: an unknown agent framework,
    a missing agent config file, a secret variable that is not set (its name only)."""
    if experiment.imported:
        return []
    where = f"{registry_path}: experiments.{experiment.name}"
    found = [agent_problem(experiment.agent, where=f"{where}.agent")]
    if experiment.agent_config and not Path(experiment.agent_config).is_file():
        found.append(f"{where}.agent_config: no file at {experiment.agent_config}")
    found += [
        f"{where}.secrets: {name} is not set in the environment (its agent needs it)"
        for name in experiment.secrets
        if not os.environ.get(name)
    ]
    return [p for p in found if p]


def registry_problems(name: str | None = None) -> list[str]:
    """What is wrong with the registry, or with experiment `name` (default: the default one)."""
    try:
        registry = load_registry(config.experiments_file())
        experiment = registry.get(name or config.experiment() or registry.default.name)
    except RegistryError as exc:
        return [str(exc)]
    return experiment_problems(experiment, registry.path)


def problems(experiment: str | None = None) -> list[str]:
    """Everything wrong with the configuration, one line each (empty: all is well)."""
    found: list[str] = config.retired_variables()
    for read in (
        config.launcher,
        config.retry_delay_seconds,
        config.sensor_interval_seconds,
        config.reaper_interval_seconds,
        config.report_refresh_seconds,
    ):
        try:
            read()
        except config.ConfigError as exc:
            found.append(str(exc))
    found += [
        p
        for p in (
            *registry_problems(experiment),
            patterns_problem(config.failure_patterns_file()),
            forkserver_problem(),
        )
        if p
    ]
    return found


def forkserver_problem() -> str | None:
    """A fork server directory someone else made (or opened up) would turn every pair-run
    into a retried launcher failure: say so before anything runs."""
    from cb_assets.runner.forkserver.client import socket_path_for
    from cb_assets.runner.forkserver.private import check_private_dir
    from cb_assets.runner.outcome import LaunchError

    try:
        if config.launcher() != "forkserver":
            return None
        check_private_dir(socket_path_for(config.logs_dir()).parent)
    except (FileNotFoundError, config.ConfigError):
        return None  # made, privately, when the first server starts; a bad launcher is
        # reported on its own
    except LaunchError as exc:
        return str(exc)
    return None


def check(experiment: str | None = None) -> None:
    """Raise `config.ConfigError` naming every problem of the configuration, if any."""
    found = problems(experiment)
    if found:
        raise config.ConfigError("; ".join(found))
