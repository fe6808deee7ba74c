"""Is a dropped file complete *now*? What inotify and a read lease together can prove.

A timer can only guess that a file is finished (nothing changed for a while). The kernel
knows more: inotify says how the file arrived, and a read lease says whether any process
still holds it open for writing. A regular file whose last event was ``IN_MOVED_TO`` (it
was renamed in) or ``IN_CLOSE_WRITE`` (its writer closed it), and on which a read lease is
granted at this moment (no writable descriptor exists anywhere), is complete: there is no
one left who could add to it. :func:`complete_now` asks the lease question, in one
``open``, ``fstat`` and two ``fcntl`` calls.

The answer is ``None`` whenever it cannot be proven: a writer still holds the file, the
lease cannot be taken (the daemon is neither the file's owner nor has ``CAP_LEASE``, or
the filesystem has no leases: NFS, FUSE), the path is not a regular file, or it vanished.
The caller then falls back to the quiet window (:func:`~flowtaskd.daemon.intake.watcher.
wait_stable`), so nothing here can make a half-written file look finished.

What no mechanism can see is a writer that will open the file again *later*: a script
doing ``echo a > f; echo b >> f`` in the inbox has closed ``f`` once before its second
write. Writers rename a finished file in (see :mod:`flowtaskd.daemon.intake.inbox`).
Blocking calls: run it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import os
import stat as stat_mod
from pathlib import Path

__all__ = ["COMPLETE_EVENTS", "complete_now"]

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
#: inotify event bits that end a file's writing: renamed in complete, or its writer closed it
COMPLETE_EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO

_SETLEASE = getattr(fcntl, "F_SETLEASE", None)


def complete_now(path: Path) -> os.stat_result | None:
    """The file's stat if it is a regular file that no process holds open for writing and
    a read lease proves it; else None (see the module docstring)."""
    if _SETLEASE is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # gone, a symbolic link, not readable: not provable
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        try:
            fcntl.fcntl(fd, _SETLEASE, fcntl.F_RDLCK)
        except OSError:  # EAGAIN: a writer holds it; EPERM, EINVAL...: cannot tell
            return None
        fcntl.fcntl(fd, _SETLEASE, fcntl.F_UNLCK)
        return st
    finally:
        os.close(fd)
