# Sourced by the project's scripts: run from the project root, with uv available.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The Dagster instance, as cb_assets.config.dagster_home decides: DAGSTER_HOME if set, else
# the project root; with CB_DATA_DIR set, <CB_DATA_DIR>/dagster-home (see use_instance).
if [ -z "${DAGSTER_HOME:-}" ] && [ -z "${CB_DATA_DIR:-}" ]; then export DAGSTER_HOME="$PWD"; fi

uv() {
  if command uv --version >/dev/null 2>&1; then command uv "$@"; else python3 -m uv "$@"; fi
}

apt_install() {  # apt_install <command> <debian package>...
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "error: $cmd is missing: install the Debian package(s) $*" >&2
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

bootstrap() {
  apt_install redis-server redis-server
  if ! uv --version >/dev/null 2>&1; then python3 -m pip install --quiet uv; fi
  uv sync --frozen --quiet
  use_instance
}

use_instance() {  # with CB_DATA_DIR and no DAGSTER_HOME: the instance under CB_DATA_DIR
  if [ -z "${DAGSTER_HOME:-}" ]; then
    DAGSTER_HOME="$(uv run --frozen python -m cb_assets.config dagster-home)"
    export DAGSTER_HOME
  fi
}
