"""The scale-out profile's code image, built on this machine: no outside base image is
reachable, so nothing here names one.

Two layers, built differently because they change at different rates:

- the environment (`cb-assets-env:<key>`): the cached Debian rootfs (`rootfs.py`, imported by
  `images.import_base`), this machine's interpreter copied to its own path
  (`sys.base_prefix`), and the locked environment: `uv sync --frozen --no-dev --offline` run
  in a container with no network, with the host's uv binary and uv cache mounted, then
  committed. Its key is uv.lock, the interpreter and the rootfs; it is saved as a tar under
  the cache folder, so another engine (every test session starts a fresh one) loads it
  instead of building it again;
- the code (`cb-assets:<key>`): deploy/docker/Dockerfile on that environment with the
  project's files, at the project's own path, so the run origins the daemon sends
  (working directory, executable path) hold inside the container. Cheap: built per engine,
  keyed by the files it copies.
"""

import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from cb_assets.bottle import images, rootfs
from cb_assets.bottle.images import ImageBuildError

ENV_REPOSITORY = "cb-assets-env"
CODE_REPOSITORY = "cb-assets"
FORMAT = 3  # bump when what goes into the environment layer changes
# what the code layer copies (deploy/docker/Dockerfile's COPY lines)
CODE_FILES = (
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "workspace.yaml",
    "experiments.yaml",
    "deploy/docker/dagster.yaml",
    "deploy/docker/Dockerfile",
)
CODE_TREES = ("cb_assets",)
# never used at run time, and every run container copies the whole image (vfs storage)
TRIMMED = ("lib/python3.12/test", "lib/python3.12/idlelib", "lib/python3.12/tkinter")


@dataclass(frozen=True)
class CodeImage:
    name: str  # what CB_CODE_IMAGE names
    env: str  # the environment layer it is built on
    size_bytes: int
    env_seconds: float  # 0 when the environment came from the engine or the cache
    env_source: str  # "engine", "cache" or "built"
    code_seconds: float


def _uv_binary() -> Path:
    """The real uv executable (not a pyenv shim script, which the base could not run)."""
    found = shutil.which("uv")
    if found is None:
        raise ImageBuildError("uv is not installed (python3 -m pip install uv)")
    resolved = Path(found).resolve()
    if resolved.read_bytes()[:4] != b"\x7fELF":  # a shim: ask it where the binary is
        done = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True)
        resolved = Path(done.stdout.strip()).resolve()
    return resolved


