"""The inbox's inotify watcher: real files, real kernel events, on the event loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from flowtaskd.daemon.intake import inotify
from flowtaskd.daemon.intake.complete import COMPLETE_EVENTS, IN_CLOSE_WRITE, IN_MOVED_TO

IN_CREATE = 0x00000100

pytestmark = pytest.mark.skipif(not inotify.available(), reason="no inotify on this platform")


async def _collect(
    folder: Path, stop: asyncio.Event, out: list[set[Path]], live: asyncio.Event
) -> None:
    async for batch in inotify.watch_folders([folder], stop, on_live=live.set):
        out.append(set(batch))


async def test_rename_and_close_write_are_reported(tmp_path: Path) -> None:
    stop, live = asyncio.Event(), asyncio.Event()
    batches: list[set[Path]] = []
    task = asyncio.ensure_future(_collect(tmp_path, stop, batches, live))
    await asyncio.wait_for(live.wait(), 5)
    (tmp_path / ".a.tmp").write_text("x")
    os.rename(tmp_path / ".a.tmp", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("y")  # written in place: create + close_write

    async def seen() -> set[Path]:
        while True:
            got = set().union(*batches) if batches else set()
            if {tmp_path / "a.yaml", tmp_path / "b.yaml"} <= got:
                return got
            await asyncio.sleep(0.005)

    got = await asyncio.wait_for(seen(), 5)
    assert tmp_path / "a.yaml" in got and tmp_path / "b.yaml" in got
    stop.set()
    await asyncio.wait_for(task, 5)  # stop ends the iterator promptly


async def test_each_path_carries_its_last_event(tmp_path: Path) -> None:
    stop, live = asyncio.Event(), asyncio.Event()
    masks: dict[Path, int] = {}
    got = asyncio.Event()

    async def collect() -> None:
        async for batch in inotify.watch_folders([tmp_path], stop, on_live=live.set):
            masks.update(batch)
            got.set()

    async def until(path: Path, mask: int) -> None:
        while masks.get(path) != mask:
            got.clear()
            await got.wait()

    task = asyncio.ensure_future(collect())
    await asyncio.wait_for(live.wait(), 5)
    (tmp_path / ".a.tmp").write_text("x")
    os.rename(tmp_path / ".a.tmp", tmp_path / "a.yaml")
    await asyncio.wait_for(until(tmp_path / "a.yaml", IN_MOVED_TO), 5)
    with (tmp_path / "b.yaml").open("w") as f:  # created, still open: not complete
        await asyncio.wait_for(until(tmp_path / "b.yaml", IN_CREATE), 5)
        assert not masks[tmp_path / "b.yaml"] & COMPLETE_EVENTS
        f.write("y")
    await asyncio.wait_for(until(tmp_path / "b.yaml", IN_CLOSE_WRITE), 5)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_deleted_folder_ends_the_watch(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    stop, live = asyncio.Event(), asyncio.Event()
    task = asyncio.ensure_future(_collect(folder, stop, [], live))
    await asyncio.wait_for(live.wait(), 5)
    folder.rmdir()
    await asyncio.wait_for(task, 5)
    assert not stop.is_set()


async def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot watch"):
        async for _ in inotify.watch_folders([tmp_path / "nope"], asyncio.Event()):
            pass
