"""The `cooperbench run` command line for one pair in one arm (experiment, setting, repeat).

The Redis URL (which may hold a password) is not on the command line, which every user of
the machine can read in /proc/<pid>/cmdline: `run_env` puts it in the child's environment
(readable by its owner only) and the wrapped CLI puts it back with `upstream_argv`.
"""

from dataclasses import dataclass
from pathlib import Path

from cb_assets.config import REDIS_URL_VAR
from cb_assets.shared.dataset import Pair
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import get_setting


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides what upstream runs and where it writes."""

    agent: str
    model: str
    dataset_dir: Path
    logs_dir: Path
    redis_url: str
    agent_config: Path | None = None
    backend: str = "docker"  # upstream's --backend: where agents' sandboxes run
    team_flags: tuple[str, ...] = ()  # team's ablation switches (--team-no-…)


def pair_log_dir(logs_dir: Path, pair: Pair, arm: Arm) -> Path:
    """Where upstream writes a pair: `<logs>/<run_name>/<subtree>/<repo>/<task>/f<a>_f<b>`."""
    upstream = get_setting(arm.setting).upstream
    return logs_dir / arm.run_name / upstream / pair.repo / str(pair.task_id) / pair.features_dir


def _one_pair(command: str, spec: RunSpec, pair: Pair, arm: Arm) -> list[str]:
    """The arguments that select exactly this pair of this arm's run."""
    return [
        command, "--name", arm.run_name,
        "-r", pair.repo, "-t", str(pair.task_id), "-f", f"{pair.feature_a},{pair.feature_b}",
        "--concurrency", "1", "--backend", spec.backend,
        "--log-dir", str(spec.logs_dir), "--dataset-dir", str(spec.dataset_dir),
    ]  # fmt: skip


def run_argv(spec: RunSpec, pair: Pair, arm: Arm, *, force: bool = False) -> list[str]:
    setting = get_setting(arm.setting)
    argv = [
        *_one_pair("run", spec, pair, arm),
        *setting.cli_flags,
        *(spec.team_flags if setting.upstream == "team" else ()),
        "--agent", spec.agent, "--model", spec.model,
        "--no-auto-eval",
    ]  # fmt: skip
    if spec.agent_config is not None:
        argv += ["--agent-config", str(spec.agent_config)]
    return argv + (["--force"] if force else [])


def run_env(spec: RunSpec) -> dict[str, str]:
    """What `cooperbench run` needs in its environment rather than on its command line."""
    return {REDIS_URL_VAR: spec.redis_url}


def upstream_argv(argv: list[str], redis_url: str | None) -> list[str]:
    """In the cooperbench process: `argv` as upstream's CLI takes it, with `--redis` (from
    the environment, `config.redis_url_if_set()`) for `run`; in-process arguments are not
    on the process's command line."""
    if argv[:1] == ["run"] and redis_url and "--redis" not in argv:
        return [*argv, "--redis", redis_url]
    return list(argv)


def eval_argv(spec: RunSpec, pair: Pair, arm: Arm, *, force: bool = False) -> list[str]:
    """`cooperbench eval` for exactly one pair of one arm's run."""
    return _one_pair("eval", spec, pair, arm) + (["--force"] if force else [])
