"""Drop-to-run inboxes: claim a dropped task file, remember it across crashes, archive it.

An inbox is a folder; dropping a task file (``.yaml``/``.yml``/``.json``/``.toml``) into it
asks the daemon to run it once. This module does the file side of that; what runs, and
whether the file is trusted (:mod:`flowtaskd.daemon.intake.trust`), is the daemon's decision.

**Dropping a file.** Write it under a temporary name in the same folder, then rename it
into place, so it appears complete and in one step::

    cat > inbox/.nightly.yaml.tmp  &&  mv inbox/.nightly.yaml.tmp inbox/nightly.yaml

Hidden names and the usual temporary endings (``.tmp``, ``.part``, ``.swp``, ``~``) are
never picked up (:func:`~flowtaskd.daemon.intake.watcher.is_ignored`), nor are ``*.result.json``
sidecars or anything in subfolders.

**When a file is complete.** Where inotify runs (Linux), a file renamed into the inbox
(``IN_MOVED_TO``) or written in place and closed (``IN_CLOSE_WRITE``) is claimed at once if
no process holds it open for writing, which a read lease proves
(:mod:`flowtaskd.daemon.intake.complete`): a drop starts in about a millisecond. Otherwise
(a writer still has it open, no lease can be taken, files seen by a rescan, watchfiles on
other platforms) it is claimed only once its size and mtime stopped changing for a quiet
window and no writer holds it (:func:`~flowtaskd.daemon.intake.watcher.wait_stable`). A
writer that closes a file and opens it again later to add more must not write in place:
write a temporary name and rename it in.

**Claiming and archiving** go through the :class:`~flowtaskd.daemon.intake.spool.Spool`
(``<state_dir>/spool``; see :mod:`flowtaskd.daemon.intake.spool`): a claim is an atomic rename, so
exactly one claimer gets a file, and the spool is what recovery reads after a crash.

:class:`InboxWatcher` ties it together: at start it claims what is already in the inboxes,
then claims each file the watcher reports, and rescans every ``rescan_interval`` seconds as
a safety net (files dropped while the watch was being set up, event queue overflow, and
network filesystems, where a remote writer's changes raise no local event).
"""

from __future__ import annotations

import asyncio
import os
import stat as stat_mod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowtaskd.core.loader import format_for
from flowtaskd.daemon.faults import Faults
from flowtaskd.daemon.intake import inotify
from flowtaskd.daemon.intake.complete import COMPLETE_EVENTS, complete_now
from flowtaskd.daemon.intake.spool import SIDECAR_SUFFIX, ClaimedFile, Spool, check_inbox_name
from flowtaskd.daemon.intake.watcher import is_ignored, wait_stable, watch_paths
from flowtaskd.errors import DaemonError
from flowtaskd.logs import get_logger

__all__ = ["ClaimedFile", "InboxWatcher", "Spool", "scan_inbox"]

_log = get_logger("flowtaskd.inbox")

_RESCAN = "inbox_rescan"  # the place name of scan failures (see Faults)
_SETTLE_ATTEMPT = 0.5  # seconds per wait_stable call; bounds how long stop takes


def _is_candidate(path: Path) -> bool:
    name = path.name
    if is_ignored(path) or name.endswith(SIDECAR_SUFFIX):
        return False
    return format_for(name) is not None


