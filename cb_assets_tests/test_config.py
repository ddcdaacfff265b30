"""Configuration: bad values are one line naming the variable; CB_DATA_DIR moves the instance."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cb_assets import config
from cb_assets.config import PROJECT_ROOT, ConfigError
from cb_assets.shared.experiments import RegistryError, load_registry, parse_registry


@pytest.mark.parametrize(
    ("var", "value", "read", "expected"),
    [
        ("CB_RETRY_DELAY_SECONDS", "abc", config.retry_delay_seconds, "non-negative number"),
        ("CB_RETRY_DELAY_SECONDS", "-1", config.retry_delay_seconds, "non-negative number"),
        ("CB_RETRY_DELAY_SECONDS", "nan", config.retry_delay_seconds, "non-negative number"),
        ("CB_SENSOR_INTERVAL_SECONDS", "0", config.sensor_interval_seconds, "positive whole"),
        ("CB_SENSOR_INTERVAL_SECONDS", "2.5", config.sensor_interval_seconds, "positive whole"),
        ("CB_REPORT_REFRESH_SECONDS", "soon", config.report_refresh_seconds, "positive whole"),
        ("CB_LAUNCHER", "fork", config.launcher, "forkserver, subprocess"),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_expectation(
    monkeypatch, var: str, value: str, read, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        read()
    message = str(err.value)
    assert message.startswith(f"{var}={value!r}: expected") and expected in message
    assert "\n" not in message and err.value.__cause__ is None


def test_good_values_and_defaults(monkeypatch) -> None:
    for var in (
        "CB_RETRY_DELAY_SECONDS",
        "CB_LAUNCHER",
        "CB_SENSOR_INTERVAL_SECONDS",
    ):
        monkeypatch.delenv(var, raising=False)
    assert (config.retry_delay_seconds(), config.sensor_interval_seconds()) == (10.0, 30)
    assert config.launcher() == "forkserver"
    monkeypatch.setenv("CB_RETRY_DELAY_SECONDS", "0.5")
    monkeypatch.setenv("CB_SENSOR_INTERVAL_SECONDS", "5")
    monkeypatch.setenv("CB_LAUNCHER", "subprocess")
    assert (config.retry_delay_seconds(), config.sensor_interval_seconds()) == (0.5, 5)
    assert config.launcher() == "subprocess"


def test_a_bad_backend_is_one_line_naming_the_registry_key(tmp_path: Path) -> None:
    # CB_BACKEND is retired: the backend is an experiment's `backend:` in experiments.yaml.
    path = tmp_path / "experiments.yaml"
    text = "experiments:\n  - {name: mine, agent: noop, model: noop, backend: k8s}\n"
    with pytest.raises(RegistryError) as err:
        parse_registry(text, path)
    message = str(err.value)
    assert (
        message.startswith(f"{path}: key 'experiments.mine.backend'")
        and "docker, modal, gcp" in message
    )
    assert "\n" not in message
    ok = parse_registry(text.replace("k8s", "modal"), path)
    assert ok.get("mine").backend == "modal"
    assert parse_registry(text.replace(", backend: k8s", ""), path).default.backend == "docker"


def test_a_retired_variable_is_named_with_where_its_setting_went(monkeypatch, tmp_path) -> None:
    for var in config.RETIRED:
        monkeypatch.delenv(var, raising=False)
    assert config.retired_variables() == []
    registry = tmp_path / "experiments.yaml"
    monkeypatch.setenv("CB_EXPERIMENTS", str(registry))
    monkeypatch.setenv("CB_AGENT", "noop")
    monkeypatch.setenv("CB_BACKEND", "modal")
    lines = config.retired_variables()
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("CB_AGENT='noop': no longer read") and "`agent:`" in lines[0]
    assert lines[1].startswith("CB_BACKEND='modal'") and "`backend:`" in lines[1]
    assert all(str(registry) in line and "CB_EXPERIMENT" in line for line in lines)


def test_the_registry_file_and_experiment_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CB_EXPERIMENTS", raising=False)
    monkeypatch.delenv("CB_EXPERIMENT", raising=False)
    assert config.experiments_file() == PROJECT_ROOT / "experiments.yaml"
    assert config.experiment() is None
    shipped = load_registry(config.experiments_file())
    assert shipped.names[:3] == ["oracle", "noop", "flaky"] and shipped.default.name == "oracle"
    monkeypatch.setenv("CB_EXPERIMENTS", str(tmp_path / "x.yaml"))
    monkeypatch.setenv("CB_EXPERIMENT", "noop")
    assert (config.experiments_file(), config.experiment()) == (tmp_path / "x.yaml", "noop")


def test_docker_settings_are_read_here(monkeypatch) -> None:
    monkeypatch.delenv("CB_DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert config.docker_host() == "tcp://10.0.0.1:2375"
    monkeypatch.setenv("CB_DOCKER_HOST", "unix:///tmp/d.sock")
    monkeypatch.setenv("CB_IMAGE_REGISTRY", "127.0.0.1:5000")
    monkeypatch.setenv("CB_IMAGE_NAMESPACE", "mine")
    assert config.docker_host() == "unix:///tmp/d.sock"
    assert (config.image_registry(), config.image_namespace("akhatua")) == (
        "127.0.0.1:5000",
        "mine",
    )


def test_loading_the_definitions_with_a_bad_value_says_it_in_one_line(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "CB_RETRY_DELAY_SECONDS": "abc"}
    proc = subprocess.run(
        [sys.executable, "-c", "from cb_assets.definitions import defs; defs()"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "cb_assets.config.ConfigError: CB_RETRY_DELAY_SECONDS='abc': "
        "expected a non-negative number of seconds"
    ), proc.stderr[-2000:]
    assert "could not convert" not in proc.stderr


def test_the_dagster_instance_follows_cb_data_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CB_DATA_DIR", raising=False)
    assert config.dagster_home() == PROJECT_ROOT  # the default, as before

    data = tmp_path / "elsewhere"
    monkeypatch.setenv("CB_DATA_DIR", str(data))
    home = config.prepare_dagster_home()
    assert home == data / "dagster-home"
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    project = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert written["storage"]["sqlite"]["base_dir"] == str(data / "dagster" / "storage")
    assert written["local_artifact_storage"]["config"]["base_dir"] == str(data / "dagster")
    assert written["compute_logs"]["config"]["base_dir"] == str(data / "dagster/compute_logs")
    for key in ("concurrency", "run_monitoring", "telemetry"):
        assert written[key] == project[key]

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "explicit"))
    assert config.dagster_home() == tmp_path / "explicit"  # an explicit DAGSTER_HOME wins


def test_the_scripts_ask_config_for_the_instance(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    script = 'source scripts/lib.sh; use_instance; echo "$DAGSTER_HOME"'
    moved = subprocess.run(
        ["bash", "-c", script],
        cwd=PROJECT_ROOT,
        env={**env, "CB_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert moved.stdout.strip() == str(tmp_path / "dagster-home"), moved.stderr
    assert (tmp_path / "dagster-home" / "dagster.yaml").is_file()
    default = subprocess.run(
        ["bash", "-c", script],
        cwd=PROJECT_ROOT,
        env={k: v for k, v in env.items() if k != "CB_DATA_DIR"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert default.stdout.strip() == str(PROJECT_ROOT), default.stderr
