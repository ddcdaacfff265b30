"""`cooperbench eval` ending without an eval.json: retried when the cause can pass, failed
at once (naming the pair and the reason) when upstream refused for good."""

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from cb_assets.defs.evals.assets import _run_eval
from cb_assets.runner.outcome import LaunchResult
from cb_assets.shared.dataset import Pair
from cb_assets.shared.experiments import Experiment
from cb_assets.shared.failures import DEFAULT_PATTERNS, config_error_cause
from cb_assets.shared.partition_keys import Arm

PAIR = Pair("pallets_click_task", 2956, 3, 6)
ARM = Arm("oh", "coop-comm", 1)
# as upstream 0.0.29 prints them (rich wraps at 80 columns), exit status 0 both
OPENHANDS_ON_DOCKER = (
    "warning: run oh-coop-comm-r1 was produced by agent_framework=openhands_sdk, which "
    "requires\n--backend modal. Refusing to evaluate with --backend docker. Rerun with \n"
    "--backend modal.\n"
)
NO_RUNS = "no runs found to evaluate\n"
NO_ENGINE = (
    "Traceback (most recent call last):\n"
    '  File "docker/api/client.py", line 429, in _retrieve_server_version\n'
    "docker.errors.DockerException: Error while fetching server API version: "
    "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))\n"
)


@dataclass
class StubRunner:
    """Stands in for CooperBenchRunner: an eval that prints `output` and writes nothing."""

    logs_dir: str
    output: str
    exit_code: int = 0
    timed_out: bool = False

    def pair_dir(self, pair: Pair, arm: Arm) -> Path:
        return Path(self.logs_dir) / arm.run_name / "coop" / pair.repo / "2956" / "f3_f6"

    def eval_pair(self, pair, arm, experiment, *, force: bool, log_path: Path) -> LaunchResult:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(self.output)
        return LaunchResult(self.exit_code, log_path, timed_out=self.timed_out)


def run_eval(tmp_path: Path, output: str, retry_number: int = 0, **kw) -> Exception:
    runner = StubRunner(str(tmp_path / "logs"), output, **kw)
    context = SimpleNamespace(retry_number=retry_number)  # all _run_eval asks of its context
    experiment = Experiment("oh", "openhands_sdk", "m")
    with pytest.raises(Exception) as err:
        _run_eval(context, runner, PAIR, ARM, experiment, False, DEFAULT_PATTERNS, 1)
    return err.value


def test_openhands_on_a_non_modal_backend_is_a_config_error_not_retried(tmp_path) -> None:
    err = run_eval(tmp_path, OPENHANDS_ON_DOCKER)
    assert isinstance(err, dg.Failure) and not err.allow_retries
    cause = config_error_cause(err.description or "")
    assert cause is not None and cause.startswith("config_error: eval-backend-refused: ")
    assert PAIR.key in cause and ARM.key in cause
    assert "Refusing to evaluate with --backend docker" in cause


def test_a_pair_upstream_cannot_find_fails_once_naming_it(tmp_path) -> None:
    err = run_eval(tmp_path, NO_RUNS)
    assert isinstance(err, dg.Failure) and not err.allow_retries
    description = err.description or ""
    assert config_error_cause(description) is None  # the other pairs may be fine
    assert PAIR.key in description and "no runs found to evaluate" in description
    assert "[eval-no-runs]" in description and "retrying cannot change that" in description


@pytest.mark.parametrize(
    ("output", "kw", "rule"),
    [
        (NO_ENGINE, {"exit_code": 1}, "docker-unreachable"),
        (NO_RUNS, {"exit_code": -9, "timed_out": True}, "runner-crash"),
        ("", {}, "runner-crash"),
    ],
)
def test_transient_causes_stay_retried_infra_errors(tmp_path, output, kw, rule) -> None:
    err = run_eval(tmp_path, output, **kw)
    assert isinstance(err, RuntimeError) and not isinstance(err, dg.Failure)
    assert str(err).startswith("infra_error: ") and f"[{rule}]" in str(err)
    last = run_eval(tmp_path, output, retry_number=2, **kw)
    assert isinstance(last, dg.Failure) and "giving up after 3 attempts" in str(last.description)