def _scan(folder: Path, ignored: list[tuple[Path, str]] | None = None) -> list[Path]:
    found: list[tuple[int, str, Path]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if not _is_candidate(path):
                    continue
                try:
                    if entry.is_file(follow_symlinks=False):
                        found.append(
                            (entry.stat(follow_symlinks=False).st_mtime_ns, path.name, path)
                        )
                    elif ignored is not None:
                        ignored.append((path, _kind(entry)))
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        raise DaemonError(f"inbox folder does not exist or is not a folder: {folder}") from None
    return [path for *_, path in sorted(found)]


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "a symbolic link is never run (drop the file itself)"
    if entry.is_dir(follow_symlinks=False):
        return "a folder is never run (files in subfolders are not looked at)"
    return "not a regular file (a pipe, a socket or a device) is never run"


async def scan_inbox(path: Path, ignored: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Task files directly in the inbox folder ``path``, oldest mtime first; entries named
    like task files that are not regular files go to ``ignored`` with the reason."""
    return await asyncio.to_thread(_scan, Path(path), ignored)


def _check_folders(folders: Sequence[Path]) -> None:
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DaemonError(f"inbox folder does not exist or is not a folder: {', '.join(missing)}")


async def _first_of(work: asyncio.Future[Any], event: asyncio.Event) -> bool:
    """Wait for ``work`` or ``event``: True when ``work`` finished (it is then done), False
    when ``event`` was set first (``work`` is then cancelled and awaited)."""
    woken = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({work, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(work, woken, return_exceptions=True)
    return not work.cancelled()


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class _Run:  # what the parts of one InboxWatcher.run share
    stop: asyncio.Event
    group: asyncio.TaskGroup
    settling: asyncio.Semaphore  # bounds the files waited on at once


class InboxWatcher:
    """Claims every task file dropped into the inboxes and hands it to ``submit``.

    ``inboxes`` pairs inbox names with existing folders. ``submit`` (sync, called on the
    event loop) gets each :class:`ClaimedFile` exactly once. A failure with one file is
    logged and passed to ``on_error(path, reason)`` once per version of the file (it is
    retried silently at each rescan); it never stops the watcher.
    """

    def __init__(
        self,
        inboxes: Sequence[tuple[str, Path]],
        spool: Spool,
        submit: Callable[[ClaimedFile], None],
        *,
        stable_interval: float = 0.005,
        stable_checks: int = 2,
        on_error: Callable[[Path, str], None] | None = None,
        rescan_interval: float | None = 5.0,
        max_settling: int = 64,
        faults: Faults | None = None,
        on_ignored: Callable[[Path, str, str], None] | None = None,
    ) -> None:
        self._folders: dict[Path, str] = {}
        for name, folder in inboxes:
            check_inbox_name(name)
            absolute = Path(os.path.abspath(folder))
            if absolute in self._folders or name in self._folders.values():
                raise ValueError(f"inbox {name!r} ({folder}) is listed twice")
            self._folders[absolute] = name
        self._spool = spool
        self._submit = submit
        self._interval = stable_interval
        self._checks = stable_checks
        self._on_error = on_error
        self._rescan = rescan_interval
        self._max_settling = max_settling
        self._faults = faults or Faults()
        self._on_ignored = on_ignored
        self._ignored: dict[Path, str] = {}  # entries reported as never run, and why
        self._busy: dict[Path, bool] = {}  # path -> seen again while being handled
        # path (being handled) -> set when inotify says it was renamed in or closed
        self._ended: dict[Path, asyncio.Event] = {}
        self._failed: dict[Path, tuple[tuple[int, int, int] | None, str]] = {}

    async def run(self, stop_event: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Claim what is there, then what arrives, until ``stop_event`` is set.

        ``ready`` is set once the watch is in place and the first scan is done. Raises
        :class:`~flowtaskd.errors.DaemonError` at once if an inbox folder is missing.
        """
        await asyncio.to_thread(_check_folders, list(self._folders))
        async with asyncio.TaskGroup() as group:
            run = _Run(stop_event, group, asyncio.Semaphore(self._max_settling))
            live = asyncio.Event()
            group.create_task(self._watch(run, live))
            stopped = asyncio.ensure_future(stop_event.wait())
            live_wait = asyncio.ensure_future(live.wait())
            await asyncio.wait({stopped, live_wait}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            live_wait.cancel()
            await asyncio.gather(stopped, live_wait, return_exceptions=True)
            await self._scan_all(run)  # after the watch is live: nothing falls in between
            if ready is not None:
                ready.set()
            while not stop_event.is_set():
                wait = self._rescan
                backoff = self._faults.backoff(_RESCAN)
                if backoff and (wait is None or backoff < wait):
                    wait = backoff  # a failing scan is retried sooner than the next rescan
                try:
                    async with asyncio.timeout(wait):
                        await stop_event.wait()
                except TimeoutError:
                    _log.debug("inbox_rescan")
                    await self._scan_all(run)

    async def _watch(self, run: _Run, live: asyncio.Event) -> None:
        folders = list(self._folders)
        batches: AsyncIterator[dict[Path, int]] | AsyncIterator[set[Path]]
        if inotify.available():
            # on the event loop: nothing runs while idle, a rename is seen in microseconds
            batches = inotify.watch_folders(folders, run.stop, on_live=live.set)
        else:
            batches = watch_paths(folders, run.stop, recursive=False, on_live=live.set)
        async for batch in batches:
            if any(path in self._folders for path in batch):  # events were lost: look again
                await self._scan_all(run)
            masks: dict[Path, int] = batch if isinstance(batch, dict) else {}  # watchfiles: none
            for path in sorted(batch):
                inbox = self._folders.get(path.parent)  # None: in a subfolder
                if inbox is not None and _is_candidate(path):
                    ended = bool(masks.get(path, 0) & COMPLETE_EVENTS)
                    self._start(run, path, inbox, ended=ended)

    async def _scan_all(self, run: _Run) -> None:
        for folder, inbox in self._folders.items():
            ignored: list[tuple[Path, str]] = []
            try:
                paths = await scan_inbox(folder, ignored)
            except DaemonError as error:
                self._report(folder, str(error), None)
                continue
            except OSError as error:  # out of descriptors, an NFS hiccup: try again soon
                self._faults.report(_RESCAN, error)
                continue
            self._faults.cleared(_RESCAN)
            self._failed.pop(folder, None)
            present = set(paths)
            for gone in [p for p in self._failed if p.parent == folder and p not in present]:
                del self._failed[gone]
            for path, reason in ignored:
                self._ignore(path, inbox, reason)
            for path in paths:
                self._start(run, path, inbox)

    def _ignore(self, path: Path, inbox: str, reason: str) -> None:
        """One log line (and ``on_ignored``) per entry that will never run, not per look."""
        if self._ignored.get(path) == reason:
            return
        self._ignored[path] = reason
        _log.warning("inbox_ignored", inbox=inbox, file=str(path), reason=reason)
        if self._on_ignored is not None:
            try:
                self._on_ignored(path, inbox, reason)
            except Exception:
                _log.exception("inbox_on_ignored_failed", file=str(path))

    def _start(self, run: _Run, path: Path, inbox: str, *, ended: bool = False) -> None:
        """Handle ``path``; ``ended``: its last inotify event was a rename in or a close."""
        if run.stop.is_set():
            return
        if path in self._busy:
            self._busy[path] = True  # handled again once the current attempt is over
            if ended:
                self._ended[path].set()  # wakes a settle waiting out its quiet window
            return
        self._busy[path] = False
        self._ended[path] = event = asyncio.Event()
        if ended:
            event.set()
        run.group.create_task(self._handle(run, path, inbox))

    async def _handle(self, run: _Run, path: Path, inbox: str) -> None:
        try:
            while not run.stop.is_set():
                await self._attempt(run, path, inbox)
                if not self._busy[path]:
                    break
                self._busy[path] = False
        finally:
            del self._busy[path]
            del self._ended[path]

    async def _attempt(self, run: _Run, path: Path, inbox: str) -> None:
        st: os.stat_result | None = None
        claimed: ClaimedFile | None = None
        try:
            async with run.settling:
                ended = self._ended[path]
                if ended.is_set():  # renamed in or closed: prove it complete and claim it
                    ended.clear()  # in one thread hop
                    st, claimed = await asyncio.to_thread(self._claim_if_complete, path, inbox)
                if st is None:
                    st = await self._settle(path, run.stop, ended)
            if claimed is None:
                if st is None or run.stop.is_set():
                    return
                claimed = await asyncio.to_thread(self._spool.claim, path, inbox)
        except Exception as error:  # one bad file never stops the watcher
            reason = str(error) or type(error).__name__
            self._report(path, reason, _signature(st) if st is not None else None)
            return
        if claimed is None:
            return  # gone before the claim
        self._failed.pop(path, None)
        _log.debug("inbox_claimed", inbox=inbox, file=str(path), claim_id=claimed.claim_id)
        try:
            self._submit(claimed)
        except Exception as error:
            self._report(path, f"claimed as {claimed.spooled}, not submitted: {error!r}", None)

    def _claim_if_complete(
        self, path: Path, inbox: str
    ) -> tuple[os.stat_result | None, ClaimedFile | None]:
        """(stat, claim) when :func:`complete_now` proves ``path`` complete (the claim is
        None if it went meanwhile); (None, None) when it cannot. Blocking."""
        st = complete_now(path)
        if st is None:
            return None, None
        return st, self._spool.claim(path, inbox)

    async def _settle(
        self, path: Path, stop: asyncio.Event, ended: asyncio.Event
    ) -> os.stat_result | None:
        """The stat of ``path`` once complete; None if it is gone or not a regular file.

        Complete at once when ``ended`` is set (renamed in, or closed by its writer) and
        :func:`complete_now` proves no writer holds it; else when :func:`wait_stable` says
        so, or when ``ended`` is set meanwhile and the proof then holds.
        """
        checked = False
        while not stop.is_set():
            if ended.is_set():
                ended.clear()
                st = await asyncio.to_thread(complete_now, path)
                if st is not None:
                    return st
            if not checked:
                try:
                    first = await asyncio.to_thread(os.lstat, path)
                except (FileNotFoundError, NotADirectoryError):
                    return None
                if not stat_mod.S_ISREG(first.st_mode):
                    return None  # a folder, a symbolic link, a pipe: not ours to claim
                checked = True
            stable = asyncio.ensure_future(
                wait_stable(
                    path, interval=self._interval, checks=self._checks, timeout=_SETTLE_ATTEMPT
                )
            )
            if not await _first_of(stable, ended):
                continue  # renamed in or closed meanwhile: try the proof again
            st = stable.result()
            if st is not None:
                return st if stat_mod.S_ISREG(st.st_mode) else None
            if not await asyncio.to_thread(os.path.lexists, path):
                return None
        return None

    def _report(self, path: Path, reason: str, signature: tuple[int, int, int] | None) -> None:
        if self._failed.get(path) == (signature, reason):
            return  # already reported for this version of the file
        self._failed[path] = (signature, reason)
        _log.warning("inbox_error", file=str(path), reason=reason)
        if self._on_error is not None:
            try:
                self._on_error(path, reason)
            except Exception:
                _log.exception("inbox_on_error_failed", file=str(path))
