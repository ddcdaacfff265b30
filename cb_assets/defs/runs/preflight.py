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
import json
import os
import shutil
from importlib.machinery import PathFinder
from pathlib import Path

import yaml

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


# Where upstream's adapters read their model's credentials from: each entry is the
# alternatives, any one of which (all its variables set) is enough. Azure OpenAI (both of
# its variables, `cooperbench.agents._azure`) takes over every framework but claude_code.
_AZURE = ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT")
FRAMEWORK_CREDENTIALS: dict[str, tuple[tuple[str, ...], ...]] = {
    # ANTHROPIC_BASE_URL alone works: the adapter then injects a placeholder token
    "claude_code": (
        ("ANTHROPIC_API_KEY",), ("CLAUDE_CODE_OAUTH_TOKEN",), ("ANTHROPIC_AUTH_TOKEN",),
        ("ANTHROPIC_BASE_URL",),
    ),
    "codex": (("OPENAI_API_KEY",), _AZURE),
    # hands whichever of the three keys is set to the model, or Vertex AI's credentials
    "openhands_sdk": (
        ("GEMINI_API_KEY",), ("ANTHROPIC_API_KEY",), ("OPENAI_API_KEY",), _AZURE,
        ("GOOGLE_APPLICATION_CREDENTIALS",), ("VERTEXAI_PROJECT",),
    ),
}  # fmt: skip
# A host logged in with `claude login`: claude_code reads its token from this file.
CLAUDE_LOGIN_FILE = "~/.claude/.credentials.json"
# litellm-backed frameworks: the key depends on the model's provider (litellm's own
# validate_environment names these); a provider not listed (vertex_ai, bedrock, a local
# server) is not checked.
LITELLM_FRAMEWORKS = ("mini_swe_agent_v2", "swe_agent")
PROVIDER_CREDENTIALS: dict[str, tuple[tuple[str, ...], ...]] = {
    "openai": (("OPENAI_API_KEY",),),
    "anthropic": (("ANTHROPIC_API_KEY",), ("ANTHROPIC_AUTH_TOKEN",)),
    "gemini": (("GEMINI_API_KEY",), ("GOOGLE_API_KEY",)),
    "cohere": (("COHERE_API_KEY",),),
    "cohere_chat": (("COHERE_API_KEY",),),
    "mistral": (("MISTRAL_API_KEY",),),
    "groq": (("GROQ_API_KEY",),),
    "deepseek": (("DEEPSEEK_API_KEY",),),
    "openrouter": (("OPENROUTER_API_KEY",),),
    "xai": (("XAI_API_KEY",),),
    "together_ai": (("TOGETHERAI_API_KEY",), ("TOGETHER_API_KEY",), ("TOGETHER_AI_API_KEY",)),
    "azure": (("AZURE_API_KEY",), ("AZURE_OPENAI_API_KEY",)),
}
# litellm also knows some models by their bare name
BARE_MODEL_PROVIDERS = (
    (("gpt-", "chatgpt-", "o1", "o3", "o4"), "openai"),
    (("claude-",), "anthropic"),
    (("command-",), "cohere_chat"),
)
# upstream's frameworks that start their sandbox with the docker CLI on backend docker
# (DockerEnvironment; swe_agent's SWE-ReX); openhands_sdk always runs on Modal
DOCKER_CLI_FRAMEWORKS = ("mini_swe_agent_v2", "claude_code", "codex", "swe_agent")


def _is_set(names: tuple[str, ...]) -> bool:
    return all(os.environ.get(name, "").strip() for name in names)


def _claude_logged_in() -> bool:
    try:
        data = json.loads(Path(CLAUDE_LOGIN_FILE).expanduser().read_text(encoding="utf-8"))
        token = (data.get("claudeAiOauth") or {}).get("accessToken")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(token, str) and bool(token.strip())


