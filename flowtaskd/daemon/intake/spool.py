"""The spool: claimed inbox files held until archived, and the moves that keep them safe.

**Claiming** is a ``rename`` into the spool folder (``<state_dir>/spool``), so exactly one
claimer gets a file however many race for it. The spool name ``<claim_id>--<inbox>--<name>``
is all recovery needs: after a crash, :meth:`Spool.pending` lists what was claimed but never
archived, without a database. Keep the spool on the inboxes' filesystem; across filesystems
(``EXDEV``) a claim renames the file to a hidden ``.<name>.<claim_id>.claiming`` beside it
(still atomic, still exactly once), copies it into the spool (temp name, ``fsync``, rename)
and removes the hidden file; one a crash left in between is renamed back at the next start
(:meth:`Spool.restore_claims`), and a failed copy renames it back before anything else.

**Archiving** moves the spooled file to ``<archive>/done/`` or ``<archive>/failed/`` under
its original name (``<stem>.<claim_id><suffix>`` if that is taken; never overwriting),
after writing ``<archived name>.result.json`` there atomically: the result is in place
before the file appears.

Blocking file I/O throughout; the inbox watcher (:mod:`flowtaskd.daemon.intake.inbox`) calls it
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowtaskd.errors import DaemonError

__all__ = ["ClaimedFile", "Spool"]

SIDECAR_SUFFIX = ".result.json"
_ID_TIME = "%Y%m%dT%H%M%S%fZ"
_INBOX_NAME = r"[A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*"
_CLAIMING = re.compile(r"\.(.+)\.\d{8}T\d{12}Z-[0-9a-f]{6}\.claiming")
_SPOOL_NAME = re.compile(rf"(\d{{8}}T\d{{12}}Z-[0-9a-f]{{6}})--({_INBOX_NAME})--(.+)")


@dataclass(frozen=True, slots=True)
class ClaimedFile:
    """A task file taken out of an inbox; it stays in the spool until archived."""

    original: Path  # where it was dropped (<inbox folder>/<name>)
    spooled: Path  # where it is now (<spool>/<claim_id>--<inbox>--<name>)
    inbox: str
    claim_id: str  # unique, sorts by claim time; also the spool name's prefix
    claimed_at: float  # seconds since the epoch


def check_inbox_name(inbox: str) -> None:
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


def _write_synced(folder: Path, path: Path, text: str) -> None:
    """Write ``path`` (mode 0640) atomically: a synced temporary file renamed into place."""
    tmp = folder / f".{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        check_inbox_name(inbox)
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
            try:
                os.rename(hold, path)  # back where it was dropped, first of all
            finally:
                with contextlib.suppress(OSError):  # a read-only spool: EROFS here too
                    tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        hold.unlink()
        return True

    def restore_claims(self, folder: Path) -> list[Path]:
        """Put back under their names the files a crash (or an old failed claim) left under
        hidden ``.<name>.<claim_id>.claiming`` names in the inbox ``folder``; returns them.
        A name taken meanwhile keeps the hidden file (never overwritten)."""
        restored: list[Path] = []
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _CLAIMING.fullmatch(entry.name)
                if match is None or not entry.is_file(follow_symlinks=False):
                    continue
                original = Path(folder) / match.group(1)
                if _move_new(Path(entry.path), original):
                    restored.append(original)
        return restored

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
        if not claimed.spooled.exists():
            raise DaemonError(f"cannot archive {claimed.spooled}: it is not in the spool")
        name = claimed.original.name
        text = json.dumps(dict(result), indent=2, sort_keys=True, default=str) + "\n"
        alternate = f"{Path(name).stem}.{claimed.claim_id}{Path(name).suffix}"
        # The sidecar goes in place first: a watcher of done/ (or a crash) never sees the
        # file without its result.
        for dest in (folder / name, folder / alternate):
            sidecar = folder / f"{dest.name}{SIDECAR_SUFFIX}"
            if os.path.lexists(dest) or os.path.lexists(sidecar):
                continue
            _write_synced(folder, sidecar, text)
            try:
                if _move_new(claimed.spooled, dest):
                    break
            except FileNotFoundError:
                sidecar.unlink(missing_ok=True)
                raise DaemonError(
                    f"cannot archive {claimed.spooled}: it is not in the spool"
                ) from None
            sidecar.unlink(missing_ok=True)  # taken meanwhile: try the other name
        else:
            raise DaemonError(f"cannot archive {claimed.spooled}: {folder / alternate} exists")
        _fsync_dir(folder)
        return dest
