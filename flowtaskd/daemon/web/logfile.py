"""A step's log file, read and followed for the HTTP API, masked line by line.

Log files are ``<log_dir>/<step>.<attempt>.out`` (stdout) and ``.err`` (stderr), created at
the step's first byte (a step that printed nothing has none). Reading goes in chunks cut at
the last newline, so a secret is never split across two chunks before it is masked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from flowtaskd.logs import GLOBAL_MASKER

__all__ = ["log_path", "read_chunks"]

_CHUNK = 64 * 1024


def log_path(log_dir: str | None, step: str, attempt: int, stream: str) -> Path | None:
    """The file of one attempt's stream, or None where it cannot be (outside the run)."""
    if not log_dir:
        return None
    base = Path(log_dir)
    path = base / f"{step}.{attempt}.{'err' if stream == 'stderr' else 'out'}"
    if path.resolve().parent != base.resolve():
        return None
    return path


def _read(path: Path, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except FileNotFoundError:
        return b""


async def read_chunks(
    path: Path,
    *,
    follow: Callable[[], bool] | None = None,
    interval: float = 0.1,
    masker: Callable[[str], str] = GLOBAL_MASKER.mask,
) -> AsyncIterator[bytes]:
    """The file's masked content in chunks; with ``follow``, new content too while
    ``follow()`` is true (then what is left)."""
    offset = 0
    pending = b""
    while True:
        data = await asyncio.to_thread(_read, path, offset, _CHUNK)
        offset += len(data)
        pending += data
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield masker(pending[:cut].decode(errors="replace")).encode()
            pending = pending[cut:]
        if len(data) == _CHUNK:
            continue
        if follow is None or not follow():
            tail = await asyncio.to_thread(_read, path, offset, 1 << 30)
            pending += tail
            if pending:
                yield masker(pending.decode(errors="replace")).encode()
            return
        await asyncio.sleep(interval)
