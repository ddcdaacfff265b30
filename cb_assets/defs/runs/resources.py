import os
from pathlib import Path

import dagster as dg
import redis

from cb_assets import config
from cb_assets.defs.benchmark.resources import BenchmarkDataset, default_dataset
from cb_assets.runner.command import RunSpec, eval_argv, pair_log_dir, run_argv, run_env
from cb_assets.runner.forkserver import socket_path_for
from cb_assets.runner.launch import child_env, launch
from cb_assets.runner.outcome import LaunchResult
from cb_assets.shared.dataset import Pair
from cb_assets.shared.failures import Pattern, load_patterns
from cb_assets.shared.secrets import scrub
from cb_assets.shared.settings import get_setting


class RedisUnavailableError(RuntimeError):
    """coop-comm needs a Redis server and none answers at the configured URL."""


class CooperBenchRunner(dg.ConfigurableResource):
    """How pairs are run: upstream's CLI, this agent and model, logs under `logs_dir`.

    API keys are never configuration: the cooperbench process inherits them from
    the environment, and nothing here records them.
    """

    dataset: dg.ResourceDependency[BenchmarkDataset]
    logs_dir: str
    experiment: str = "oracle"
    agent: str = "oracle"
    model: str = "oracle"
    agent_config: str | None = None
    redis_url: str = "redis://127.0.0.1:6379"
    launcher: str = "forkserver"
    timeout_seconds: float = 3600.0
    failure_patterns_file: str | None = None
    backend: str = "docker"
    """upstream's --backend for agent sandboxes: docker (this host), modal or gcp."""

    def failure_patterns(self) -> tuple[Pattern, ...]:
        return load_patterns(
            Path(self.failure_patterns_file) if self.failure_patterns_file else None
        )

    def spec(self) -> RunSpec:
        return RunSpec(
            experiment=self.experiment,
            agent=self.agent,
            model=self.model,
            dataset_dir=self.dataset.root,
            logs_dir=Path(self.logs_dir),
            redis_url=self.redis_url,
            agent_config=Path(self.agent_config) if self.agent_config else None,
            backend=self.backend,
        )

    def pair_dir(self, pair: Pair, setting: str) -> Path:
        return pair_log_dir(self.spec(), pair, setting)

    def check_redis(self) -> None:
        try:
            redis.from_url(self.redis_url, socket_connect_timeout=2).ping()
        except (redis.RedisError, ValueError) as exc:
            raise RedisUnavailableError(
                f"Redis at {scrub(self.redis_url)} is unreachable ({exc}); coop-comm needs it: "
                "start one with `scripts/start-redis` or set CB_REDIS_URL"
            ) from None

    def fork_socket(self) -> Path:
        return socket_path_for(Path(self.logs_dir))

    def eval_pair(self, pair: Pair, setting: str, *, force: bool, log_path: Path) -> LaunchResult:
        env = child_env(os.environ, {"CB_DATASET_DIR": str(self.dataset.root)})
        return launch(
            self.launcher,
            eval_argv(self.spec(), pair, setting, force=force),
            env,
            log_path,
            self.timeout_seconds,
            self.fork_socket(),
        )

    def run_pair(
        self,
        pair: Pair,
        setting: str,
        *,
        force: bool,
        log_path: Path,
        hold_fds: tuple[int, ...] = (),
    ) -> LaunchResult:
        """Run one pair; `hold_fds` (its claim) live as long as the cooperbench process."""
        get_setting(setting)
        spec = self.spec()
        env = child_env(os.environ, {"CB_DATASET_DIR": str(self.dataset.root), **run_env(spec)})
        return launch(
            self.launcher,
            run_argv(spec, pair, setting, force=force),
            env,
            log_path,
            self.timeout_seconds,
            self.fork_socket(),
            hold_fds,
        )


@dg.definitions
def resources() -> dg.Definitions:
    # one dataset resource: the runner's dependency is the same object as the top-level
    # `dataset`, so a launchpad override of `dataset` reaches the runner too
    dataset = default_dataset()
    return dg.Definitions(
        resources={
            "dataset": dataset,
            "runner": CooperBenchRunner(
                dataset=dataset,
                logs_dir=str(config.logs_dir()),
                experiment=config.experiment(),
                agent=config.agent(),
                model=config.model(),
                agent_config=config.agent_config(),
                redis_url=config.redis_url(),
                launcher=config.launcher(),
                failure_patterns_file=config.failure_patterns_file(),
                backend=config.backend(),
            ),
        }
    )