def _uv_cache() -> Path:
    done = subprocess.run([str(_uv_binary()), "cache", "dir"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(f"uv cache dir: {done.stderr.strip()}")
    return Path(done.stdout.strip())


def env_key(project: Path, base: str, interpreter: Path) -> str:
    lock = (project / "uv.lock").read_bytes()
    text = f"{FORMAT}|{base}|{interpreter}|{sys.version}|".encode() + lock
    return hashlib.sha256(text).hexdigest()[:12]


def code_key(project: Path, env: str) -> str:
    digest = hashlib.sha256(env.encode())
    for path in _code_paths(project):
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _code_paths(project: Path) -> list[Path]:
    paths = [project / name for name in CODE_FILES]
    for tree in CODE_TREES:
        paths += sorted(
            p for p in (project / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    return paths


def _exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_env_image(
    client: docker.DockerClient, cache_dir: Path, project: Path, log_dir: Path
) -> tuple[str, str, float]:
    """(image name, where it came from, build seconds): from the engine, else the cached
    tar, else built (and the tar written, under a lock, so two sessions build it once)."""
    interpreter = Path(sys.base_prefix)
    base = images.import_base(client, rootfs.ensure_rootfs(cache_dir))
    key = env_key(project, base, interpreter)
    name = f"{ENV_REPOSITORY}:{key}"
    if _exists(client, name):
        return name, "engine", 0.0
    tar = cache_dir / f"{ENV_REPOSITORY}-{key}.tar"
    with (cache_dir / f".{ENV_REPOSITORY}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar.is_file():
            with tar.open("rb") as data:
                client.images.load(data)
            return name, "cache", 0.0
        started = time.monotonic()
        _build_env(client, base, name, project, interpreter, log_dir)
        partial = tar.with_suffix(".tar.partial")
        with partial.open("wb") as out:
            for chunk in client.images.get(name).save(named=True):
                out.write(chunk)
        partial.replace(tar)
        for old in cache_dir.glob(f"{ENV_REPOSITORY}-*.tar"):
            if old != tar:  # an older uv.lock's environment: never loaded again
                old.unlink(missing_ok=True)
        return name, "built", time.monotonic() - started


def _build_env(
    client: docker.DockerClient,
    base: str,
    name: str,
    project: Path,
    interpreter: Path,
    log_dir: Path,
) -> None:
    stage = Path(tempfile.mkdtemp(prefix="cb-env-"))
    try:
        for file in ("pyproject.toml", "uv.lock", "README.md"):
            shutil.copy2(project / file, stage / file)
        python = interpreter / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        trim = " ".join(str(interpreter / t) for t in TRIMMED)
        script = (
            "set -e\n"
            f"mkdir -p {interpreter.parent} {project}\n"
            f"cp -a /mnt/interpreter {interpreter}\n"
            f"rm -rf {trim} {interpreter}/bin/uv {interpreter}/bin/uvx\n"
            f"cp /mnt/project/* {project}/\n"
            f"cd {project}\n"
            # offline: every wheel comes from the host's cache, which `uv sync` filled
            f"UV_PYTHON={python} /mnt/uv sync --frozen --no-dev --no-install-project "
            "--offline --compile-bytecode --no-python-downloads\n"
        )
        container = client.containers.create(
            base,
            ["sh", "-c", script],
            network_mode="none",
            environment={"UV_CACHE_DIR": "/mnt/uv-cache", "UV_LINK_MODE": "copy"},
            # mounts, not `volumes=`: docker-py also lists volumes in the container's config,
            # which `commit` would carry into the image and every run container would
            # then mount anonymous volumes there
            mounts=[
                docker.types.Mount("/mnt/interpreter", str(interpreter), "bind", read_only=True),
                docker.types.Mount("/mnt/uv", str(_uv_binary()), "bind", read_only=True),
                docker.types.Mount("/mnt/uv-cache", str(_uv_cache()), "bind"),
                docker.types.Mount("/mnt/project", str(stage), "bind", read_only=True),
            ],
        )
        try:
            container.start()
            status = container.wait(timeout=1800)
            output = container.logs().decode(errors="replace")
            (log_dir / "code-image-env.log").write_text(output)
            if status.get("StatusCode") != 0:
                raise ImageBuildError(f"building {name}: exited {status}:\n{output[-2000:]}")
            repository, _, tag = name.partition(":")
            container.commit(
                repository,
                tag,
                changes=[
                    f"ENV PATH={project}/.venv/bin:/usr/local/sbin:/usr/local/bin:"
                    "/usr/sbin:/usr/bin:/sbin:/bin",
                    f"ENV PYTHONPATH={project}",  # the project is not installed: its code is
                    "ENV LITELLM_LOCAL_MODEL_COST_MAP=True",  # no network for the price map
                    f"WORKDIR {project}",
                ],
            )
        finally:
            container.remove(force=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def build_code_image(client: docker.DockerClient, env: str, project: Path) -> str:
    """deploy/docker/Dockerfile on `env`, with the project's files; reused when the engine
    has it already."""
    name = f"{CODE_REPOSITORY}:{code_key(project, env)}"
    if _exists(client, name):
        return name
    stage = Path(tempfile.mkdtemp(prefix="cb-code-"))
    try:
        for path in _code_paths(project):
            target = stage / path.relative_to(project)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)  # keeps the mtime the .pyc files are checked against
        # compiled here by the same interpreter the image runs: every run container starts
        # from a fresh copy of the image, and would otherwise compile the code each time
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *CODE_TREES], cwd=stage, check=True
        )
        images.build_offline(
            client, stage, name, {"ENV_IMAGE": env}, dockerfile="deploy/docker/Dockerfile"
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return name


def ensure_code_image(
    client: docker.DockerClient, cache_dir: Path, project: Path, log_dir: Path
) -> CodeImage:
    """The code image for `project` on `client`'s engine, built or reused as above."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    env, source, env_seconds = ensure_env_image(client, cache_dir, project, log_dir)
    code_started = time.monotonic()
    name = build_code_image(client, env, project)
    size = client.images.get(name).attrs.get("Size", 0)
    return CodeImage(name, env, size, env_seconds, source, time.monotonic() - code_started)


def _main() -> None:  # `python -m cb_assets.bottle.code_image DOCKER_HOST`: build and say
    from cb_assets.config import PROJECT_ROOT, bottle_cache_dir

    if len(sys.argv) != 2 or not re.match(r"^(unix|tcp)://", sys.argv[1]):
        sys.exit("usage: python -m cb_assets.bottle.code_image unix:///path/docker.sock")
    client = docker.DockerClient(base_url=sys.argv[1], timeout=1800)
    image = ensure_code_image(client, bottle_cache_dir(), PROJECT_ROOT, Path.cwd())
    print(
        f"{image.name} on {image.env} ({image.env_source}, {image.env_seconds:.0f}s), "
        f"code layer {image.code_seconds:.1f}s, {image.size_bytes / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    _main()
