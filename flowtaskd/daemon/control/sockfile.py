"""The control socket's file: bind it safely, and remove it only if it is still ours.

A stale socket file (a crashed daemon) is replaced; a live one (another daemon answering
on it) or a non-socket at the path is an error naming it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

import structlog

from flowtaskd.errors import DaemonError

__all__ = ["bind_socket", "unlink_socket"]

_log = structlog.get_logger("flowtaskd.control")


def bind_socket(path: Path, mode: int) -> tuple[socket.socket, int]:
    """A socket bound at ``path`` with ``mode`` (not listening yet) and its inode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise DaemonError(
                    f"{path} exists and is not a socket: move it away or set control.socket"
                )
            if _answers(path):
                raise DaemonError(f"another process is serving the control socket {path}")
            os.unlink(path)
            _log.info("control_stale_socket_removed", socket=str(path))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            os.chmod(path, mode)
            inode = os.stat(path).st_ino
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise DaemonError(
            f"cannot create the control socket {path}: {exc.strerror or exc}"
        ) from None
    return sock, inode


def _answers(path: Path) -> bool:
    """Whether something listens on the socket file ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


def unlink_socket(path: Path, inode: int) -> None:
    """Remove the socket file if it is still ours (not a later daemon's)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
