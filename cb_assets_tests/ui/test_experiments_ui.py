"""Experiments apart in the UI, as a researcher sees them in a real browser: the run tags on
the Runs page, one row of the partition grid per arm, and the comparison figure rendered."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cb_assets.config import PROJECT_ROOT
from cb_assets_tests.support.cli import run_cli
from cb_assets_tests.support.platform import platform_env
from cb_assets_tests.support.services import free_port, require
from cb_assets_tests.support.synthetic import make_subset_dataset
from cb_assets_tests.support.webserver import graphql, webserver

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
REAL_LOGS = PROJECT_ROOT.parent / "shared" / "real-logs"


class Browser:
    """Headless Chromium driven over the DevTools protocol: open a page, read its text,
    click, take a screenshot."""

    def __init__(self, profile: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--remote-debugging-port={self.port}", f"--user-data-dir={profile}",
                "--window-size=1600,1200", "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                listing = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list")
                pages = [p for p in json.load(listing) if p["type"] == "page"]
                if pages:
                    self.ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("chromium's DevTools endpoint did not answer")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def run(self, steps):
        return asyncio.run(self._run(steps))

    async def _run(self, steps):
        import websockets

        async with websockets.connect(self.ws_url, max_size=100_000_000) as ws:
            counter = iter(range(1, 1_000_000))

            async def call(method: str, **params):
                n = next(counter)
                await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("id") == n:
                        return message.get("result", {})

            async def js(expression: str):
                result = await call(
                    "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
                )
                return result.get("result", {}).get("value")

            return await steps(call, js)


async def _until(js, expression: str, timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await js(expression)
        if value:
            return value
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the page never satisfied {expression}")


def test_the_ui_shows_experiments_apart(
    tmp_path: Path, lite_dataset: Path, redis_url: str, fork_socket: Path
) -> None:
    require(shutil.which("chromium") is not None, "chromium is not installed")
    require(REAL_LOGS.is_dir(), f"no real upstream logs at {REAL_LOGS}")
    dataset = make_subset_dataset(lite_dataset, tmp_path / "dataset", n_pairs=2)
    registry = tmp_path / "experiments.yaml"
    shutil.copy(PROJECT_ROOT / "experiments.yaml", registry)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(platform_env(tmp_path, dataset, redis_url))
    for retired in ("CB_AGENT", "CB_MODEL", "CB_EXPERIMENT"):
        env.pop(retired, None)
    env.update(CB_EXPERIMENTS=str(registry), CB_FORKSERVER_SOCKET=str(fork_socket))
    for args in (
        ["materialize", "--experiment", "oracle", "--images", "no"],
        ["materialize", "--experiment", "noop", "--settings", "solo", "--images", "no"],
        [
            "import",
            str(REAL_LOGS / "smoke_ca_1"),
            "--experiment",
            "smoke",
            "--setting",
            "coop-comm",
        ],
    ):
        proc = run_cli(args, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    browser = Browser(tmp_path / "chromium")
    ui_env = {**env, "DAGSTER_HOME": str(tmp_path / "data" / "dagster-home")}
    try:
        with webserver(ui_env, tmp_path / "webserver.log", 180) as base:
            graphql(base, "mutation { setNuxSeen }")  # the first-visit community dialog

            async def look(call, js):
                await call("Page.enable")
                seen = {}
                await call("Page.navigate", url=f"{base}/runs")
                seen["runs"] = await _until(
                    js, "document.body.innerText.includes('experiment: noop') && "
                    "document.body.innerText.includes('experiment: oracle') && "
                    "document.body.innerText"
                )  # fmt: skip
                await call("Page.navigate", url=f"{base}/assets/run_results?view=partitions")
                seen["grid"] = await _until(
                    js, "document.body.innerText.includes('noop/coop-nocomm') && "
                    "document.body.innerText"
                )  # fmt: skip
                shot = await call("Page.captureScreenshot", format="png")
                seen["grid_png"] = shot["data"]
                await call("Page.navigate", url=f"{base}/assets/experiment_comparison")
                await _until(js, "document.body.innerText.includes('figure_file')")
                # the figure is markdown metadata behind a button: open it as a person would
                clicked = await js(
                    "(() => { const rows = [...document.querySelectorAll('tr')]"
                    ".filter(r => r.innerText.trim().startsWith('figure\\n') || "
                    "r.innerText.trim().startsWith('figure\\t'));"
                    "const button = rows.length && [...rows[0].querySelectorAll('*')]"
                    ".filter(e => e.innerText === '[Show Markdown]').pop();"
                    "if (button) { button.click(); return true; } return false; })()"
                )
                assert clicked, "no [Show Markdown] for the comparison figure"
                seen["figure_px"] = await _until(
                    js, "(() => { const i = [...document.querySelectorAll('img')]"
                    ".find(i => i.src.startsWith('data:image/png') && i.naturalWidth > 0);"
                    "return i ? i.naturalWidth : 0; })()"
                )  # fmt: skip
                shot = await call("Page.captureScreenshot", format="png")
                seen["figure_png"] = shot["data"]
                return seen

            seen = browser.run(look)
    finally:
        browser.close()
    assert "agent: noop" in seen["runs"] and "model: oracle" in seen["runs"]
    # every arm of the registry is a row; noop ran solo only, its other rows stay missing
    for arm in ("oracle/solo", "oracle/coop-comm", "noop/solo", "noop/coop-nocomm"):
        assert arm in seen["grid"], f"{arm} is not a row of the partition grid"
    assert "smoke/coop-comm" in seen["grid"]  # the imported arm
    assert seen["figure_px"] > 100  # the comparison figure rendered, not a broken image
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "experiments-partition-grid.png").write_bytes(base64.b64decode(seen["grid_png"]))
    (ARTIFACTS / "experiments-comparison.png").write_bytes(base64.b64decode(seen["figure_png"]))


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
