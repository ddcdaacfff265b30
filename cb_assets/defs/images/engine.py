"""Task images on a Docker engine: present, pulled when missing, and probed.

A probe runs a throw-away container (no network, removed afterwards) that checks
`/workspace`, where every CooperBench image keeps its repository. Engine and
registry trouble raises `EngineError` (an infrastructure failure, retried); an
image that runs but has no `/workspace` is a failed probe, recorded as such.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors

from cb_assets.shared.dataset import DEFAULT_IMAGE_NAMESPACE, image_name


class EngineError(RuntimeError):
    """The Docker engine or the registry failed; the message is the engine's."""


@dataclass(frozen=True)
class ImageRef:
    repo: str
    task_id: int
    namespace: str = DEFAULT_IMAGE_NAMESPACE
    registry: str = ""  # empty: Docker Hub

    @property
    def local_name(self) -> str:
        """The name upstream's runner looks for: `akhatua/cooperbench-<repo>:task<id>`."""
        return image_name(self.repo, self.task_id)

    @property
    def remote_name(self) -> str:
        name = image_name(self.repo, self.task_id, self.namespace)
        return f"{self.registry}/{name}" if self.registry else name


def connect(endpoint: str, timeout: int = 60) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=endpoint, timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise EngineError(f"Docker engine at {endpoint} is unreachable: {exc}") from None


def _describe(image: Any, ref: ImageRef, pulled: bool) -> dict[str, Any]:
    attrs = image.attrs
    digests = attrs.get("RepoDigests") or []
    return {
        "image": ref.local_name,
        "source": ref.remote_name,
        "image_id": image.id,
        "repo_digest": digests[0] if digests else None,
        "size_bytes": int(attrs.get("Size") or 0),
        "created": attrs.get("Created"),
        "pulled": pulled,
        "pulled_at": datetime.now(UTC).isoformat(timespec="seconds") if pulled else None,
        "present": True,
    }


def ensure_image(client: docker.DockerClient, ref: ImageRef) -> dict[str, Any]:
    """The image under upstream's name, pulled from `ref.remote_name` only when missing."""
    try:
        return _describe(client.images.get(ref.local_name), ref, pulled=False)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise EngineError(f"inspecting {ref.local_name}: {exc.explanation or exc}") from None
    try:
        image = client.images.pull(ref.remote_name)
        if ref.remote_name != ref.local_name:
            image.tag(ref.local_name)
        image.reload()
    except docker.errors.APIError as exc:
        raise EngineError(f"pulling {ref.remote_name}: {exc.explanation or exc}") from None
    return _describe(image, ref, pulled=True)


def probe_workspace(
    client: docker.DockerClient, image: str, timeout: int = 120
) -> tuple[bool, str]:
    """Run `test -d /workspace` in a throw-away container with no network."""
    container = None
    try:
        # upstream's images set ENTRYPOINT runner.sh, which would swallow a plain command
        container = client.containers.create(
            image,
            ["-d", "/workspace"],
            entrypoint=["test"],
            network_mode="none",
            network_disabled=True,
        )
        container.start()
        code = container.wait(timeout=timeout)["StatusCode"]
    except docker.errors.APIError as exc:
        raise EngineError(f"probing {image}: {exc.explanation or exc}") from None
    except Exception as exc:  # the wait timed out (requests' ReadTimeout and friends)
        raise EngineError(f"probing {image}: {exc!r}") from None
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
    if code == 0:
        return True, "/workspace present"
    return False, f"{image} has no /workspace (`test -d /workspace` exited with {code})"
