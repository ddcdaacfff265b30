"""Defaults for every path and knob, each overridable by one environment variable.

This module is the one reader of the `CB_*` variables. They are read when the definitions
load; resources take them as their defaults, so the launchpad can still override any of
them per run. A value the platform cannot use raises `ConfigError`, whose message is one
line naming the variable, its value and what is expected.
"""

import json
import math
import os
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LAUNCHERS = ("forkserver", "subprocess")
REDIS_URL_VAR = "CB_REDIS_URL"  # also how the runner hands the URL to a cooperbench child
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class ConfigError(ValueError):
    """A configuration variable holds a value the platform cannot use (one-line message)."""


def _value(var: str) -> str | None:
    """The variable's value; unset and empty are the same (the default applies)."""
    return os.environ.get(var) or None


def _path(var: str, default: Path) -> Path:
    value = _value(var)
    return Path(value).expanduser().resolve() if value else default


def _seconds(var: str, default: float, *, whole: bool, positive: bool) -> float:
    raw = _value(var)
    if raw is None:
        return default
    expected = (
        f"a {'positive' if positive else 'non-negative'} "
        f"{'whole number' if whole else 'number'} of seconds"
    )
    try:
        value = int(raw.strip()) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{var}={raw!r}: expected {expected}")
    return value


def _choice(var: str, default: str, choices: tuple[str, ...]) -> str:
    value = _value(var) or default
    if value not in choices:
        raise ConfigError(f"{var}={value!r}: expected one of {', '.join(choices)}")
    return value


def data_dir() -> Path:
    return _path("CB_DATA_DIR", PROJECT_ROOT / "data")


def dataset_dir() -> Path:
    return _path("CB_DATASET_DIR", data_dir() / "dataset")


def logs_dir() -> Path:
    return _path("CB_LOGS_DIR", data_dir() / "logs")


def duckdb_path() -> Path:
    return _path("CB_DUCKDB_PATH", data_dir() / "cooperbench.duckdb")


def subset() -> str:
    return os.environ.get("CB_SUBSET", "lite")


def experiments_file() -> Path:
    """The experiment registry (experiments.yaml at the project root)."""
    return _path("CB_EXPERIMENTS", PROJECT_ROOT / "experiments.yaml")


def experiment() -> str | None:
    """The experiment runs default to: a name in the registry; its first entry when unset."""
    return _value("CB_EXPERIMENT")


# Read before the registry existed; a set one now says where its setting went.
RETIRED = {
    "CB_AGENT": "agent",
    "CB_MODEL": "model",
    "CB_AGENT_CONFIG": "agent_config",
    "CB_BACKEND": "backend",
}


def retired_variables() -> list[str]:
    """One line per retired variable that is set: experiments.yaml holds it now."""
    return [
        f"{var}={os.environ[var]!r}: no longer read; set `{key}:` of an experiment in "
        f"{experiments_file()} and pick it with --experiment or CB_EXPERIMENT"
        for var, key in RETIRED.items()
        if _value(var)
    ]


def redis_url() -> str:
    return _value(REDIS_URL_VAR) or DEFAULT_REDIS_URL


def redis_url_if_set() -> str | None:
    """`CB_REDIS_URL` only when it is set: in a cooperbench child, the URL the runner gave it
    through the environment (never the command line, which every user can read)."""
    return _value(REDIS_URL_VAR)


def launcher() -> str:
    """How pair-runs start: `forkserver` (default) or `subprocess`."""
    return _choice("CB_LAUNCHER", "forkserver", LAUNCHERS)


def external_agent_modules() -> list[str]:
    """Upstream's COOPERBENCH_EXTERNAL_AGENTS: modules that register more agent frameworks."""
    raw = os.environ.get("COOPERBENCH_EXTERNAL_AGENTS", "")
    return [m.strip() for m in raw.split(",") if m.strip()]


