"""The user's private directory for fork server sockets, and who is at the other end.

A fork server receives each run's environment, API keys included, so its socket, start lock
and log live in a directory only this user can use, are never opened through a symlink, and
both ends check the other's uid before trusting it.
"""

import contextlib
import errno
import os
import socket
import stat
import struct
from pathlib import Path

from cb_assets import config
from cb_assets.runner.outcome import LaunchError

_UCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


def private_dir() -> Path:
    """This user's directory for fork server sockets: `$XDG_RUNTIME_DIR/cb-assets` when that
    runtime directory is ours, else `/tmp/cb-assets-<uid>`."""
    runtime = config.runtime_dir()
    if runtime is not None:
        with contextlib.suppress(OSError):
            st = os.lstat(runtime)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                return Path(runtime) / "cb-assets"
    return Path("/tmp") / f"cb-assets-{os.geteuid()}"


def check_private_dir(path: Path) -> None:
    """Raise LaunchError unless `path` is a real directory (not a symlink) of ours, mode 0700:
    anyone else able to write there could bind our socket first and receive our API keys.
    FileNotFoundError if it does not exist."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != os.geteuid():
        problem = f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    elif st.st_mode & 0o777 != 0o700:
        problem = f"has mode {st.st_mode & 0o777:#o}, not 0o700"
    else:
        return
    raise LaunchError(
        f"fork server directory {path} {problem}; it must be a directory of this user that "
        "only this user can use (mode 0700): fix or remove it, or set CB_FORKSERVER_SOCKET"
    )


def ensure_private_dir(path: Path) -> None:
    """Create `path` (mode 0700) if it is missing, then check it (see check_private_dir)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # whatever the umask
    check_private_dir(path)


def open_nofollow(path: Path, flags: int) -> int:
    """Open (creating) a file of ours, never through a symlink."""
    try:
        return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise LaunchError(f"cannot open the fork server's {path}: {why}") from None


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid
