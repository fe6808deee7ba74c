"""flowtaskd.daemon.web.logfile: a step's log file path, read and followed, masked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from flowtaskd.daemon.web.logfile import _CHUNK, log_path, read_chunks
from tests.conftest import wait_for


def _mask(text: str) -> str:
    return text.replace("hunter2", "***")


async def _all(path: Path, **kw: object) -> list[bytes]:
    return [c async for c in read_chunks(path, masker=_mask, **kw)]  # type: ignore[arg-type]


def test_log_path_names_stream_files(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert log_path(d, "fetch", 2, "stdout") == tmp_path / "fetch.2.out"
    assert log_path(d, "fetch", 1, "stderr") == tmp_path / "fetch.1.err"


def test_log_path_outside_the_run_is_none(tmp_path: Path) -> None:
    assert log_path(None, "a", 1, "stdout") is None
    assert log_path("", "a", 1, "stdout") is None
    assert log_path(str(tmp_path), "../other/a", 1, "stdout") is None
    assert log_path(str(tmp_path), "x/y", 1, "stdout") is None


async def test_missing_file_reads_as_nothing(tmp_path: Path) -> None:
    assert await _all(tmp_path / "none.1.out") == []


async def test_content_is_masked_and_ends_with_the_unterminated_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.1.out"
    path.write_text("token hunter2\nlast hunter2")
    chunks = await _all(path)
    assert b"".join(chunks) == b"token ***\nlast ***"
    assert chunks[0] == b"token ***\n"


async def test_a_secret_across_a_chunk_boundary_is_masked(tmp_path: Path) -> None:
    path = tmp_path / "a.1.out"
    head = b"x" * (_CHUNK - 3)
    path.write_bytes(head + b"hunter2 tail\n")  # the secret straddles the 64 KiB cut
    out = b"".join(await _all(path))
    assert b"hunter2" not in out
    assert out == head + b"*** tail\n"


async def test_follow_reads_new_lines_until_told_to_stop(tmp_path: Path) -> None:
    path = tmp_path / "a.1.out"
    path.write_text("one\n")
    running = True
    got: list[bytes] = []

    async def reader() -> None:
        async for chunk in read_chunks(path, follow=lambda: running, interval=0.01, masker=_mask):
            got.append(chunk)

    task = asyncio.create_task(reader())
    await wait_for(lambda: got == [b"one\n"], what="the first line")
    with path.open("a") as fh:
        fh.write("two hunter2\nthree")
    await wait_for(lambda: len(got) == 2, what="the followed line")
    assert got[1] == b"two ***\n"
    running = False
    await asyncio.wait_for(task, 5)
    assert got[-1] == b"three"
