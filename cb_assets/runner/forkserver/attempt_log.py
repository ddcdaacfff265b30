"""Opening a child's log file on the server, confined to the logs root it serves.

A request names its log file by path; the server opens it below its logs root one component
at a time, never through a symlink, so a run writes only under <logs root>/_attempts/ (the
request's checks in protocol.py placed it there by name).
"""

import contextlib
import errno
import os
import stat

from cb_assets.runner.forkserver.protocol import Refused


def open_attempt_log(root: str, log_path: str) -> int:
    """The child's log file, created or truncated, opened below the logs root one
    component at a time without following a symlink (nor opening a FIFO, a device or
    a file with other links): a run writes only under <logs root>/_attempts/."""
    parts = os.path.relpath(os.path.abspath(log_path), root).split(os.sep)
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                fd = os.open(
                    part,
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=dir_fd,
                )
            except OSError as exc:
                why = _why_not(exc, part, dir_fd)
                raise Refused(f"cannot open {part!r} in log_path {log_path}: {why}") from None
            os.close(dir_fd)
            dir_fd = fd
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            # 0600: providers echo keys into error messages, and the log keeps them verbatim
            fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            why = _why_not(exc, parts[-1], dir_fd)
            raise Refused(f"cannot open log_path {log_path}: {why}") from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise Refused(f"log_path {log_path} is not a regular file with a single link")
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _why_not(exc: OSError, name: str, dir_fd: int) -> str:
    """Why opening `name` in `dir_fd` with O_NOFOLLOW failed (ELOOP or ENOTDIR: a symlink)."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return "it is a symbolic link"
    return exc.strerror or str(exc)
