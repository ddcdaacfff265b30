"""The experiment registry: every problem is one line naming the file and the key at fault."""

from pathlib import Path

import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets.shared.experiments import (
    Experiment,
    RegistryError,
    append_experiment,
    load_registry,
    parse_registry,
)
from cb_assets.shared.partition_keys import Arm
from cb_assets.shared.settings import DEFAULT_SETTINGS

PATH = Path("/etc/cb/experiments.yaml")


def test_the_shipped_registry_reads_and_oracle_is_the_default() -> None:
    registry = load_registry(PROJECT_ROOT / "experiments.yaml")
    assert registry.names == ["oracle", "noop", "flaky"]
    assert registry.default.name == "oracle"
    assert registry.default.settings == DEFAULT_SETTINGS and registry.default.repeats == 1


def test_an_entry_reads_with_its_defaults_and_arms() -> None:
    registry = parse_registry(
        "experiments:\n"
        "  - name: nano\n    agent: mini_swe_agent_v2\n    model: m\n"
        "    settings: [solo, team]\n    repeats: 2\n    team_options: [no-mcp]\n"
        "    secrets: [COHERE_API_KEY]\n",
        PATH,
    )
    nano = registry.get("nano")
    assert (nano.agent, nano.model, nano.backend, nano.source) == (
        "mini_swe_agent_v2", "m", "docker", "run"
    )  # fmt: skip
    assert nano.secrets == ("COHERE_API_KEY",)
    assert nano.arms() == [
        Arm("nano", "solo"), Arm("nano", "solo", 2), Arm("nano", "team"), Arm("nano", "team", 2)
    ]  # fmt: skip
    assert nano.arms(["team"]) == [Arm("nano", "team"), Arm("nano", "team", 2)]
    assert nano.team_flags() == ["--team-no-mcp"]


def test_an_unknown_experiment_names_the_file_and_what_it_has() -> None:
    registry = parse_registry("experiments:\n  - {name: a, agent: x, model: y}\n", PATH)
    with pytest.raises(RegistryError, match=r"^/etc/cb/experiments.yaml: no experiment 'b'.*a"):
        registry.get("b")
    assert registry.find("b") is None


def test_a_missing_file_says_which_variable_moves_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no experiment registry here.*CB_EXPERIMENTS"):
        load_registry(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # malformed YAML: the file and the line
        ("experiments:\n  - name: a\n   agent: [x\n", r"not valid YAML at line \d+"),
        ("- name: a\n", r"key 'experiments': expected a list"),
        ("experiments: []\nextra: 1\n", r"key 'extra': unknown"),
        (
            "experiments:\n  - {name: a, agent: x, model: y, settings: [solo, coop]}\n",
            r"key 'experiments.a.settings': unknown setting 'coop'; expected one of solo",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, modle: z}\n",
            r"key 'experiments\[0\].modle': unknown key",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y}\n  - {name: a, agent: z, model: y}\n",
            r"key 'experiments.a': duplicate experiment name",
        ),
        (
            "experiments:\n  - {name: command-a, agent: x, model: y}\n",
            r"key 'experiments\[0\].name': 'command-a' is not an experiment name.*no `-`",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, secrets: [sk-ant-api03-abcdef]}\n",
            r"key 'experiments.a.secrets': 'sk-ant-api03-abcdef' is not a variable name.*never",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, secrets: [cohere_api_key]}\n",
            r"key 'experiments.a.secrets'",
        ),
        ("experiments:\n  - {name: a, model: y}\n", r"key 'experiments.a.agent': missing"),
        (
            "experiments:\n  - {name: a, agent: x, model: y, repeats: 0}\n",
            r"key 'experiments.a.repeats': 0 is not a whole number",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, repeats: true}\n",
            r"key 'experiments.a.repeats'",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, backend: k8s}\n",
            r"key 'experiments.a.backend': 'k8s'; expected one of docker",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, settings: []}\n",
            r"key 'experiments.a.settings': empty",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, settings: [solo, solo]}\n",
            r"key 'experiments.a.settings': .* names one twice",
        ),
        (
            "experiments:\n  - {name: a, agent: x, model: y, team_options: [no-fun]}\n",
            r"key 'experiments.a.team_options': unknown team_option 'no-fun'",
        ),
        ("experiments:\n  - just a string\n", r"key 'experiments\[0\]': expected a mapping"),
    ],
)
def test_every_problem_names_the_file_and_the_key(text: str, where: str) -> None:
    with pytest.raises(RegistryError, match=rf"^/etc/cb/experiments.yaml: {where}") as info:
        parse_registry(text, PATH)
    assert "\n" not in str(info.value)


def test_a_loaded_file_names_itself_in_its_errors(tmp_path: Path) -> None:
    """A value pasted where a secret's name belongs is refused, naming the file read."""
    path = tmp_path / "experiments.yaml"
    path.write_text("experiments:\n  - {name: a, agent: x, model: y, secrets: ['abc def']}\n")
    with pytest.raises(RegistryError, match=str(path)):
        load_registry(path)


def test_an_empty_registry_has_no_default() -> None:
    registry = parse_registry("experiments: []\n", PATH)
    with pytest.raises(RegistryError, match="no experiments"):
        registry.default  # noqa: B018


def test_an_imported_experiment_needs_no_settings() -> None:
    registry = parse_registry(
        "experiments:\n  - {name: nano, agent: x, model: y, source: import}\n", PATH
    )
    assert registry.get("nano").imported and registry.get("nano").settings == ()


SHIPPED_LIKE = """\
# top comment, kept
experiments:
  # the default
  - name: oracle
    agent: oracle
    model: oracle  # trailing comment, kept
"""


def test_append_experiment_keeps_comments_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(SHIPPED_LIKE)
    nano = Experiment(
        "nano", "claude_code", "claude-sonnet-5", settings=(), source="import",
        description="imported from nano_msg_*",
    )  # fmt: skip
    updated = append_experiment(path, nano, "imported by cb-assets import")
    text = path.read_text()
    assert text.startswith(SHIPPED_LIKE)  # every comment and the order kept
    assert "# imported by cb-assets import" in text
    assert updated.names == ["oracle", "nano"] and load_registry(path) == updated
    assert updated.get("nano") == nano
    again = Experiment("mine", "noop", "noop", repeats=3)
    append_experiment(path, again, "second")
    assert load_registry(path).get("mine") == again
    assert not list(tmp_path.glob(".*.tmp"))


def test_append_refuses_a_name_already_registered(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(SHIPPED_LIKE)
    with pytest.raises(RegistryError, match=r"key 'experiments.oracle': already registered"):
        append_experiment(path, Experiment("oracle", "x", "y"), "dup")
    assert path.read_text() == SHIPPED_LIKE