def docker_host() -> str:
    """The Docker engine holding the task images: CB_DOCKER_HOST, DOCKER_HOST, the socket."""
    return _value("CB_DOCKER_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def image_registry() -> str:
    """Where missing task images are pulled from; empty means Docker Hub."""
    return os.environ.get("CB_IMAGE_REGISTRY", "")


def image_namespace(default: str) -> str:
    """The task images' namespace in that registry (`default`: upstream's)."""
    return _value("CB_IMAGE_NAMESPACE") or default


DUCKDB_SCHEMA = "main"  # DuckDB's default, so `select * from run_results` just works


def bottle_cache_dir() -> Path:
    """Where `cb-assets selfcheck` keeps its Debian root filesystem: outside any clone."""
    if _value("CB_BOTTLE_CACHE"):
        return Path(os.environ["CB_BOTTLE_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/cb-assets")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cb-assets"


def retry_delay_seconds() -> float:
    """First backoff delay between infrastructure retries (then doubling, with jitter)."""
    return _seconds("CB_RETRY_DELAY_SECONDS", 10.0, whole=False, positive=False)


def failure_patterns_file() -> str | None:
    """A JSON list of extra failure patterns, checked before the built-in ones."""
    return os.environ.get("CB_FAILURE_PATTERNS") or None


def sensor_interval_seconds() -> int:
    """How often `new_results` looks for result files written outside Dagster."""
    return int(_seconds("CB_SENSOR_INTERVAL_SECONDS", 30, whole=True, positive=True))


def reaper_interval_seconds() -> int:
    """How often `dead_run_reaper` looks for runs whose worker died without reporting."""
    return int(_seconds("CB_REAPER_INTERVAL_SECONDS", 30, whole=True, positive=True))


def report_refresh_seconds() -> int:
    """The least time between two automatic refreshes of the manifest and the report."""
    return int(_seconds("CB_REPORT_REFRESH_SECONDS", 120, whole=True, positive=True))


def forkserver_socket() -> Path | None:
    """An explicit fork-server socket path (its folder must be private), or None."""
    value = _value("CB_FORKSERVER_SOCKET")
    return Path(value) if value else None


def code_image() -> str:
    """The image run workers start from in the scale-out profile."""
    return _value("CB_CODE_IMAGE") or "cb-assets:latest"


def run_network() -> str | None:
    """The Docker network run workers join in the scale-out profile."""
    return _value("CB_RUN_NETWORK")


# ------------------------------------- read inside the cooperbench child (offline agents)


def child_dataset_dir() -> str:
    """The dataset the runner handed the child; upstream's own default otherwise."""
    return _value("CB_DATASET_DIR") or "dataset"


def flaky_rates() -> str:
    """`flaky` agent: fault rates, e.g. `transient=0.3,permanent=0.1`."""
    return os.environ.get("CB_FLAKY_RATES", "")


def flaky_seed() -> str:
    return os.environ.get("CB_FLAKY_SEED", "0")


def oracle_partner_wait_seconds() -> float:
    """How long an offline agent waits for its coop partner's note."""
    return _seconds("CB_ORACLE_PARTNER_WAIT", 30.0, whole=False, positive=True)


def offline_agent_delay_seconds() -> float:
    """How long offline agents sleep before submitting (kill and timeout tests)."""
    return _seconds("CB_OFFLINE_AGENT_DELAY", 0.0, whole=False, positive=False)


# ---------------------------------------------------------------- the Dagster instance

DAGSTER_HOME_UNDER_DATA = "dagster-home"


def dagster_home() -> Path:
    """The Dagster instance the platform uses, decided in one place (the CLI and the scripts
    both ask here): DAGSTER_HOME when set; else, when CB_DATA_DIR is set,
    `<CB_DATA_DIR>/dagster-home`, whose dagster.yaml keeps the instance under CB_DATA_DIR;
    else the project root, whose dagster.yaml keeps it under `data/dagster/`."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    if _value("CB_DATA_DIR"):
        return data_dir() / DAGSTER_HOME_UNDER_DATA
    return PROJECT_ROOT


_BASE_DIR = re.compile(r"^([ \t]*base_dir:[ \t]*)data/(\S*)[ \t]*$", re.MULTILINE)


def instance_yaml(data: Path) -> str:
    """The project's dagster.yaml with its storage, artifact and compute-log folders moved
    from `data/` to `data` (absolute), every other setting as it is."""
    text = (PROJECT_ROOT / "dagster.yaml").read_text(encoding="utf-8")
    moved, count = _BASE_DIR.subn(lambda m: m.group(1) + json.dumps(str(data / m.group(2))), text)
    if count == 0:
        raise ConfigError(f"{PROJECT_ROOT / 'dagster.yaml'}: no `base_dir: data/…` to move")
    return (
        f"# Written by cb_assets.config for CB_DATA_DIR={data}: the project's dagster.yaml with\n"
        "# its folders under CB_DATA_DIR. Edit the project's file; this one is rewritten.\n" + moved
    )


def runtime_dir() -> Path | None:
    """The user's runtime directory (XDG_RUNTIME_DIR), when it is an absolute path."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    return Path(value) if value and os.path.isabs(value) else None


def export_dagster_home() -> Path:
    """Point Dagster (which reads DAGSTER_HOME itself) at `prepare_dagster_home()`, unless
    DAGSTER_HOME is set already; the home in effect."""
    os.environ.setdefault("DAGSTER_HOME", str(prepare_dagster_home()))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home


def prepare_dagster_home() -> Path:
    """`dagster_home()`, created; for CB_DATA_DIR, with its dagster.yaml (re)written."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("DAGSTER_HOME") and _value("CB_DATA_DIR"):
        wanted = instance_yaml(data_dir())
        target = home / "dagster.yaml"
        if not target.is_file() or target.read_text(encoding="utf-8") != wanted:
            tmp = target.with_suffix(f".yaml.{os.getpid()}")
            tmp.write_text(wanted, encoding="utf-8")
            tmp.replace(target)
    return home


if __name__ == "__main__":  # `python -m cb_assets.config dagster-home`, for the scripts
    import sys

    if sys.argv[1:] != ["dagster-home"]:
        sys.exit("usage: python -m cb_assets.config dagster-home")
    print(prepare_dagster_home())


# ------------------------------------------------------------ the scale-out profile


def postgres_url() -> str | None:
    """The scale-out profile's instance storage (SQLAlchemy form,
    `postgresql+psycopg2://role@/db?host=<socket folder>`); deploy/docker/dagster.yaml reads
    the same variable through `env:`."""
    return _value("CB_POSTGRES_URL")
