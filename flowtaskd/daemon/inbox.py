"""Drop-to-run inboxes: claim a dropped task file, remember it across crashes, archive it.

An inbox is a folder; dropping a task file (``.yaml``/``.yml``/``.json``/``.toml``) into it
asks the daemon to run it once. This module does the file side of that; what runs, and
whether the file is trusted (:mod:`flowtaskd.daemon.trust`), is the daemon's decision.

**Dropping a file.** Write it under a temporary name in the same folder, then rename it
into place, so it appears complete and in one step::

    cat > inbox/.nightly.yaml.tmp  &&  mv inbox/.nightly.yaml.tmp inbox/nightly.yaml

Hidden names and the usual temporary endings (``.tmp``, ``.part``, ``.swp``, ``~``) are
never picked up (:func:`~flowtaskd.daemon.watcher.is_ignored`), nor are ``*.result.json``
sidecars or anything in subfolders. A file written in place under its final name is picked
up only once its size and mtime stopped changing (:func:`~flowtaskd.daemon.watcher.wait_stable`).

**Claiming** is a ``rename`` into the spool folder (``<state_dir>/spool``), so exactly one
claimer gets a file however many race for it. The spool name ``<claim_id>--<inbox>--<name>``
is all recovery needs: after a crash, :meth:`Spool.pending` lists what was claimed but never
archived, without a database. Keep the spool on the inboxes' filesystem; across filesystems
(``EXDEV``) a claim renames the file to a hidden ``.<name>.<claim_id>.claiming`` beside it
(still atomic, still exactly once), copies it into the spool (temp name, ``fsync``, rename)
and removes the hidden file, which a crash in between leaves for an operator.

**Archiving** moves the spooled file to ``<archive>/done/`` or ``<archive>/failed/`` under
its original name (``<stem>.<claim_id><suffix>`` if that is taken; never overwriting), and
writes ``<archived name>.result.json`` beside it atomically.

:class:`InboxWatcher` ties it together: at start it claims what is already in the inboxes,
then claims each file the watcher reports, and rescans every ``rescan_interval`` seconds as
a safety net (files dropped while the watch was being set up, event queue overflow, and
network filesystems, where a remote writer's changes raise no local event).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import secrets
import shutil
import stat as stat_mod
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowtaskd.daemon.watcher import is_ignored, wait_stable, watch_paths
from flowtaskd.errors import DaemonError
from flowtaskd.logs import get_logger
from flowtaskd.tasks.loader import format_for

__all__ = ["ClaimedFile", "InboxWatcher", "Spool", "scan_inbox"]

_log = get_logger("flowtaskd.inbox")

_SIDECAR = ".result.json"
_ID_TIME = "%Y%m%dT%H%M%S%fZ"
_INBOX_NAME = r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*"
_SPOOL_NAME = re.compile(rf"(\d{{8}}T\d{{12}}Z-[0-9a-f]{{6}})--({_INBOX_NAME})--(.+)")
_SETTLE_ATTEMPT = 0.5  # seconds per wait_stable call; bounds how long stop takes


@dataclass(frozen=True, slots=True)
class ClaimedFile:
    """A task file taken out of an inbox; it stays in the spool until archived."""

    original: Path  # where it was dropped (<inbox folder>/<name>)
    spooled: Path  # where it is now (<spool>/<claim_id>--<inbox>--<name>)
    inbox: str
    claim_id: str  # unique, sorts by claim time; also the spool name's prefix
    claimed_at: float  # seconds since the epoch


def _check_inbox_name(inbox: str) -> None:
    if not re.fullmatch(_INBOX_NAME, inbox):
        raise ValueError(
            f"bad inbox name {inbox!r}: use letters, digits and _, with single . or - inside"
        )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_synced(src: Path, dst: Path, st: os.stat_result) -> None:
    """Copy ``src`` to the new file ``dst`` with its mode, times and (when allowed) owner."""
    with src.open("rb") as reader, dst.open("xb") as writer:
        shutil.copyfileobj(reader, writer)
        writer.flush()
        os.fsync(writer.fileno())
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        os.chown(dst, st.st_uid, st.st_gid)  # the owner is what the trust check looks at
    shutil.copystat(src, dst)


def _move_new(src: Path, dst: Path) -> bool:
    """Move ``src`` to ``dst`` unless ``dst`` exists (then False). Never overwrites."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno == errno.EXDEV:
            tmp = dst.with_name(f".{secrets.token_hex(8)}.tmp")
            _copy_synced(src, tmp, os.lstat(src))
            try:
                moved = _move_new(tmp, dst)
            finally:
                tmp.unlink(missing_ok=True)
            if moved:
                src.unlink()
            return moved
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(dst):  # no hard links here: check, then rename
            return False
        os.rename(src, dst)
        return True
    src.unlink()
    return True