def _config_api_key(agent_config: str | None) -> bool:
    """Whether the agent config YAML gives litellm its key (`model.model_kwargs.api_key`),
    at its top level or under `config:`, the two places upstream merges from."""
    if not agent_config:
        return False
    try:
        data = yaml.safe_load(Path(agent_config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    for block in (data, data.get("config") if isinstance(data, dict) else None):
        model = block.get("model") if isinstance(block, dict) else None
        kwargs = model.get("model_kwargs") if isinstance(model, dict) else None
        if isinstance(kwargs, dict) and kwargs.get("api_key"):
            return True
    return False


def model_provider(model: str) -> str | None:
    """The litellm provider of `model`: its `provider/` prefix, or a known bare name's."""
    if "/" in model:
        return model.split("/", 1)[0].lower()
    name = model.lower()
    return next((p for prefixes, p in BARE_MODEL_PROVIDERS if name.startswith(prefixes)), None)


def credential_alternatives(experiment: Experiment) -> tuple[tuple[str, ...], ...]:
    """The variables `experiment`'s agent could take its model's credentials from (any one
    alternative is enough); none when it needs none or they cannot be known here."""
    if experiment.agent in FRAMEWORK_CREDENTIALS:
        return FRAMEWORK_CREDENTIALS[experiment.agent]
    if experiment.agent not in LITELLM_FRAMEWORKS:
        return ()
    if experiment.agent == "mini_swe_agent_v2" and _config_api_key(experiment.agent_config):
        return ()
    provider = model_provider(experiment.model)
    return (*PROVIDER_CREDENTIALS[provider], _AZURE) if provider in PROVIDER_CREDENTIALS else ()


# other ways than a variable that a framework takes its credentials
_OTHER_WAYS = {
    "claude_code": (f"a `claude login` ({CLAUDE_LOGIN_FILE})",),
    "mini_swe_agent_v2": ("model.model_kwargs.api_key in its agent_config",),
}


def _spelled(agent: str, alternatives: tuple[tuple[str, ...], ...]) -> str:
    first, *others = [" and ".join(names) for names in alternatives]
    others += _OTHER_WAYS.get(agent, ())
    return f"{first} (or {', or '.join(others)})" if others else first


def framework_problems(experiment: Experiment, where: str) -> list[str]:
    """What `experiment`'s agent framework needs from this host and does not find: its
    model's credentials, the tools its backend runs sandboxes with. Agents no table names
    (ours: oracle, noop, flaky; external ones) are asked for nothing."""
    agent = experiment.agent
    found: list[str] = []
    alternatives = credential_alternatives(experiment)
    covered = any(set(names) <= set(experiment.secrets) for names in alternatives)
    if alternatives and not covered and not any(_is_set(names) for names in alternatives):
        if not (agent == "claude_code" and _claude_logged_in()):
            what = f" for model {experiment.model}" if agent in LITELLM_FRAMEWORKS else ""
            found.append(
                f"{where}.agent: {agent} needs {_spelled(agent, alternatives)} set in the "
                f"environment{what} (not set)"
            )
    if agent == "openhands_sdk" and experiment.backend != "modal":
        found.append(
            f"{where}.backend: openhands_sdk needs backend modal ({experiment.backend!r}: "
            "cooperbench eval refuses to evaluate its runs anywhere else)"
        )
    docker = os.environ.get("MSWEA_DOCKER_EXECUTABLE") or "docker"  # DockerEnvironment's
    if (
        agent in DOCKER_CLI_FRAMEWORKS
        and experiment.backend == "docker"
        and shutil.which(docker) is None
    ):
        found.append(f"{where}.backend: docker needs the {docker} CLI on PATH (not found)")
    return found


def experiment_problems(experiment: Experiment, registry_path: Path) -> list[str]:
    """What stops `experiment` from running here, one line each: an unknown agent framework,
    a missing agent config file, a secret variable that is not set (its name only), a
    credential or tool its agent framework needs."""
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
    found += framework_problems(experiment, where)
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
