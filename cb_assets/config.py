"""Defaults for every path and knob, each overridable by one environment variable.

Read once when the definitions load; resources take these as their defaults, so
the launchpad can still override any of them per run.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


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


def agent() -> str:
    return os.environ.get("CB_AGENT", "oracle")


def model() -> str:
    return os.environ.get("CB_MODEL", "oracle")


def experiment() -> str:
    return os.environ.get("CB_EXPERIMENT", agent())


def redis_url() -> str:
    return os.environ.get("CB_REDIS_URL", "redis://127.0.0.1:6379")


def launcher() -> str:
    return os.environ.get("CB_LAUNCHER", "forkserver")


def agent_config() -> str | None:
    return os.environ.get("CB_AGENT_CONFIG") or None


DUCKDB_SCHEMA = "main"  # DuckDB's default, so `select * from run_results` just works


def retry_delay_seconds() -> float:
    """First backoff delay between infrastructure retries (then doubling, with jitter)."""
    return float(os.environ.get("CB_RETRY_DELAY_SECONDS", "10"))


def failure_patterns_file() -> str | None:
    """A JSON list of extra failure patterns, checked before the built-in ones."""
    return os.environ.get("CB_FAILURE_PATTERNS") or None


def sensor_interval_seconds() -> int:
    """How often `new_results` looks for result files written outside Dagster."""
    return int(os.environ.get("CB_SENSOR_INTERVAL_SECONDS", "30"))


def report_refresh_seconds() -> int:
    """The least time between two automatic refreshes of the manifest and the report."""
    return int(os.environ.get("CB_REPORT_REFRESH_SECONDS", "120"))
