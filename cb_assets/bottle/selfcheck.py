"""`cb-assets selfcheck`: a real experiment in a bottle, then what its data says.

Brings up Redis, a Docker engine with no route out, a registry, the bottle's task image
(built from a cached Debian root filesystem) and the scripted model server; runs upstream's
own `mini_swe_agent_v2` through the platform (`cb-assets materialize`, a child process of
the same code location) in solo, coop-comm and coop-nocomm, evaluates with the real
`cooperbench eval`, and checks the outcome against what the model server served:

- `bottle`: every setting, transient faults (429, 500, 502, 503, reset, slow, malformed)
  on a seeded schedule; everything recovers on attempt 2 or 3. Report: images, retries,
  evaluations VERIFIED.
- `bottle_faults` (solo): a persistent 503 (`infra_error` after 3 attempts) and a command
  OOM-killed inside the sandbox (its memory limit lowered on the engine mid-run).
- `bottle_steps` (solo): a step limit of 2, so every pair-run ends `LimitsExceeded` and is
  never retried.

Everything it writes is under `<data>/selfcheck/` (its own Dagster instance and DuckDB file),
replaced on each run.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cb_assets.bottle import images, rootfs, services
from cb_assets.bottle.model_server import (
    HTTP_FAULTS,
    Fault,
    FaultSchedule,
    ModelServer,
    litellm_registry,
)
from cb_assets.bottle.policy import conversation_key
from cb_assets.shared.dataset import load_pairs

BOTTLE_DATASET = Path(__file__).parent / "dataset"
SUBSET = "bottle"
SETTINGS = ("solo", "coop-comm", "coop-nocomm")
CLIENT_TIMEOUT_SECONDS = 4  # the slow fault answers after model_server.SLOW_SECONDS
TRANSIENT = tuple((kind, 2 if kind == "500" else 1) for kind in HTTP_FAULTS)


@dataclass(frozen=True)
class Plan:
    """Which conversation gets which fault, and what the platform must make of it."""

    schedule: FaultSchedule
    expected_attempts: dict[str, int]  # `<experiment>|<setting>|<features dir>` → attempts
    expected_final: dict[str, str]  # same key → the final classification


def conversation_keys(pairs: list[tuple[int, int]]) -> list[tuple[str, str, tuple[int, int]]]:
    """(setting, policy key, pair) of one conversation per pair-run: the solo agent, or
    agent2 of a coop pair. agent2's feature is the pair's second, unique to the pair in the
    bottle's subset, where agent1's first feature recurs (1 in f1_f2 and f1_f3); the server
    sees only what an agent was asked, so only a unique ask names one pair-run."""
    return [
        (setting, conversation_key(setting, asked, agent), (a, b))
        for setting in SETTINGS
        for a, b in pairs
        for agent, asked in ([("solo", [a, b])] if setting == "solo" else [("agent2", [b])])
    ]


def draw_plan(pairs: list[tuple[int, int]], seed: int) -> Plan:
    """Transient faults on `bottle`, persistent and engine faults on `bottle_faults`."""
    faults: dict[str, Fault] = {}
    attempts: dict[str, int] = {}
    final: dict[str, str] = {}
    slots = conversation_keys(pairs)
    random.Random(seed).shuffle(slots)
    for (kind, times), (setting, key, (a, b)) in zip(TRANSIENT, slots, strict=False):
        faults[f"bottle|{key}"] = Fault(kind, times)
        attempts[f"bottle|{setting}|f{a}_f{b}"] = times + 1
    solo = [k for k in conversation_keys(pairs) if k[0] == "solo"]
    # a persistent 503 gives up after 3 attempts; a command OOM-killed inside the sandbox is
    # something the agent sees and works past (upstream writes Submitted), not a failure
    for (kind, times, tries, outcome), (setting, key, (a, b)) in zip(
        (("503", 3, 3, "infra_error"), ("oom", 1, 1, "submitted")), solo, strict=False
    ):
        faults[f"bottle-faults|{key}"] = Fault(kind, times)
        attempts[f"bottle_faults|{setting}|f{a}_f{b}"] = tries
        final[f"bottle_faults|{setting}|f{a}_f{b}"] = outcome
    return Plan(FaultSchedule(faults), attempts, final)


def _registry_yaml(configs: Path) -> str:
    common = "    agent: mini_swe_agent_v2\n    cost_band: [0.0001, 1.0]\n"
    return (
        "# Written by `cb-assets selfcheck`: upstream's mini_swe_agent_v2 against the bottle's\n"
        "# scripted model server on loopback.\nexperiments:\n"
        f"  - name: bottle\n{common}    model: openai/bottle\n"
        f"    settings: [{', '.join(SETTINGS)}]\n"
        f"    agent_config: {configs / 'bottle.yaml'}\n"
        "    description: the real agent framework, transient faults, real evaluation\n"
        f"  - name: bottle_faults\n{common}    model: openai/bottle-faults\n"
        f"    settings: [solo]\n    agent_config: {configs / 'bottle.yaml'}\n"
        "    description: a persistent 503 and an OOM-killed command\n"
        f"  - name: bottle_steps\n{common}    model: openai/bottle-steps\n"
        f"    settings: [solo]\n    agent_config: {configs / 'steps.yaml'}\n"
        "    description: a step limit of 2 (LimitsExceeded, never retried)\n"
    )


def _agent_config(server: ModelServer, registry: Path, step_limit: int | None) -> str:
    lines = [
        "# Written by `cb-assets selfcheck`. Merged by upstream into mini_swe_agent_v2's own.",
        "model:",
        "  cost_tracking: default",
        f"  litellm_model_registry: {registry}",
        "  model_kwargs:",
        f"    api_base: {server.url}",
        "    api_key: bottle-local-no-secret",
        f"    timeout: {CLIENT_TIMEOUT_SECONDS}",
        "    max_retries: 0",
    ]
    if step_limit is not None:
        lines += ["agent:", f"  step_limit: {step_limit}"]
    return "\n".join(lines) + "\n"


class Bottle:
    """The running services; `close` stops them all."""

    def __init__(self, root: Path, cache_dir: Path, say: Callable[[str], None]) -> None:
        self.root, self.cache_dir, self.say = root, cache_dir, say
        self.services: list[services.Service] = []
        self.server: ModelServer | None = None

    def __enter__(self) -> "Bottle":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        for service in reversed(self.services):
            service.stop()

    def up(self, seed: int) -> tuple[dict[str, str], Plan]:
        import docker

        logs = self.root / "services"
        logs.mkdir(parents=True)
        redis = services.start_redis(logs)
        self.services.append(redis)
        engine = services.start_engine(logs)
        self.services.append(engine)
        registry = services.start_registry(logs)
        self.services.append(registry)
        self.say(f"engine {engine.address}, registry {registry.address}, redis {redis.address}")
        started = time.monotonic()
        tar = rootfs.ensure_rootfs(self.cache_dir)
        self.say(f"root filesystem {tar} ({time.monotonic() - started:.0f}s)")
        client = docker.DockerClient(base_url=engine.address, timeout=600)
        base = images.import_base(client, tar)
        subset = load_pairs(BOTTLE_DATASET, SUBSET)
        for repo, task_id in sorted({(p.repo, p.task_id) for p in subset}):
            pushed = images.build_and_push(
                client, BOTTLE_DATASET, repo, task_id, base=base, registry=registry.address
            )
            self.say(f"task image {pushed} built on {base} and pushed")
        client.close()
        pairs = sorted({(p.feature_a, p.feature_b) for p in subset})
        plan = draw_plan(pairs, seed)
        self.server = ModelServer(
            BOTTLE_DATASET,
            self.root / "model-ledger.jsonl",
            schedule=plan.schedule,
            docker_host=engine.address,
        ).start()
        faults = len(plan.schedule.faults)
        self.say(f"model server {self.server.url} (seed {seed}, {faults} faulted conversations)")
        configs = self.root / "agent-configs"
        configs.mkdir()
        prices = configs / "litellm-models.json"
        prices.write_text(json.dumps(litellm_registry(["bottle", "bottle-faults", "bottle-steps"])))
        (configs / "bottle.yaml").write_text(_agent_config(self.server, prices, None))
        (configs / "steps.yaml").write_text(_agent_config(self.server, prices, 2))
        (self.root / "experiments.yaml").write_text(_registry_yaml(configs))
        env = {
            "CB_DATA_DIR": str(self.root / "data"),
            "CB_DATASET_DIR": str(BOTTLE_DATASET),
            "CB_SUBSET": SUBSET,
            "CB_EXPERIMENTS": str(self.root / "experiments.yaml"),
            "CB_DOCKER_HOST": engine.address,
            "DOCKER_HOST": engine.address,  # upstream's agents and eval use the docker CLI / SDK
            "CB_IMAGE_REGISTRY": registry.address,
            "CB_REDIS_URL": redis.address,
            "CB_RETRY_DELAY_SECONDS": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # one request per model call: a fault reaches the platform instead of being
            # absorbed by mini-swe-agent's own ten tries
            "MSWEA_MODEL_RETRY_STOP_AFTER_ATTEMPT": "1",
        }
        return env, plan


def _materialize(env: dict[str, str], experiment: str, *extra: str) -> int:
    child = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "CB_EXPERIMENT")}
    command = [sys.executable, "-m", "cb_assets.cli", "materialize", "--experiment", experiment]
    return subprocess.run([*command, "--concurrency", "3", *extra], env={**child, **env}).returncode


def run(data_dir: Path, cache_dir: Path, *, seed: int = 14) -> int:
    """The whole self-check; 0 when every promise it checks holds."""
    from cb_assets.bottle import verdicts

    root = data_dir / "selfcheck"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"selfcheck [{time.monotonic() - started:5.0f}s] {line}", flush=True)

    with Bottle(root, cache_dir, say) as bottle:
        env, plan = bottle.up(seed)
        _materialize(env, "bottle", "--images", "yes", "--evals")
        _materialize(env, "bottle_faults", "--images", "no")
        _materialize(env, "bottle_steps", "--images", "no")
        assert bottle.server is not None
        faults_served = list(bottle.server.faults_served)
    findings = verdicts.check(root, plan, faults_served)
    report = root / "data" / "experiments" / "bottle" / "verification-report.md"
    if report.is_file():
        print(report.read_text())
    for line in findings.lines:
        print(f"selfcheck: {line}")
    verdict = "PASSED" if findings.ok else "FAILED"
    say(f"{verdict}; everything it wrote is under {root}")
    return 0 if findings.ok else 1
