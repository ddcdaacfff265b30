"""A real dagster-webserver on the project's workspace, and its GraphQL API."""

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.services import free_port, wait_for_http


@contextmanager
def webserver(env: dict, log: Path, timeout: float = 180) -> Iterator[str]:
    """Serve the UI for the instance `env` names (DAGSTER_HOME); yields its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            *("-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/server_info", server, log, timeout)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    """The whole response ({"data": …} or {"errors": …}) of one GraphQL request."""
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
