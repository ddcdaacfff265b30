"""A platform configured by environment, as users configure it, inside a temp folder."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cb_assets.cli.launch import range_tags
from cb_assets.config import PROJECT_ROOT, RETIRED
from cb_assets.shared.partition_keys import Arm, partition_key
from cb_assets_tests.support.synthetic import make_subset_dataset


@dataclass
class Platform:
    """A platform configured by environment, as users configure it, inside tmp_path."""

    root: Path
    dataset_dir: Path
    instance: dg.DagsterInstance

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "cooperbench.duckdb"

    def defs(self) -> dg.Definitions:
        from cb_assets.definitions import defs

        return defs()

    def materialize(
        self,
        selection: list[str],
        partition_key: str | None = None,
        run_config: dict | None = None,
        raise_on_error: bool = False,
        partition_range: tuple[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `selection` for one partition, or for a range (first, last) in one run."""
        d = self.defs()
        return dg.materialize(
            list(d.assets),
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources=d.resources,
            raise_on_error=raise_on_error,
            run_config=run_config,
            tags=range_tags(*partition_range) if partition_range else None,
        )

    def query(self, sql: str) -> list[tuple]:
        from cb_assets.defs.storage import duckdb_access

        with duckdb_access.connect(self.duckdb_path, read_only=True) as conn:
            return conn.execute(sql).fetchall()


def platform_env(
    root: Path,
    dataset_dir: Path,
    redis_url: str,
    subset: str = "test",
    launcher: str = "forkserver",
    experiments: Path | None = None,
    experiment: str = "oracle",
) -> dict[str, str]:
    """The environment that configures a platform whose data lives under `root`: the shipped
    experiment registry (or `experiments`), runs defaulting to `experiment`."""
    return {
        "CB_DATA_DIR": str(root / "data"),
        "CB_DATASET_DIR": str(dataset_dir),
        "CB_SUBSET": subset,
        "CB_REDIS_URL": redis_url,
        "CB_LAUNCHER": launcher,
        "CB_EXPERIMENTS": str(experiments or PROJECT_ROOT / "experiments.yaml"),
        "CB_EXPERIMENT": experiment,
    }


def write_registry(path: Path, *entries: dict) -> Path:
    """An experiments.yaml at `path` holding `entries` (mappings as the registry spells them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"experiments": list(entries)}, sort_keys=False))
    return path


@contextmanager
def open_platform(
    root: Path,
    lite_dataset: Path,
    redis_url: str,
    fork_socket: Path,
    mp: pytest.MonkeyPatch,
    n_pairs: int = 2,
    launcher: str = "forkserver",
    experiments: Path | None = None,
    experiment: str = "oracle",
) -> Iterator[Platform]:
    """A platform over the first `n_pairs` lite pairs, configured by environment as users
    configure it, with its own DuckDB file and Dagster instance under `root`; its experiments
    are the shipped registry's, or those of the registry file `experiments`."""
    dataset = make_subset_dataset(lite_dataset, root / "dataset", n_pairs)
    env = platform_env(
        root, dataset, redis_url, launcher=launcher, experiments=experiments, experiment=experiment
    )
    for name, value in env.items():
        mp.setenv(name, value)
    for retired in RETIRED:  # a set one is a preflight error
        mp.delenv(retired, raising=False)
    mp.setenv("CB_FORKSERVER_SOCKET", str(fork_socket))
    (root / "dagster").mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        yield Platform(root=root, dataset_dir=dataset, instance=instance)


def pair_dir(
    platform: Platform, pair: str, setting: str, experiment: str = "oracle", repeat: int = 1
) -> Path:
    """Where upstream writes `pair` of `setting` (of `experiment`, `repeat`) in this
    platform's logs."""
    from cb_assets.shared.dataset import parse_pair_key
    from cb_assets.shared.settings import get_setting

    p = parse_pair_key(pair)
    return (
        platform.logs_dir
        / Arm(experiment, setting, repeat).run_name
        / get_setting(setting).upstream
        / p.repo
        / str(p.task_id)
        / p.features_dir
    )


def key(pair: str, setting: str, experiment: str = "oracle", repeat: int = 1) -> str:
    """The run_results partition key of `pair` in `setting` of `experiment`."""
    return partition_key(Arm(experiment, setting, repeat).key, pair)


def run_results_meta(result: dg.ExecuteInProcessResult) -> dict:
    """Metadata values of the run_results materialization (not run_attempts') of a run."""
    [meta] = [
        m.metadata
        for m in result.asset_materializations_for_node("run_results")
        if m.asset_key == dg.AssetKey("run_results")
    ]
    return {k: v.value for k, v in meta.items()}


def gave_up_after_retries(result: dg.ExecuteInProcessResult) -> str:
    """The failure message of a step that the RetryPolicy retried twice before it gave up."""
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.event_specific_data.error.message
