"""Watching folders for files: batches of changed paths, and waiting for a file to settle.

:func:`watch_paths` wraps :func:`watchfiles.awatch` (the native wait runs in a worker thread)
and yields each batch as a plain set of paths. The change kinds are deliberately dropped:
an atomic ``rename`` into the folder shows up as *added*, an editor's save-by-replace as
*deleted* + *added*, a copy as *added* then *modified*. The consumer stats each path and
decides from what is on disk now, which is the only reliable answer.

Names that are still being written by their producer, or that are not meant for us, are
filtered out before they reach the consumer (:func:`is_ignored`): hidden files and folders,
and the temporary names download tools and editors use (``.tmp``, ``.part``, ``.swp``,
``~``, ``.crdownload``). The inbox's own ``*.result.json`` sidecars are *not* ignored here;
the inbox knows what it wrote.

A file can still be growing when its name first appears (a producer that writes in place
instead of renaming a finished file in). :func:`wait_stable` stats it until size, mtime and
inode stop changing for a few checks, or gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat as stat_mod
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path

import watchfiles

from flowtaskd.errors import DaemonError

__all__ = ["IGNORED_SUFFIXES", "is_ignored", "wait_stable", "watch_paths", "watch_until_present"]

#: File-name endings of files still being written by their producer.
IGNORED_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".swp", "~", ".crdownload")

#: How long (ms) the watch thread blocks before looping back to Python when nothing
#: happens. Stopping does not depend on it (the thread checks the stop event every
#: ``step_ms``); it only bounds how long the thread lingers if the process is torn down.
_RUST_TIMEOUT_MS = 1_000


def is_ignored(path: Path, root: Path | None = None) -> bool:
    """True for names the watcher never reports.

    Without ``root`` only the file name is checked; with it, every component below
    ``root`` is (so ``root/.git/config`` is ignored, while a root that itself lives under a
    hidden folder still works).
    """
    if root is not None:
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            parts = (path.name,)
    else:
        parts = (path.name,)
    if any(part.startswith(".") for part in parts):
        return True
    return path.name.endswith(IGNORED_SUFFIXES)


class _StopFlag:
    """Stop when the caller's event is set *or* this watcher is torn down.

    ``awatch`` sets its stop event when it is cancelled (to release its thread); handing it
    the caller's event directly would stop every other watcher sharing that event.
    """

    def __init__(self, outer: asyncio.Event | _UntilAppears) -> None:
        self._outer = outer
        self._own = False

    def is_set(self) -> bool:
        return self._own or self._outer.is_set()

    def set(self) -> None:
        self._own = True

    async def wait(self) -> bool:  # part of watchfiles' AnyEvent protocol; not used by it
        await self._outer.wait()
        return True


class _UntilAppears:
    """Set when ``outer`` is, or once one of the ``missing`` folders exists (looked at every
    ``poll`` seconds at most: watchfiles asks from its thread every step)."""

    def __init__(self, outer: asyncio.Event, missing: Sequence[Path], poll: float) -> None:
        self._outer, self._missing, self._poll = outer, tuple(missing), poll
        self._next = 0.0
        self.appeared = False

    def is_set(self) -> bool:
        if self._outer.is_set() or self.appeared:
            return True
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._poll
            self.appeared = any(r.is_dir() for r in self._missing)
        return self.appeared

    def set(self) -> None:  # awatch sets its flag when torn down; ours is one per watch
        self.appeared = True

    async def wait(self) -> bool:
        while not self.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._outer.wait()
        return True


def _split(roots: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    present = [r for r in roots if r.is_dir()]
    return present, [r for r in roots if r not in present]


async def watch_until_present(
    roots: Sequence[Path],
    stop_event: asyncio.Event,
    *,
    step_ms: int = 5,
    poll: float = 1.0,
    on_missing: Callable[[Path], None] | None = None,
) -> AsyncGenerator[set[Path], None]:
    """:func:`watch_paths` over the roots that exist; a missing one is reported once to
    ``on_missing``, looked for every ``poll`` seconds, and yielded (as a changed path) when
    it appears, from then on watched too. Ends when ``stop_event`` is set."""
    absolute = await asyncio.to_thread(lambda: [Path(os.path.abspath(r)) for r in roots])
    told: set[Path] = set()
    while not stop_event.is_set():
        present, missing = await asyncio.to_thread(_split, absolute)
        for root in missing:
            if root not in told and on_missing is not None:
                on_missing(root)
        told.update(missing)
        flag = _UntilAppears(stop_event, missing, poll) if missing else stop_event
        if present:
            async with contextlib.aclosing(watch_paths(present, flag, step_ms=step_ms)) as batches:
                async for batch in batches:
                    yield batch
        else:
            await flag.wait()
        if not missing or stop_event.is_set():
            return
        appeared = set((await asyncio.to_thread(_split, missing))[0])
        told -= appeared
        if appeared:
            yield appeared


def _filter_for(roots: Sequence[Path]) -> Callable[[watchfiles.Change, str], bool]:
    def keep(_change: watchfiles.Change, raw: str) -> bool:
        path = Path(raw)
        root = next((r for r in roots if path.is_relative_to(r)), None)
        return not is_ignored(path, root)

    return keep


def _checked_roots(roots: Sequence[Path]) -> list[Path]:
    """Absolute roots, each an existing folder."""
    if not roots:
        raise DaemonError("nothing to watch: no folders given")
    absolute = [Path(os.path.abspath(r)) for r in roots]
    missing = [str(r) for r in absolute if not r.is_dir()]
    if missing:
        raise DaemonError(f"watched folder does not exist or is not a folder: {', '.join(missing)}")
    return absolute


async def watch_paths(
    roots: Sequence[Path],
    stop_event: asyncio.Event | _UntilAppears,
    *,
    step_ms: int = 5,
    debounce_ms: int = 20,
    recursive: bool = True,
    on_live: Callable[[], None] | None = None,
) -> AsyncGenerator[set[Path], None]:
    """Yield batches of changed (added, modified or deleted) paths under ``roots``.

    A batch closes ``step_ms`` after its last change, or ``debounce_ms`` after its first.
    Ends when ``stop_event`` is set (within about ``step_ms``). The roots must exist: the
    caller creates them, and a missing one raises :class:`~flowtaskd.errors.DaemonError`
    (on the first iteration). A consumer that may leave the loop early should iterate under
    ``contextlib.aclosing(...)`` so the native watch is released at once, not at GC.
    ``on_live`` is called once the native watch exists: a change made after it is seen.
    """
    absolute = await asyncio.to_thread(_checked_roots, roots)
    flag = _StopFlag(stop_event)
    batches = watchfiles.awatch(
        *absolute,
        watch_filter=_filter_for(absolute),
        step=step_ms,
        debounce=debounce_ms,
        stop_event=flag,
        rust_timeout=_RUST_TIMEOUT_MS,
        recursive=recursive,
    )
    try:
        async with contextlib.aclosing(batches):
            if on_live is not None:
                # awatch creates its native watch synchronously in its first step, before its
                # first await: once that step ran (one loop turn), the watch is live.
                first = asyncio.ensure_future(anext(batches))
                await asyncio.sleep(0)
                on_live()
                try:
                    changes = await first
                except StopAsyncIteration:
                    return
                yield {Path(raw) for _change, raw in changes}
            async for changes in batches:
                yield {Path(raw) for _change, raw in changes}
    finally:
        flag.set()


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino, a.st_dev) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ino,
        b.st_dev,
    )


async def _stat(path: Path) -> os.stat_result | None:
    # Through a thread: drop folders can live on network filesystems, where a stat can hang.
    try:
        return await asyncio.to_thread(os.stat, path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _held_for_writing(path: Path) -> bool:
    """Whether another process has ``path`` open for writing (Linux leases).

    A read lease is refused (EAGAIN) while any process holds a writable descriptor to the
    file. The lease is dropped at once. When leases cannot be taken (not the file's owner
    and no CAP_LEASE, or a filesystem without them) this says False: timing decides alone.
    """
    if not hasattr(fcntl, "F_SETLEASE"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


async def wait_stable(
    path: Path,
    *,
    interval: float = 0.005,
    checks: int = 2,
    timeout: float = 10.0,  # noqa: ASYNC109 - on timeout we return None, not raise
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    wall: Callable[[], float] = time.time,
) -> os.stat_result | None:
    """The stat of ``path`` once it stopped changing; None if it vanished or never settled.

    Stable means unchanged (size, mtime, inode) for a quiet window of ``interval * checks``
    seconds. The file's own mtime says how long it has been quiet already, so a file that
    was renamed in complete (its mtime older than the window) returns at the first stat,
    and one still being written is re-checked once the window after its last write passed.
    A file some process still holds open for writing is never stable (see
    :func:`_held_for_writing`), however long its writer pauses.
    A path that is not a regular file is returned as soon as it is seen.
    """
    quiet = interval * checks
    deadline = clock() + timeout
    last = await _stat(path)
    if last is None or not stat_mod.S_ISREG(last.st_mode):
        return last
    while True:
        age = wall() - last.st_mtime_ns / 1e9
        if age >= quiet:  # (a negative age, a future mtime, is never quiet)
            # quiet long enough by its own clock; one more look proves nobody wrote since,
            # and the kernel tells whether a writer still holds it open (a paused scp)
            current = await _stat(path)
            if current is None:
                return None
            if _same(current, last) and not await asyncio.to_thread(_held_for_writing, path):
                return current
            if clock() >= deadline:
                return None
            await sleep(quiet)
            last = current
            continue
        if clock() >= deadline:
            return None
        # a future mtime (clock skew) counts as "just written": wait a whole window
        await sleep(quiet - age if 0 <= age < quiet else quiet)
        current = await _stat(path)
        if current is None:
            return None
        if (
            _same(current, last)
            and (wall() - current.st_mtime_ns / 1e9) >= quiet
            and not await asyncio.to_thread(_held_for_writing, path)
        ):
            return current
        last = current
