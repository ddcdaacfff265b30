"""The profile made concrete for one stack: its folders moved, nothing else."""

from pathlib import Path

import pytest

from cb_assets.bottle import scale_out
from cb_assets.bottle.scale_out import ProfileError, Stack, profile_yaml


def _stack(tmp_path: Path, runs: int | None = None) -> Stack:
    return Stack(tmp_path / "data", tmp_path / "ds", tmp_path / "pg", tmp_path / "d.sock", runs)


def test_every_folder_moves_and_every_other_line_stays(tmp_path: Path) -> None:
    text = profile_yaml(_stack(tmp_path, runs=3))
    for placeholder in (scale_out.DATA, scale_out.DATASET, scale_out.POSTGRES_SOCKETS):
        assert placeholder not in text
    assert f"- {tmp_path / 'ds'}:{tmp_path / 'ds'}:ro" in text  # the dataset, not data + "set"
    assert "max_concurrent_runs: 3" in text
    original = scale_out.PROFILE.read_text()
    assert text.count("\n") == original.count("\n") + 1  # the header line
    assert "DockerRunLauncher" in text and "env: CB_POSTGRES_URL" in text


def test_a_profile_without_a_folder_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "dagster.yaml"
    profile.write_text("storage: {}\n")
    with pytest.raises(ProfileError, match="/srv/cb-assets/dataset"):
        profile_yaml(_stack(tmp_path), profile)


def test_the_environment_sets_every_name_the_profile_hands_on(tmp_path: Path) -> None:
    import yaml

    stack = _stack(tmp_path)
    env = scale_out.environment(
        stack,
        tmp_path / "home",
        postgres_url="postgresql+psycopg2://cb@/dagster?host=/x",
        code_image="cb-assets:x",
        experiments=tmp_path / "data" / "experiments.yaml",
        docker_host="unix:///x.sock",
    )
    profile = yaml.safe_load(scale_out.PROFILE.read_text())
    # the launcher refuses to launch when a listed name is unset
    assert set(profile["run_launcher"]["config"]["env_vars"]) <= set(env)
    assert env["DOCKER_HOST"] == "unix:///x.sock"  # the launcher's own engine
