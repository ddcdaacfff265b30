"""A model on loopback that speaks OpenAI's chat-completions API, so upstream's agent
frameworks run unmodified through litellm: answers come from the scripted policy
(`policy.py`), with token counts, and every answer is written to a ledger (tokens and the
cost at the declared prices) that the self-check holds the platform's figures against.

Faults happen where they really do: the server answers 429 with Retry-After, 500/502/503,
resets the connection, answers slower than the client waits, or sends malformed JSON; on the
engine side it kills the agent's container or lowers its memory limit so the next command is
OOM-killed. Which conversation gets which fault, on which attempts, is a schedule
(`FaultSchedule`) the self-check draws with a seed.
"""

import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cb_assets.bottle import policy

PRICE_PER_INPUT_TOKEN = 2e-06  # declared to litellm (see `litellm_registry`)
PRICE_PER_OUTPUT_TOKEN = 8e-06
HTTP_FAULTS = ("429", "500", "502", "503", "reset", "slow", "malformed")
ENGINE_FAULTS = ("kill", "oom")
FAULTS = HTTP_FAULTS + ENGINE_FAULTS
SLOW_SECONDS = 8.0  # longer than the client timeout the bottle's agent config sets
OOM_COMMAND = "python3 -c 'b = bytearray(512 << 20); print(len(b))'"


def tokens(text: str) -> int:
    """A deterministic token count: about four characters each, at least one."""
    return max(1, len(text) // 4)


def litellm_registry(models: list[str]) -> dict[str, Any]:
    """What litellm needs to price the bottle's models (LITELLM_MODEL_REGISTRY_PATH)."""
    entry = {
        "input_cost_per_token": PRICE_PER_INPUT_TOKEN,
        "output_cost_per_token": PRICE_PER_OUTPUT_TOKEN,
        "litellm_provider": "openai",
        "mode": "chat",
        "max_tokens": 8192,
        "max_input_tokens": 128000,
        "max_output_tokens": 8192,
        "supports_function_calling": True,
    }
    return {name: dict(entry) for model in models for name in (model, f"openai/{model}")}


@dataclass(frozen=True)
class Fault:
    kind: str
    attempts: int  # the first `attempts` attempts of the conversation are hit


@dataclass
class FaultSchedule:
    """Faults by conversation: `<model>|<policy key>` → fault."""

    faults: dict[str, Fault] = field(default_factory=dict)

    def fault_for(self, model: str, key: str, attempt: int) -> str | None:
        fault = self.faults.get(f"{model}|{key}")
        return fault.kind if fault is not None and attempt <= fault.attempts else None


class ModelServer:
    """The server, started on a free loopback port in a thread."""

    def __init__(
        self,
        dataset_dir: Path,
        ledger: Path,
        *,
        schedule: FaultSchedule | None = None,
        docker_host: str | None = None,
    ) -> None:
        self.features = policy.load_features(dataset_dir)
        self.ledger = ledger
        self.schedule = schedule or FaultSchedule()
        self.docker_host = docker_host
        self.starts: Counter[str] = Counter()
        self.faults_served: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "ModelServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """The fault to serve (or None) and the completion, for one request."""
        model = str(request.get("model", ""))
        messages = request.get("messages") or []
        brief, turn, action = policy.next_action(messages, self.features)
        with self._lock:
            if turn == 0:
                self.starts[f"{model}|{brief.key}"] += 1
            attempt = self.starts[f"{model}|{brief.key}"]
        fault = self.schedule.fault_for(model, brief.key, attempt)
        if fault in ENGINE_FAULTS and turn != 1:
            fault = None  # after the first command, which told the container's id
        if fault is not None:
            self._record_fault(model, brief.key, attempt, turn, fault)
        if fault == "kill":
            self._engine("kill", policy.container_of(messages))
        if fault == "oom":
            self._engine("update", policy.container_of(messages))
            action = policy.Action("Let me check the memory available.", OOM_COMMAND)
        completion = self._completion(model, messages, action)
        if fault in ENGINE_FAULTS or fault is None:
            self._record_ledger(model, brief.key, attempt, turn, completion)
        return (fault if fault in HTTP_FAULTS else None), completion

    def _completion(self, model: str, messages: list[dict], action: policy.Action) -> dict:
        arguments = json.dumps({"command": action.command})
        prompt = tokens(json.dumps(messages))
        output = tokens(action.thought + arguments)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": action.thought,
                        "tool_calls": [
                            {
                                "id": f"call_{uuid.uuid4().hex[:12]}",
                                "type": "function",
                                "function": {"name": "bash", "arguments": arguments},
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            },
        }

    def _record_ledger(self, model: str, key: str, attempt: int, turn: int, c: dict) -> None:
        usage = c["usage"]
        cost = (
            usage["prompt_tokens"] * PRICE_PER_INPUT_TOKEN
            + usage["completion_tokens"] * PRICE_PER_OUTPUT_TOKEN
        )
        row = {"model": model, "key": key, "attempt": attempt, "turn": turn, **usage}
        row["cost"] = cost
        with self._lock, self.ledger.open("a") as out:
            out.write(json.dumps(row) + "\n")

    def _record_fault(self, model: str, key: str, attempt: int, turn: int, kind: str) -> None:
        with self._lock:
            self.faults_served.append(
                {"model": model, "key": key, "attempt": attempt, "turn": turn, "fault": kind}
            )

    def _engine(self, verb: str, container: str | None) -> None:
        import docker

        if container is None or self.docker_host is None:
            return
        client = docker.DockerClient(base_url=self.docker_host, timeout=30)
        try:
            target = client.containers.get(container)
            if verb == "kill":
                target.kill()
            else:  # a limit the next command's allocation exceeds: the kernel OOM-kills it
                target.update(mem_limit="48m", memswap_limit="48m")
        except docker.errors.DockerException:
            pass
        finally:
            client.close()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib's name
            self._send(200, {"object": "list", "data": []})

        def do_POST(self) -> None:  # noqa: N802 - stdlib's name
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
                fault, completion = server.answer(request)
            except (ValueError, KeyError) as exc:
                self._send(400, {"error": {"message": str(exc), "type": "invalid_request"}})
                return
            if fault is None:
                self._send(200, completion)
            elif fault == "429":
                self._send(
                    429,
                    {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
                    {"Retry-After": "1"},
                )
            elif fault in ("500", "502", "503"):
                self._send(int(fault), {"error": {"message": f"upstream {fault}"}})
            elif fault == "reset":
                # SO_LINGER 0: close() sends RST, what a dropped connection looks like
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                self.close_connection = True
            elif fault == "slow":
                time.sleep(SLOW_SECONDS)
                self._send(200, completion)
            elif fault == "malformed":
                self._send_raw(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"rol')

        def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
            self._send_raw(status, json.dumps(body).encode(), headers)

        def _send_raw(self, status: int, data: bytes, headers: dict | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the client gave up (a slow answer)

    return Handler