class Spool:
    """The folder of claimed, not yet archived, inbox files. Blocking I/O: use a thread."""

    def __init__(self, spool_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(spool_dir)
        self._clock = clock
        if not self.dir.is_dir():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)

    def claim(self, path: Path, inbox: str) -> ClaimedFile | None:
        """Move ``path`` into the spool; None if it is gone (another claimer won)."""
        _check_inbox_name(inbox)
        now = self._clock()
        stamp_time = datetime.fromtimestamp(now, UTC)
        claim_id = f"{stamp_time.strftime(_ID_TIME)}-{secrets.token_hex(3)}"
        target = self.dir / f"{claim_id}--{inbox}--{path.name}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            if not self.dir.is_dir():
                raise DaemonError(f"the spool folder {self.dir} is missing") from None
            return None
        except OSError as error:
            if error.errno == errno.EXDEV:
                if not self._claim_across(path, target, claim_id):
                    return None
            elif error.errno == errno.ENAMETOOLONG:
                raise DaemonError(f"{path}: the name is too long to spool; shorten it") from None
            else:
                raise
        return ClaimedFile(path, target, inbox, claim_id, stamp_time.timestamp())

    def _claim_across(self, path: Path, target: Path, claim_id: str) -> bool:
        hold = path.with_name(f".{path.name}.{claim_id}.claiming")
        try:
            os.rename(path, hold)  # same folder: atomic, so the claim is still exclusive
        except FileNotFoundError:
            return False
        st = os.lstat(hold)
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            os.rename(hold, path)
            raise DaemonError(
                f"{path}: owned by uid {st.st_uid} and the spool {self.dir} is on another "
                "filesystem; a copy would change its owner (put the spool beside the inboxes)"
            )
        tmp = self.dir / f".{claim_id}.tmp"
        try:
            _copy_synced(hold, tmp, st)
            os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            os.rename(hold, path)  # back where it was dropped
            raise
        _fsync_dir(self.dir)
        hold.unlink()
        return True

    def pending(self, inboxes: Mapping[str, Path] | None = None) -> list[ClaimedFile]:
        """Files left in the spool (claimed, never archived: a crash), oldest first.

        ``inboxes`` maps inbox names to folders, to rebuild ``original``; an inbox not in
        it (or no mapping) gives ``original`` as the bare file name.
        """
        found: list[ClaimedFile] = []
        with os.scandir(self.dir) as entries:
            for entry in entries:
                match = _SPOOL_NAME.fullmatch(entry.name)
                if match is None or not entry.is_file(follow_symlinks=False):
                    continue  # temporary copies start with "." and never match
                claim_id, inbox, name = match.groups()
                stamp = datetime.strptime(claim_id[:22], _ID_TIME).replace(tzinfo=UTC)
                folder = (inboxes or {}).get(inbox)
                original = folder / name if folder is not None else Path(name)
                found.append(
                    ClaimedFile(original, Path(entry.path), inbox, claim_id, stamp.timestamp())
                )
        return sorted(found, key=lambda c: c.claim_id)

    def archive(
        self, claimed: ClaimedFile, archive_dir: Path, *, ok: bool, result: Mapping[str, Any]
    ) -> Path:
        """Move the spooled file to ``archive_dir/done|failed/`` and write its result sidecar.

        Returns the archived path. ``result`` is written as JSON (values JSON cannot hold are
        written as their ``str``).
        """
        folder = Path(archive_dir) / ("done" if ok else "failed")
        folder.mkdir(parents=True, exist_ok=True)
        name = claimed.original.name
        dest = folder / name
        try:
            if not _move_new(claimed.spooled, dest):
                dest = folder / f"{Path(name).stem}.{claimed.claim_id}{Path(name).suffix}"
                if not _move_new(claimed.spooled, dest):
                    raise DaemonError(f"cannot archive {claimed.spooled}: {dest} exists")
        except FileNotFoundError:
            raise DaemonError(f"cannot archive {claimed.spooled}: it is not in the spool") from None
        sidecar = folder / f"{dest.name}{_SIDECAR}"
        tmp = folder / f".{secrets.token_hex(8)}.tmp"
        text = json.dumps(dict(result), indent=2, sort_keys=True, default=str) + "\n"
        try:
            with tmp.open("x", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(folder)
        return dest


def _is_candidate(path: Path) -> bool:
    name = path.name
    return not is_ignored(path) and format_for(name) is not None and not name.endswith(_SIDECAR)


def _scan(folder: Path) -> list[Path]:
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
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        raise DaemonError(f"inbox folder does not exist or is not a folder: {folder}") from None
    return [path for *_, path in sorted(found)]


async def scan_inbox(path: Path) -> list[Path]:
    """Task files directly in the inbox folder ``path``, oldest mtime first."""
    return await asyncio.to_thread(_scan, Path(path))


def _check_folders(folders: Sequence[Path]) -> None:
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise DaemonError(f"inbox folder does not exist or is not a folder: {', '.join(missing)}")


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
    ) -> None:
        self._folders: dict[Path, str] = {}
        for name, folder in inboxes:
            _check_inbox_name(name)
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
        self._busy: dict[Path, bool] = {}  # path -> seen again while being handled
        self._failed: dict[Path, tuple[tuple[int, int, int] | None, str]] = {}

    async def run(self, stop_event: asyncio.Event) -> None:
        """Claim what is there, then what arrives, until ``stop_event`` is set.

        Raises :class:`~flowtaskd.errors.DaemonError` at once if an inbox folder is missing.
        """
        await asyncio.to_thread(_check_folders, list(self._folders))
        async with asyncio.TaskGroup() as group:
            run = _Run(stop_event, group, asyncio.Semaphore(self._max_settling))
            group.create_task(self._watch(run))
            await self._scan_all(run)  # after the watch started: nothing falls in between
            while not stop_event.is_set():
                try:
                    async with asyncio.timeout(self._rescan):
                        await stop_event.wait()
                except TimeoutError:
                    _log.debug("inbox_rescan")
                    await self._scan_all(run)

    async def _watch(self, run: _Run) -> None:
        async for batch in watch_paths(list(self._folders), run.stop, recursive=False):
            for path in sorted(batch):
                inbox = self._folders.get(path.parent)  # None: in a subfolder
                if inbox is not None and _is_candidate(path):
                    self._start(run, path, inbox)

    async def _scan_all(self, run: _Run) -> None:
        for folder, inbox in self._folders.items():
            try:
                paths = await scan_inbox(folder)
            except DaemonError as error:
                self._report(folder, str(error), None)
                continue
            self._failed.pop(folder, None)
            present = set(paths)
            for gone in [p for p in self._failed if p.parent == folder and p not in present]:
                del self._failed[gone]
            for path in paths:
                self._start(run, path, inbox)

    def _start(self, run: _Run, path: Path, inbox: str) -> None:
        if run.stop.is_set():
            return
        if path in self._busy:
            self._busy[path] = True  # handled again once the current attempt is over
            return
        self._busy[path] = False
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

    async def _attempt(self, run: _Run, path: Path, inbox: str) -> None:
        st: os.stat_result | None = None
        try:
            async with run.settling:
                st = await self._settle(path, run.stop)
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

    async def _settle(self, path: Path, stop: asyncio.Event) -> os.stat_result | None:
        """The stat of ``path`` once stable; None if it is gone or not a regular file."""
        try:
            first = await asyncio.to_thread(os.lstat, path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat_mod.S_ISREG(first.st_mode):
            return None  # a folder, a symbolic link, a pipe: not ours to claim
        while not stop.is_set():
            st = await wait_stable(
                path, interval=self._interval, checks=self._checks, timeout=_SETTLE_ATTEMPT
            )
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
