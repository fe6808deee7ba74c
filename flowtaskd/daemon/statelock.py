"""One daemon per state dir: an exclusive ``flock`` on ``<state_dir>/flowtaskd.lock``.

The lock file holds the owner's pid so a second daemon can say who is in the way. The
kernel drops the lock when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from flowtaskd.errors import DaemonError

__all__ = ["StateLock"]


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DaemonError` naming the daemon that holds it."""
        state = self.state_dir
        try:
            state.mkdir(mode=0o750, parents=True, exist_ok=True)
            if state.stat().st_uid == os.geteuid():  # run data is not for every user
                os.chmod(state, state.stat().st_mode & 0o750)
            fd = os.open(state / "flowtaskd.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DaemonError(f"cannot use state dir {state}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonError(
                f"another flowtaskd (pid {other}) is running with state dir {state}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
