"""May the daemon load this file? Ownership and permission checks on task files.

A task file is a program: whoever can write it can make the daemon run commands as the
daemon's user. So before a dropped or watched file is loaded, its owner and mode are
checked, in the spirit of ``sshd``'s ``StrictModes``:

* the owner must be the daemon's user or root (anyone else could have written anything);
* nobody else may write to it: not world-writable, not group-writable;
* its folder must not be world-writable without the sticky bit (anyone could replace the
  file between this check and the read). A sticky world-writable folder (``/tmp``-style)
  is fine: others can add files there, but those are theirs, and the owner check stops them.

A symbolic link is judged by what it points to, and the link itself must also belong to
the daemon's user or root.

:func:`untrusted_reason` answers with ``None`` (load it) or one line saying why not, ready
for a log line or an error. It does blocking ``stat`` calls: from async code, call it
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import stat as stat_mod
from pathlib import Path

__all__ = ["untrusted_reason"]


def _owner_reason(what: str, owner: int, daemon_uid: int) -> str | None:
    if owner in (daemon_uid, 0):
        return None
    return f"{what} owned by uid {owner}, not the daemon's user (uid {daemon_uid}) or root"


def _mode_reason(st: os.stat_result) -> str | None:
    mode = stat_mod.S_IMODE(st.st_mode)
    if mode & stat_mod.S_IWOTH:
        return f"is world-writable (mode {mode:04o})"
    if mode & stat_mod.S_IWGRP:
        return f"is group-writable (mode {mode:04o})"
    return None


def _folder_reason(folder: Path, st: os.stat_result) -> str | None:
    mode = stat_mod.S_IMODE(st.st_mode)
    if mode & stat_mod.S_IWOTH and not mode & stat_mod.S_ISVTX:
        return f"its folder {folder} is world-writable without the sticky bit (mode {mode:04o})"
    return None


def untrusted_reason(
    path: Path,
    st: os.stat_result | None = None,
    *,
    uid: int | None = None,
    folder: Path | None = None,
) -> str | None:
    """None when ``path`` may be loaded, else a one-line reason such as
    ``"is group-writable (mode 0664)"``.

    ``st`` is the file's stat if the caller has it already (then the file itself is not
    stat'ed again, and symbolic links are not looked at). ``uid`` is the daemon's user
    (default: the effective uid). ``folder`` is the folder whose permissions matter
    (default: the file's own folder); pass the inbox folder when checking a file that was
    already moved out of it.
    """
    daemon_uid = os.geteuid() if uid is None else uid
    parent = folder if folder is not None else path.parent
    try:
        if st is None:
            link = os.lstat(path)
            if stat_mod.S_ISLNK(link.st_mode):
                reason = _owner_reason("is a symbolic link", link.st_uid, daemon_uid)
                if reason is not None:
                    return reason
                st = os.stat(path)
            else:
                st = link
        reason = _owner_reason("is", st.st_uid, daemon_uid) or _mode_reason(st)
        if reason is not None:
            return reason
        folder_st = os.stat(parent)
    except OSError as error:
        return f"cannot be checked: {error.strerror or error}"
    return _folder_reason(parent, folder_st)
