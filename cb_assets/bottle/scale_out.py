"""The scale-out profile (deploy/docker/dagster.yaml) made concrete for one stack: its shared
folders moved to where this stack has them, and the environment its daemon needs.

`start_engine` is the bottle's engine (`services.start_engine`: a private dockerd, no bridge,
no iptables) on overlay2 storage: with vfs every run container begins with a full copy of
the 1.7 GB code image (measured 140 s each on this machine), with overlay2 none (4 s).

The profile names the deployment's folders (`/srv/cb-assets/data`, …). A private stack — a
test, a trial on a workstation — has them elsewhere; `profile_yaml` substitutes them, every
other setting as the file has it, the way `config.instance_yaml` moves the local
instance's folders. Pure text: no Dagster here.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cb_assets.bottle import services
from cb_assets.config import PROJECT_ROOT

PROFILE = PROJECT_ROOT / "deploy" / "docker" / "dagster.yaml"
DATA = "/srv/cb-assets/data"
DATASET = "/srv/cb-assets/dataset"
POSTGRES_SOCKETS = "/run/cb-assets/postgres"
DOCKER_SOCKET = "/var/run/docker.sock"
API_KEYS = ("COHERE_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")  # the profile's env_vars
_MAX_RUNS = re.compile(r"^(\s*max_concurrent_runs:\s*)\d+\s*$", re.MULTILINE)


class ProfileError(ValueError):
    """The profile does not have the setting a stack wants to move."""


@dataclass(frozen=True)
class Stack:
    data_dir: Path  # the data volume, mounted at the same path in every run container
    dataset_dir: Path
    postgres_socket_dir: Path
    docker_socket: Path  # the engine agents start task containers on
    max_concurrent_runs: int | None = None  # None: the profile's


def profile_yaml(stack: Stack, profile: Path = PROFILE) -> str:
    """The profile with the stack's folders (and, if given, its run limit)."""
    text = profile.read_text(encoding="utf-8")
    for placeholder, actual in (  # the dataset first: the data folder's path is its prefix
        (DATASET, stack.dataset_dir),
        (DATA, stack.data_dir),
        (POSTGRES_SOCKETS, stack.postgres_socket_dir),
        (DOCKER_SOCKET, stack.docker_socket),
    ):
        if placeholder not in text:
            raise ProfileError(f"{profile}: no {placeholder} to move")
        text = text.replace(placeholder, str(actual))
    if stack.max_concurrent_runs is not None:
        text, count = _MAX_RUNS.subn(rf"\g<1>{stack.max_concurrent_runs}", text)
        if count != 1:
            raise ProfileError(f"{profile}: no single max_concurrent_runs to set")
    return (
        f"# Written from {profile} for the stack with data at {stack.data_dir}; edit that file.\n"
        + text
    )


def write_home(home: Path, stack: Stack, profile: Path = PROFILE) -> Path:
    """DAGSTER_HOME for the stack: a folder holding the rendered dagster.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(profile_yaml(stack, profile), encoding="utf-8")
    return home


def environment(
    stack: Stack,
    home: Path,
    *,
    postgres_url: str,
    code_image: str,
    experiments: Path,
    docker_host: str,
    network: str = "none",
) -> dict[str, str]:
    """The variables the daemon (and so every run container, by name) needs. The profile's
    `env_vars` must all be set: the API keys default to empty."""
    return {
        "DAGSTER_HOME": str(home),
        "CB_POSTGRES_URL": postgres_url,
        "CB_CODE_IMAGE": code_image,
        "CB_RUN_NETWORK": network,
        "CB_DATA_DIR": str(stack.data_dir),
        "CB_DATASET_DIR": str(stack.dataset_dir),
        "CB_SUBSET": "lite",
        "CB_EXPERIMENTS": str(experiments),
        "CB_REDIS_URL": "redis://127.0.0.1:6379",
        "CB_DOCKER_HOST": docker_host,
        "DOCKER_HOST": docker_host,  # the DockerRunLauncher's engine (docker.from_env)
        **{key: os.environ.get(key, "") for key in API_KEYS},
    }


def start_engine(log_dir: Path, timeout: float = 60.0) -> services.Service:
    """The private engine on overlay2 (see services.start_engine: vfs copies the code image
    for every run container)."""
    return services.start_engine(log_dir, timeout, storage_driver="overlay2")
