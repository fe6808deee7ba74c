"""The HTTP components' exchange thread: results, errors, and stopping it from the loop
(over a real listening socket on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowtaskd.components.httpthread import Stopped, Transfer, run_in_thread
from tests.conftest import wait_for


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


async def test_the_result_and_the_error_come_back() -> None:
    assert await run_in_thread(Transfer(), lambda: threading.current_thread().name) == (
        "flowtaskd-http"
    )

    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await run_in_thread(Transfer(), boom)


async def test_cancel_shuts_down_a_blocked_read(listener: socket.socket) -> None:
    transfer = Transfer()
    port = listener.getsockname()[1]
    ended = threading.Event()
    reading = threading.Event()

    def work() -> bytes:
        try:
            stream = transfer.connect_tcp("127.0.0.1", port, timeout=30)
            try:
                reading.set()
                return stream.read(1024, timeout=30)  # the peer never writes
            finally:
                stream.close()
        finally:
            ended.set()

    job = asyncio.ensure_future(run_in_thread(transfer, work))
    await wait_for(reading.is_set)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert transfer.stopped
    await wait_for(ended.is_set, timeout=5, what="the read returns once its socket is shut")


async def test_a_stopped_transfer_opens_no_file_and_connects_nowhere(
    listener: socket.socket, tmp_path: Path
) -> None:
    transfer = Transfer()
    transfer.stop()
    with pytest.raises(Stopped):
        transfer.open_part(tmp_path / "x.part")
    assert not (tmp_path / "x.part").exists() and not transfer.writing
    with pytest.raises(Stopped):
        transfer.connect_tcp("127.0.0.1", listener.getsockname()[1])


async def test_cancel_waits_for_a_writer_to_clean_up(tmp_path: Path) -> None:
    transfer = Transfer()
    part = tmp_path / "f.part"
    opened = threading.Event()

    def work() -> None:
        fh = transfer.open_part(part)
        opened.set()
        try:
            while True:
                transfer.check()
                fh.write(b"x")
        finally:
            fh.close()
            part.unlink()

    job = asyncio.ensure_future(run_in_thread(transfer, work))
    await wait_for(opened.is_set)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not part.exists()  # removed before the cancellation went on
