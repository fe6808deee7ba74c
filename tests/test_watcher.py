"""The watcher against real folders: renames, ignored names, batches, stop, settling files."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flowtaskd.daemon.intake.watcher import is_ignored, wait_stable, watch_paths
from flowtaskd.errors import DaemonError

DEADLINE = 5.0


@pytest.mark.parametrize(
    "name",
    [".hidden", ".x.yaml", "a.tmp", "a.yaml.part", "a.swp", "a.yaml~", "video.mp4.crdownload"],
)
def test_ignored_names(name: str) -> None:
    assert is_ignored(Path("/in") / name)


@pytest.mark.parametrize("name", ["a.yaml", "a.result.json", "tmp", "a.tmp.yaml", "partial.csv"])
def test_kept_names(name: str) -> None:
    assert not is_ignored(Path("/in") / name)


def test_hidden_folder_below_root_only() -> None:
    root = Path("/home/u/.config/flowtaskd/inbox")
    assert not is_ignored(root / "a.yaml", root)  # the root itself may sit in a dot folder
    assert is_ignored(root / ".git" / "config", root)
    assert is_ignored(root / "sub" / ".cache" / "a.yaml", root)
    assert not is_ignored(root / "sub" / "a.yaml", root)


class _Watch:
    """Runs watch_paths in a task and collects its batches (minus the readiness probe)."""

    def __init__(
        self,
        roots: list[Path],
        stop: asyncio.Event | None = None,
        *,
        step_ms: int = 5,
        debounce_ms: int = 20,
    ) -> None:
        self.roots = roots
        self.stop = stop or asyncio.Event()
        self.batches: list[set[Path]] = []
        self.probed = False
        self.arrived = asyncio.Condition()
        self._iter = watch_paths(roots, self.stop, step_ms=step_ms, debounce_ms=debounce_ms)
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for batch in self._iter:
            async with self.arrived:
                self.probed = self.probed or any(p.name == "probe" for p in batch)
                kept = {p for p in batch if p.name != "probe"}
                if kept:
                    self.batches.append(kept)
                self.arrived.notify_all()

    async def __aenter__(self) -> _Watch:
        self.task = asyncio.create_task(self._run())
        # Ready once a probe file is seen: the native watches are in place from then on.
        probe = self.roots[0] / "probe"
        async with asyncio.timeout(DEADLINE):
            while not self.probed:
                probe.write_text("x")
                async with self.arrived:
                    try:
                        async with asyncio.timeout(0.05):
                            await self.arrived.wait_for(lambda: self.probed)
                    except TimeoutError:
                        continue
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, DEADLINE)

    def seen(self) -> set[Path]:
        return set().union(*self.batches)

    async def wait_for(self, path: Path) -> None:
        async with asyncio.timeout(DEADLINE), self.arrived:
            await self.arrived.wait_for(lambda: path in self.seen())


async def test_rename_into_folder_is_reported(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    staging = tmp_path / "staging.yaml"
    async with _Watch([inbox]) as w:
        staging.write_text("steps: []\n")
        os.rename(staging, inbox / "job.yaml")
        await w.wait_for(inbox / "job.yaml")


async def test_ignored_names_never_reported(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / ".git").mkdir()
    async with _Watch([inbox]) as w:
        for name in ["a.tmp", ".hidden", "b.part", "c.swp", "d~", "e.crdownload", ".git/config"]:
            (inbox / name).write_text("x")
        (inbox / "job.yaml.part").write_text("x")
        os.rename(inbox / "job.yaml.part", inbox / "job.yaml")  # the marker: last change made
        await w.wait_for(inbox / "job.yaml")
    assert w.seen() <= {inbox / "job.yaml"}  # the .part half of the rename is filtered too


async def test_several_files_arrive_as_one_set(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = {inbox / f"f{i}.yaml" for i in range(5)}
    # A long step so the five writes, a few microseconds apart, land in one batch.
    async with _Watch([inbox], step_ms=50, debounce_ms=500) as w:
        for p in sorted(names):
            p.write_text("x")
        await w.wait_for(max(names))
    assert names <= w.batches[0]
    assert all(isinstance(p, Path) for p in w.batches[0])


async def test_subfolders_and_several_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    async with _Watch([a, b]) as w:
        (a / "sub" / "deep.yaml").write_text("x")
        (b / "other.yaml").write_text("x")
        await w.wait_for(a / "sub" / "deep.yaml")
        await w.wait_for(b / "other.yaml")


async def test_stop_event_ends_iteration_promptly(tmp_path: Path) -> None:
    w = _Watch([tmp_path])
    await w.__aenter__()  # the consumer is back in the native wait after the probe batch
    assert w.task is not None
    started = time.monotonic()
    w.stop.set()
    await asyncio.wait_for(w.task, DEADLINE)
    assert time.monotonic() - started < 0.5  # rust_timeout is 1 s: the step check stopped it


async def test_cancel_does_not_set_callers_stop_event(tmp_path: Path) -> None:
    shared = asyncio.Event()
    w = _Watch([tmp_path], stop=shared)
    await w.__aenter__()
    assert w.task is not None
    w.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(w.task, DEADLINE)
    assert not shared.is_set()  # another watcher sharing the event keeps running


async def test_missing_root_is_a_daemon_error(tmp_path: Path) -> None:
    gen: AsyncIterator[set[Path]] = watch_paths([tmp_path, tmp_path / "nope"], asyncio.Event())
    with pytest.raises(DaemonError, match="nope"):
        await anext(gen)


async def test_wait_stable_finished_file(tmp_path: Path) -> None:
    path = tmp_path / "done.yaml"
    path.write_text("steps: []\n")
    started = time.monotonic()
    st = await wait_stable(path)
    assert st is not None
    assert st.st_size == path.stat().st_size
    assert time.monotonic() - started < 0.5  # about interval * checks = 10 ms


async def test_wait_stable_waits_for_writer(tmp_path: Path) -> None:
    """A file young at the first look, written in chunks with pauses far longer than the
    quiet window while its writer holds it open: stable only once the writer closed it."""
    path = tmp_path / "growing.csv"
    writer_done = threading.Event()
    started = threading.Event()

    def write() -> None:
        with path.open("ab", buffering=0) as f:
            f.write(b"row\n")
            started.set()
            for _ in range(3):
                time.sleep(0.05)  # the producer pauses: 5x the 10 ms quiet window
                f.write(b"row\n")
            writer_done.set()  # set before the close: a return after it is not too early

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert await asyncio.to_thread(started.wait, DEADLINE)
        st = await wait_stable(path, interval=0.005, checks=2)
        assert writer_done.is_set(), "returned while the writer still held the file open"
    finally:
        thread.join(DEADLINE)
    assert st is not None
    assert st.st_size == path.stat().st_size == 4 * 4


async def test_wait_stable_deleted_file(tmp_path: Path) -> None:
    assert await wait_stable(tmp_path / "never-there") is None
    path = tmp_path / "vanishes"
    path.write_text("x")

    async def delete_then_sleep(seconds: float) -> None:
        path.unlink(missing_ok=True)
        await asyncio.sleep(seconds)

    assert await wait_stable(path, sleep=delete_then_sleep) is None


async def test_wait_stable_times_out_on_a_file_that_keeps_changing(tmp_path: Path) -> None:
    path = tmp_path / "busy"
    path.write_text("x")
    born = path.stat().st_mtime
    now = 0.0

    def clock() -> float:
        return now

    def wall() -> float:  # the file's clock follows the fake one: a slow machine can't age it
        return born + now

    async def append_and_tick(seconds: float) -> None:
        nonlocal now
        now += seconds
        with path.open("a") as f:
            f.write("x")
        os.utime(path, (wall(), wall()))  # written at the end of every wait

    stat = await wait_stable(path, timeout=1.0, clock=clock, sleep=append_and_tick, wall=wall)
    assert stat is None
    assert now == pytest.approx(1.0, abs=0.01)  # gave up at the deadline, not before


async def test_wait_stable_waits_while_a_paused_writer_holds_the_file(tmp_path: Path) -> None:
    """A writer that pauses far longer than the quiet window (a slow scp) keeps the file
    unstable for as long as it holds it open for writing."""
    path = tmp_path / "slow.yaml"
    writer = path.open("wb")
    writer.write(b"name: x\n")
    writer.flush()
    os.utime(path, (time.time() - 5, time.time() - 5))  # quiet by its mtime for 5 s already
    waiter = asyncio.ensure_future(wait_stable(path, interval=0.005, checks=2, timeout=5.0))
    try:
        await asyncio.sleep(0.2)  # an observation window, not a wait for a condition
        assert not waiter.done(), "claimed while a writer still held the file open"
        writer.write(b"steps: []\n")
        writer.close()
        st = await asyncio.wait_for(waiter, 5)
    finally:
        if not writer.closed:
            writer.close()
    assert st is not None and st.st_size == path.stat().st_size


async def test_a_missing_root_is_reported_then_watched_once_it_appears(tmp_path: Path) -> None:
    from flowtaskd.daemon.intake.watcher import watch_until_present  # noqa: PLC0415

    here, later = tmp_path / "here", tmp_path / "later"
    here.mkdir()
    missing: list[Path] = []
    stop = asyncio.Event()
    batches: list[set[Path]] = []

    async def consume() -> None:
        gen = watch_until_present(
            [here, later], stop, step_ms=5, poll=0.05, on_missing=missing.append
        )
        async for batch in gen:
            batches.append(batch)

    consumer = asyncio.create_task(consume())
    deadline = time.monotonic() + 10
    while not missing and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert missing == [later]
    later.mkdir()
    while {later} not in batches and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert {later} in batches  # the appearance itself is a change: the caller scans it
    while time.monotonic() < deadline:  # now watched: a file in it is reported
        (later / "t.yaml").write_text("name: t\n")
        if any(later / "t.yaml" in b for b in batches):
            break
        await asyncio.sleep(0.05)
    assert any(later / "t.yaml" in b for b in batches)
    stop.set()
    await asyncio.wait_for(consumer, 10)
    assert missing == [later]  # reported once
