import os
from pathlib import Path

import dagster as dg
import redis

from cb_assets import config
from cb_assets.defs.benchmark.resources import BenchmarkDataset, default_dataset
from cb_assets.defs.experiments.resources import default_registry
from cb_assets.runner.command import RunSpec, eval_argv, pair_log_dir, run_argv, run_env
from cb_assets.runner.forkserver import socket_path_for
from cb_assets.runner.launch import child_env, launch
from cb_assets.runner.outcome import LaunchResult
from cb_assets.shared.dataset import Pair
from cb_assets.shared.experiments import Experiment
from cb_assets.shared.failures import Pattern, load_patterns
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.secrets import scrub


class RedisUnavailableError(RuntimeError):
    """coop-comm needs a Redis server and none answers at the configured URL."""


class CooperBenchRunner(dg.ConfigurableResource):
    """How pairs are run: upstream's CLI, with an arm's experiment (agent, model, backend),
    logs under `logs_dir`. The experiments come from the `experiments` resource, a resource
    of its own (not a dependency of this one): run config overrides top-level resources
    only, and a run the command queues must read the command's registry.

    API keys are never configuration: the cooperbench process inherits them from
    the environment, and nothing here records them.
    """

    dataset: dg.ResourceDependency[BenchmarkDataset]
    logs_dir: str
    redis_url: str = "redis://127.0.0.1:6379"
    launcher: str = "forkserver"
    timeout_seconds: float = 3600.0
    failure_patterns_file: str | None = None

    def failure_patterns(self) -> tuple[Pattern, ...]:
        return load_patterns(
            Path(self.failure_patterns_file) if self.failure_patterns_file else None
        )

    def spec(self, experiment: Experiment) -> RunSpec:
        return RunSpec(
            agent=experiment.agent,
            model=experiment.model,
            dataset_dir=self.dataset.root,
            logs_dir=Path(self.logs_dir),
            redis_url=self.redis_url,
            agent_config=Path(experiment.agent_config) if experiment.agent_config else None,
            backend=experiment.backend,
            team_flags=tuple(experiment.team_flags()),
        )

    def pair_dir(self, pair: Pair, arm: Arm) -> Path:
        return pair_log_dir(Path(self.logs_dir), pair, arm)

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

    def eval_pair(
        self, pair: Pair, arm: Arm, experiment: Experiment, *, force: bool, log_path: Path
    ) -> LaunchResult:
        env = child_env(os.environ, {"CB_DATASET_DIR": str(self.dataset.root)})
        return launch(
            self.launcher,
            eval_argv(self.spec(experiment), pair, arm, force=force),
            env,
            log_path,
            self.timeout_seconds,
            self.fork_socket(),
        )

    def run_pair(
        self,
        pair: Pair,
        arm: Arm,
        experiment: Experiment,
        *,
        force: bool,
        log_path: Path,
        hold_fds: tuple[int, ...] = (),
    ) -> LaunchResult:
        """Run one pair; `hold_fds` (its claim) live as long as the cooperbench process."""
        spec = self.spec(experiment)
        env = child_env(os.environ, {"CB_DATASET_DIR": str(self.dataset.root), **run_env(spec)})
        return launch(
            self.launcher,
            run_argv(spec, pair, arm, force=force),
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
    dataset, experiments = default_dataset(), default_registry()
    return dg.Definitions(
        resources={
            "dataset": dataset,
            "experiments": experiments,
            "runner": CooperBenchRunner(
                dataset=dataset,
                logs_dir=str(config.logs_dir()),
                redis_url=config.redis_url(),
                launcher=config.launcher(),
                failure_patterns_file=config.failure_patterns_file(),
            ),
        }
    )
