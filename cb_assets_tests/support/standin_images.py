"""Stand-in task images for machines that cannot reach Docker Hub.

Each is a tiny root filesystem — busybox and a `/workspace` folder — imported
under the real `cooperbench-<repo>:task<id>` name, so the platform's pulls and
probes run for real against a local registry.
"""

import io
import tarfile
from pathlib import Path

import docker

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: one static binary


def rootfs(with_workspace: bool = True, marker: str = "") -> bytes:
    if not BUSYBOX.is_file():
        raise FileNotFoundError(
            "stand-in images need a static busybox: apt-get install busybox-static"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for name in ("sh", "test", "ls", "cat"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        if with_workspace:
            folder = tarfile.TarInfo("workspace")
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
            note = f"stand-in task image {marker}\n".encode()
            info = tarfile.TarInfo("workspace/README")
            info.size = len(note)
            tar.addfile(info, io.BytesIO(note))
    return buffer.getvalue()


def push_standin(
    client: docker.DockerClient,
    registry: str,
    name: str,
    *,
    with_workspace: bool = True,
    marker: str = "",
) -> None:
    """Import a stand-in as `<registry>/<name>`, push it, and drop the local copies."""
    repository, _, tag = f"{registry}/{name}".rpartition(":")
    client.api.import_image_from_data(
        rootfs(with_workspace, marker or name), repository=repository, tag=tag
    )
    for line in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {repository}:{tag}: {line['error']}")
    client.images.remove(f"{repository}:{tag}", force=True)
