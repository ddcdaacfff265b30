"""The bottle's task images: the cached Debian root filesystem imported as a base, each task
built from its own `Dockerfile` on it, and pushed to the local registry under upstream's
name, so `task_images` pulls, digests and probes them like any other.

Builds run with no network (`network_mode="none"`): the Dockerfile may only use what the
base and its build context hold.
"""

from pathlib import Path

import docker

from cb_assets.shared.dataset import image_name

BASE_REPOSITORY = "cb-bottle-base"


class ImageBuildError(RuntimeError):
    """A task image could not be built or pushed; the message is the engine's."""


def import_base(client: docker.DockerClient, rootfs_tar: Path) -> str:
    """The root filesystem as image `cb-bottle-base:<tar name>`, imported once per engine."""
    tag = rootfs_tar.stem.removeprefix("bottle-rootfs-")
    name = f"{BASE_REPOSITORY}:{tag}"
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    client.api.import_image_from_file(str(rootfs_tar), repository=BASE_REPOSITORY, tag=tag)
    return name


def build_offline(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    dockerfile: str | None = None,
) -> None:
    """Build `context` with no network (nothing may leave the machine); a failed build is an
    ImageBuildError naming the context with the tail of the build log."""
    try:
        client.images.build(
            path=str(context),
            dockerfile=dockerfile,
            buildargs=buildargs,
            tag=tag,
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        lines = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
        tail = lines[-2000:]
        raise ImageBuildError(f"building {tag} from {context}: {exc.msg}\n{tail}") from None


def build_and_push(
    client: docker.DockerClient,
    dataset_dir: Path,
    repo: str,
    task_id: int,
    *,
    base: str,
    registry: str,
) -> str:
    """Build `<dataset>/<repo>/task<id>` on `base` and push it as `<registry>/<upstream name>`;
    the local copies are removed, so the platform pulls what it runs. Returns the pushed name."""
    context = dataset_dir / repo / f"task{task_id}"
    remote = f"{registry}/{image_name(repo, task_id)}"
    repository, _, tag = remote.rpartition(":")
    try:
        build_offline(client, context, remote, {"BASE": base})
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"building {context}: {exc.explanation or exc}") from None
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise ImageBuildError(f"pushing {remote}: {line['error']}")
    client.images.remove(remote, force=True)
    return remote
