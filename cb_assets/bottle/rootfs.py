"""The task image's base: a Debian root filesystem built by `debootstrap` from the machine's
own Debian mirror (no image registry is reachable), cached outside the project so a machine
builds it once.

The cache is a tar file named by everything that decides its content (suite, packages, the
format version), written to a temporary name and renamed, under a lock: two self-checks at
once build it once, and a killed build leaves no half file behind.
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGES = ("bash", "coreutils", "git", "patch", "python3", "python3-pytest")
FORMAT = 1  # bump when what goes into the tar changes
TRIMMED = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class RootfsError(RuntimeError):
    """The root filesystem could not be built; the message says why and where the log is."""


def machine_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """This machine's Debian suite (`bookworm`), which its mirror is known to serve."""
    try:
        text = os_release.read_text()
    except OSError:
        return "bookworm"
    found = re.search(r"^VERSION_CODENAME=(\w+)", text, re.MULTILINE)
    return found.group(1) if found else "bookworm"


def machine_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The first Debian archive the machine's apt is configured with (not its security one)."""
    try:
        text = sources.read_text()
    except OSError:
        return DEFAULT_MIRROR
    for uri in re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE):
        if "security" not in uri:
            return uri
    return DEFAULT_MIRROR


def cache_name(suite: str) -> str:
    digest = hashlib.sha256(f"{FORMAT}|{suite}|{','.join(PACKAGES)}".encode()).hexdigest()
    return f"bottle-rootfs-{suite}-{digest[:12]}.tar"


def ensure_rootfs(cache_dir: Path, *, mirror: str | None = None, suite: str | None = None) -> Path:
    """The cached root filesystem tar, built first if the cache lacks it."""
    suite = suite or machine_suite()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / cache_name(suite)
    if target.is_file():
        return target
    with (cache_dir / ".rootfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the file
        if not target.is_file():
            _build(target, mirror or machine_mirror(), suite)
    return target


def _build(target: Path, mirror: str, suite: str) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise RootfsError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise RootfsError("building the bottle's root filesystem with debootstrap needs root")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=target.parent))
    log = target.parent / f"{target.stem}.log"
    try:
        with log.open("wb") as out:
            done = subprocess.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    suite,
                    str(work / "root"),
                    mirror,
                ],  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-1500:]
            raise RootfsError(
                f"debootstrap {suite} from {mirror} exited with {done.returncode}; {log}:\n{tail}"
            )
        root = work / "root"
        for folder in TRIMMED:
            shutil.rmtree(root / folder, ignore_errors=True)
        for cached in (root / "var/cache/apt").rglob("*"):
            if cached.is_file():
                cached.unlink()
        partial = work / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True
        )
        partial.replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
