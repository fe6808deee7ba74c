"""Linux inotify on the event loop, for the latency-critical inboxes.

watchfiles (used for the library folders) runs a thread that wakes every ``step`` to take
the GIL and check for a stop request: at the 5 ms an inbox needs to pick a file up within
milliseconds, that costs about 1% of a core on an idle daemon. An inotify descriptor
registered with the event loop costs nothing while idle and reports a rename in
microseconds. Used when the platform has inotify (Linux); otherwise the inbox falls back
to watchfiles. Not recursive: an inbox is one folder.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

__all__ = ["available", "watch_folders"]

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_Q_OVERFLOW = 0x00004000
_IN_ONLYDIR = 0x01000000
_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
_HEADER = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return lib if hasattr(lib, "inotify_init1") else None


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


async def watch_folders(
    folders: Sequence[Path],
    stop: asyncio.Event,
    on_live: Callable[[], None] | None = None,
) -> AsyncIterator[dict[Path, int]]:
    """Yield the paths created, written (closed) or renamed into ``folders``, each with the
    mask of its *last* event in the batch (``IN_CLOSE_WRITE``, ``IN_MOVED_TO``,
    ``IN_CREATE``; see :data:`~flowtaskd.daemon.intake.complete.COMPLETE_EVENTS`).

    An event-queue overflow yields the folders themselves (mask 0): the caller rescans them.
    Ends when ``stop`` is set or a watched folder is deleted or moved away.
    """
    if _LIBC is None:
        raise OSError("inotify is not available on this platform")
    fd = _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[dict[Path, int] | None] = asyncio.Queue()
    try:
        dirs: dict[int, Path] = {}
        for folder in folders:
            wd = _LIBC.inotify_add_watch(fd, os.fsencode(folder), _MASK)
            if wd < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot watch {folder}: {os.strerror(err)}")
            dirs[wd] = Path(folder)
        loop.add_reader(fd, lambda: ready.put_nowait(_read(fd, dirs)))
        if on_live is not None:
            on_live()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(ready.get())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    await asyncio.gather(getter, return_exceptions=True)
                    break
                batch = getter.result()
                if batch is None:  # a watched folder went away
                    return
                if batch:
                    yield batch
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def _read(fd: int, dirs: dict[int, Path]) -> dict[Path, int] | None:
    """Drain the inotify descriptor: the changed paths and their last event's mask (None if
    a folder vanished)."""
    out: dict[Path, int] = {}
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return out
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
            offset += _HEADER.size + length
            if mask & _IN_Q_OVERFLOW:
                out.update(dict.fromkeys(dirs.values(), 0))  # the caller rescans
                continue
            if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF):
                return None
            folder = dirs.get(wd)
            name = raw.split(b"\0", 1)[0]
            if folder is not None and name:
                path = folder / os.fsdecode(name)
                out.pop(path, None)  # keep the order of last events
                out[path] = mask
