"""Inboxes against real folders: claims, crash recovery, archives, and the live watcher."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from flowtaskd.daemon.intake import inotify
from flowtaskd.daemon.intake.inbox import ClaimedFile, InboxWatcher, Spool, scan_inbox
from flowtaskd.errors import DaemonError

DEADLINE = 10.0


def drop(inbox: Path, name: str, text: str = "steps: []\n") -> Path:
    """Drop a task file the recommended way: write a hidden temp name, rename into place."""
    tmp = inbox / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, inbox / name)
    return inbox / name


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "state" / "spool")


# --- Spool ----------------------------------------------------------------------------------


def test_claim_moves_the_file_into_a_private_spool(inbox: Path, spool: Spool) -> None:
    assert spool.dir.stat().st_mode & 0o777 == 0o700
    path = drop(inbox, "job.yaml", "steps: [a]\n")
    before = time.time()
    claimed = spool.claim(path, "main")
    assert claimed is not None
    assert claimed.original == path and claimed.inbox == "main"
    assert claimed.spooled == spool.dir / f"{claimed.claim_id}--main--job.yaml"
    assert claimed.spooled.read_text() == "steps: [a]\n"
    assert not path.exists()
    assert before - 0.001 <= claimed.claimed_at <= time.time()


def test_claim_of_a_vanished_file_is_none(inbox: Path, spool: Spool) -> None:
    path = drop(inbox, "job.yaml")
    assert spool.claim(path, "main") is not None
    assert spool.claim(path, "main") is None
    assert spool.claim(inbox / "never.yaml", "main") is None


def test_racing_claimers_get_each_file_once(inbox: Path, tmp_path: Path) -> None:
    paths = [drop(inbox, f"f{i}.yaml") for i in range(200)]
    spools = [Spool(tmp_path / "spool") for _ in range(4)]
    results: list[list[ClaimedFile]] = [[] for _ in spools]

    def claim_all(index: int) -> None:
        order = paths[:]
        random.Random(index).shuffle(order)
        for path in order:
            if (claimed := spools[index].claim(path, "main")) is not None:
                results[index].append(claimed)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(spools))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    originals = [c.original for result in results for c in result]
    assert sorted(originals) == sorted(paths)  # every file, none twice
    assert len(os.listdir(tmp_path / "spool")) == 200


@pytest.mark.parametrize("name", ["", "a--b", "a/b", ".x", "-a", "a-", "a b"])
def test_bad_inbox_names(inbox: Path, spool: Spool, name: str) -> None:
    path = drop(inbox, "job.yaml")
    with pytest.raises(ValueError, match="bad inbox name"):
        spool.claim(path, name)
    assert path.exists()


def test_name_too_long_to_spool(inbox: Path, spool: Spool) -> None:
    path = drop(inbox, "j" * 240 + ".yaml")
    with pytest.raises(DaemonError, match="too long"):
        spool.claim(path, "main")
    assert path.exists()


def test_pending_after_a_crash(tmp_path: Path, inbox: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    now = 1_750_000_000.25

    def clock() -> float:
        return now

    first = Spool(tmp_path / "spool", clock=clock)
    a = first.claim(drop(inbox, "b--odd-.yaml"), "in-a")
    now += 1
    b = first.claim(drop(other, "second.json", "{}"), "b")
    assert a is not None and b is not None
    (first.dir / ".left-over.tmp").write_text("half a copy")
    (first.dir / "not-ours.txt").write_text("x")
    # The daemon dies here: claimed, never archived. A new one starts on the same state dir.
    found = Spool(tmp_path / "spool").pending({"in-a": inbox})
    assert [c.claim_id for c in found] == [a.claim_id, b.claim_id]  # oldest first
    assert found[0] == a  # same inbox, original path, spooled path and time
    assert found[0].claimed_at == 1_750_000_000.25
    assert found[1].inbox == "b"
    assert found[1].original == Path("second.json")  # inbox folder not given: the bare name
    assert found[1].spooled.read_text() == "{}"


def test_archive_done_and_failed_with_sidecars(inbox: Path, spool: Spool, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    good = spool.claim(drop(inbox, "good.yaml", "good\n"), "main")
    bad = spool.claim(drop(inbox, "bad.toml", "bad\n"), "main")
    assert good is not None and bad is not None
    result = {"status": "succeeded", "run_id": "r1", "steps": {"b": 2, "a": 1}}
    done = spool.archive(good, archive, ok=True, result=result)
    failed = spool.archive(bad, archive, ok=False, result={"status": "failed", "at": Path("/x")})
    assert done == archive / "done" / "good.yaml" and done.read_text() == "good\n"
    assert failed == archive / "failed" / "bad.toml" and failed.read_text() == "bad\n"
    sidecar = archive / "done" / "good.yaml.result.json"
    assert sidecar.read_text() == json.dumps(result, indent=2, sort_keys=True) + "\n"
    failed_result = json.loads((archive / "failed" / "bad.toml.result.json").read_text())
    assert failed_result == {"status": "failed", "at": "/x"}
    assert os.listdir(spool.dir) == []
    assert sorted(os.listdir(archive / "done")) == ["good.yaml", "good.yaml.result.json"]


def test_archive_never_overwrites(tmp_path: Path, spool: Spool) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first = spool.claim(drop(one, "job.yaml", "first\n"), "one")
    second = spool.claim(drop(two, "job.yaml", "second\n"), "two")
    assert first is not None and second is not None
    archive = tmp_path / "archive"
    assert spool.archive(first, archive, ok=True, result={"n": 1}) == archive / "done/job.yaml"
    renamed = spool.archive(second, archive, ok=True, result={"n": 2})
    assert renamed == archive / "done" / f"job.{second.claim_id}.yaml"
    assert (archive / "done/job.yaml").read_text() == "first\n"
    assert renamed.read_text() == "second\n"
    sidecar = archive / "done" / f"job.{second.claim_id}.yaml.result.json"
    assert json.loads(sidecar.read_text()) == {"n": 2}
    assert json.loads((archive / "done/job.yaml.result.json").read_text()) == {"n": 1}


def test_archive_of_a_file_not_in_the_spool(inbox: Path, spool: Spool, tmp_path: Path) -> None:
    claimed = spool.claim(drop(inbox, "job.yaml"), "main")
    assert claimed is not None
    spool.archive(claimed, tmp_path / "archive", ok=True, result={})
    with pytest.raises(DaemonError, match="not in the spool"):
        spool.archive(claimed, tmp_path / "archive", ok=True, result={})


@pytest.fixture
def other_fs() -> Iterator[Path]:
    """A folder on another filesystem than tmp_path (tmpfs /dev/shm), or skip."""
    if (
        not os.path.isdir("/dev/shm")
        or os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev
    ):
        pytest.skip("needs /dev/shm on another filesystem")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm"))
    yield folder
    shutil.rmtree(folder)


def test_claim_and_archive_across_filesystems(other_fs: Path, spool: Spool) -> None:
    inbox = other_fs / "inbox"
    inbox.mkdir()
    path = drop(inbox, "job.yaml", "steps: [x]\n")
    os.chown(path, 1234, 1234)
    path.chmod(0o640)
    claimed = spool.claim(path, "main")
    assert claimed is not None
    st = claimed.spooled.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (1234, 0o640)  # what the trust check sees
    assert claimed.spooled.read_text() == "steps: [x]\n"
    assert os.listdir(inbox) == []  # the hidden .claiming file is gone too
    assert os.listdir(spool.dir) == [claimed.spooled.name]
    archived = spool.archive(claimed, other_fs / "archive", ok=True, result={"ok": True})
    assert archived.read_text() == "steps: [x]\n"
    assert sorted(os.listdir(archived.parent)) == ["job.yaml", "job.yaml.result.json"]
    assert os.listdir(spool.dir) == []


async def test_scan_inbox(inbox: Path) -> None:
    for name in ["old.yaml", "new.json", "mid.TOML", "x.yml"]:
        drop(inbox, name)
    for index, name in enumerate(["old.yaml", "mid.TOML", "x.yml", "new.json"]):
        os.utime(inbox / name, ns=(0, 1_000_000_000 * (index + 1)))
    for name in [
        "a.tmp",
        ".hidden.yaml",
        "b.yaml.part",
        "c.yaml~",
        "notes.txt",
        "r.yaml.result.json",
    ]:
        (inbox / name).write_text("x")
    (inbox / "sub").mkdir()
    (inbox / "sub" / "deep.yaml").write_text("x")
    (inbox / "folder.yaml").mkdir()
    (inbox / "link.yaml").symlink_to(inbox / "old.yaml")
    assert await scan_inbox(inbox) == [
        inbox / n for n in ["old.yaml", "mid.TOML", "x.yml", "new.json"]
    ]
    with pytest.raises(DaemonError, match="does not exist"):
        await scan_inbox(inbox / "missing")


# --- InboxWatcher -----------------------------------------------------------------------------


class Collector:
    """The ``submit`` callable: records claims, and lets a test wait for a count."""

    def __init__(self) -> None:
        self.claimed: list[ClaimedFile] = []
        self.errors: list[tuple[Path, str]] = []
        self._changed = asyncio.Event()

    def __call__(self, claimed: ClaimedFile) -> None:
        self.claimed.append(claimed)
        self._changed.set()

    def on_error(self, path: Path, reason: str) -> None:
        self.errors.append((path, reason))
        self._changed.set()

    async def wait(self, claims: int = 0, errors: int = 0) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(self.claimed) < claims or len(self.errors) < errors:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def running(
    watcher: InboxWatcher, collector: Collector, inbox: Path | None = None
) -> AsyncIterator[None]:
    """Run the watcher; with ``inbox``, return only once its native watch is live.

    A pre-existing file proves the start-up scan has listed the folder; a probe dropped
    after that (with rescans off) can then only be claimed through the watch. The
    pre-existing file is an hour old, so a long quiet window does not hold it.
    """
    if inbox is not None:
        old = time.time() - 3600
        os.utime(drop(inbox, "pre-probe.yaml"), (old, old))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(watcher.run(stop))
        try:
            if inbox is not None:
                await collector.wait(claims=1)
                for attempt in range(100):
                    drop(inbox, f"probe-{attempt}.yaml")
                    try:
                        await asyncio.wait_for(collector.wait(claims=2), 0.2)
                        break
                    except TimeoutError:
                        continue
                await collector.wait(claims=2)
                await asyncio.sleep(0.1)  # let any late probe be claimed before the reset
                collector.claimed.clear()
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, DEADLINE)


async def test_files_present_at_start_are_claimed(inbox: Path, spool: Spool) -> None:
    wanted = [drop(inbox, f"early{i}.yaml") for i in range(5)]
    (inbox / "skip.tmp").write_text("x")
    (inbox / "archive").mkdir()
    (inbox / "archive" / "old.yaml").write_text("x")
    collector = Collector()
    watcher = InboxWatcher([("main", inbox)], spool, collector, rescan_interval=None)
    async with running(watcher, collector):
        await collector.wait(claims=5)
    assert sorted(c.original for c in collector.claimed) == wanted
    assert sorted(os.listdir(inbox)) == ["archive", "skip.tmp"]
    assert (inbox / "archive" / "old.yaml").exists()


async def test_three_hundred_drops_exactly_once(inbox: Path, spool: Spool) -> None:
    collector = Collector()
    watcher = InboxWatcher(
        [("main", inbox)], spool, collector, rescan_interval=None, on_error=collector.on_error
    )
    async with running(watcher, collector, inbox):
        for i in range(300):
            (inbox / f".f{i}.yaml.tmp").write_text(f"n: {i}\n")
        for i in range(300):
            os.rename(inbox / f".f{i}.yaml.tmp", inbox / f"f{i}.yaml")
        await collector.wait(claims=300)
        await asyncio.sleep(0.2)  # a duplicate would show up within this
    originals = {c.original for c in collector.claimed}
    assert len(collector.claimed) == 300
    assert originals == {inbox / f"f{i}.yaml" for i in range(300)}
    assert all(c.spooled.read_text() == f"n: {c.original.stem[1:]}\n" for c in collector.claimed)
    assert collector.errors == []
    assert os.listdir(inbox) == []


async def test_a_file_written_slowly_is_claimed_once_complete(inbox: Path, spool: Spool) -> None:
    writer_done = threading.Event()
    seen: list[tuple[bool, bytes]] = []
    collector = Collector()

    def submit(claimed: ClaimedFile) -> None:
        if claimed.original.name == "slow.yaml":
            seen.append((writer_done.is_set(), claimed.spooled.read_bytes()))
        collector(claimed)

    def write() -> None:
        with (inbox / "slow.yaml").open("ab", buffering=0) as f:
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                f.write(b"# row\n")
                time.sleep(0.003)
        writer_done.set()

    # 40 ms of quiet needed: clear of a writer thread's scheduling hiccups.
    watcher = InboxWatcher(
        [("main", inbox)], spool, submit, stable_interval=0.02, rescan_interval=None
    )
    async with running(watcher, collector, inbox):
        thread = threading.Thread(target=write)
        thread.start()
        try:
            await collector.wait(claims=1)
        finally:
            thread.join(DEADLINE)
    assert len(seen) == 1
    done_at_claim, content = seen[0]
    assert done_at_claim, "claimed while the writer was still appending"
    assert content == (spool.dir / collector.claimed[0].spooled.name).read_bytes()
    assert len(content) >= 6 * 20  # it did write for a while


@pytest.mark.skipif(not inotify.available(), reason="completion is proven with inotify")
@pytest.mark.parametrize("how", ["renamed", "written in place"])
async def test_a_finished_file_is_claimed_without_the_quiet_window(
    inbox: Path, spool: Spool, how: str
) -> None:
    collector = Collector()
    # a 20 s quiet window: only inotify's word plus the lease can claim within the deadline
    watcher = InboxWatcher(
        [("main", inbox)], spool, collector, stable_interval=10.0, rescan_interval=None
    )
    async with running(watcher, collector, inbox):
        if how == "renamed":
            drop(inbox, "job.yaml", "n: 1\n")
        else:
            with (inbox / "job.yaml").open("w") as f:
                f.write("n: 1\n")
        async with asyncio.timeout(DEADLINE / 2):
            await collector.wait(claims=1)
    assert [c.original.name for c in collector.claimed] == ["job.yaml"]
    assert collector.claimed[0].spooled.read_text() == "n: 1\n"


async def test_a_file_renamed_in_while_still_open_waits_for_its_writer(
    inbox: Path, spool: Spool
) -> None:
    writer_done = threading.Event()
    seen: list[tuple[bool, bytes]] = []
    collector = Collector()

    def submit(claimed: ClaimedFile) -> None:
        if claimed.original.name == "held.yaml":
            seen.append((writer_done.is_set(), claimed.spooled.read_bytes()))
        collector(claimed)

    def write() -> None:
        # renamed in complete-looking, then written on through the descriptor it kept open,
        # with pauses far longer than the quiet window
        tmp = inbox / ".held.yaml.tmp"
        with tmp.open("ab", buffering=0) as f:
            f.write(b"# first\n")
            os.rename(tmp, inbox / "held.yaml")
            for _ in range(4):
                time.sleep(0.05)
                f.write(b"# more\n")
            writer_done.set()  # before the close: a claim may follow the close at once

    watcher = InboxWatcher([("main", inbox)], spool, submit, rescan_interval=None)
    async with running(watcher, collector, inbox):
        thread = threading.Thread(target=write)
        thread.start()
        try:
            await collector.wait(claims=1)
        finally:
            thread.join(DEADLINE)
    assert len(seen) == 1
    done_at_claim, content = seen[0]
    assert done_at_claim, "claimed while its writer still held it open"
    assert content == b"# first\n" + b"# more\n" * 4


async def test_ignored_names_are_left_alone(inbox: Path, spool: Spool) -> None:
    collector = Collector()
    watcher = InboxWatcher([("main", inbox)], spool, collector, rescan_interval=None)
    ignored = ["a.yaml.tmp", ".hidden.yaml", "b.yaml.part", "c.yaml.swp", "d.yaml~", "notes.txt"]
    async with running(watcher, collector, inbox):
        for name in ignored:
            (inbox / name).write_text("x")
        (inbox / "dir.yaml").mkdir()
        (inbox / "link.yaml").symlink_to(inbox / "notes.txt")
        (inbox / "sub").mkdir()
        (inbox / "sub" / "deep.yaml").write_text("x")
        (inbox / "r.yaml.result.json").write_text("{}")
        drop(inbox, "marker.yaml")  # the last change: once it is claimed, all were seen
        await collector.wait(claims=1)
        await asyncio.sleep(0.05)
    assert [c.original.name for c in collector.claimed] == ["marker.yaml"]
    expected = [*ignored, "dir.yaml", "link.yaml", "r.yaml.result.json", "sub"]
    assert sorted(os.listdir(inbox)) == sorted(expected)
    assert (inbox / "sub" / "deep.yaml").exists()


async def test_a_bad_file_does_not_stop_the_watcher(inbox: Path, spool: Spool) -> None:
    collector = Collector()

    def submit(claimed: ClaimedFile) -> None:
        if claimed.original.name == "explodes.yaml":
            raise RuntimeError("queue is full")
        collector(claimed)

    watcher = InboxWatcher(
        [("main", inbox)], spool, submit, rescan_interval=None, on_error=collector.on_error
    )
    async with running(watcher, collector, inbox):
        long_name = drop(inbox, "j" * 240 + ".yaml")
        await collector.wait(errors=1)
        drop(inbox, "explodes.yaml")
        await collector.wait(errors=2)
        drop(inbox, "fine.yaml")
        await collector.wait(claims=1)
    assert collector.errors[0][0] == long_name
    assert "too long" in collector.errors[0][1]
    assert collector.errors[1][0] == inbox / "explodes.yaml"
    assert "not submitted" in collector.errors[1][1] and "queue is full" in collector.errors[1][1]
    assert [c.original.name for c in collector.claimed] == ["fine.yaml"]
    assert long_name.exists()  # left for an operator to rename
    # explodes.yaml waits in the spool for recovery at the next start
    assert [c.original.name for c in spool.pending()].count("explodes.yaml") == 1


async def test_rescans_retry_quietly_until_the_claim_works(inbox: Path, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.dir.rmdir()  # someone removed the state folder under the daemon
    path = drop(inbox, "job.yaml")
    collector = Collector()
    watcher = InboxWatcher(
        [("main", inbox)], spool, collector, rescan_interval=0.02, on_error=collector.on_error
    )
    with capture_logs() as logs:
        async with running(watcher, collector):
            await collector.wait(errors=1)
            rescans = sum(log["event"] == "inbox_rescan" for log in logs)
            async with asyncio.timeout(DEADLINE):
                while sum(log["event"] == "inbox_rescan" for log in logs) < rescans + 3:
                    await asyncio.sleep(0.01)
            spool.dir.mkdir()  # no event in the inbox: only a rescan can notice
            await collector.wait(claims=1)
    assert collector.errors == [(path, f"the spool folder {spool.dir} is missing")]
    assert [c.original for c in collector.claimed] == [path]
    assert [log["event"] for log in logs].count("inbox_error") == 1


async def test_stop_ends_run_promptly(inbox: Path, spool: Spool) -> None:
    drop(inbox, "job.yaml")
    collector = Collector()
    watcher = InboxWatcher([("main", inbox)], spool, collector)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(watcher.run(stop))
        await collector.wait(claims=1)  # running: scanned, watching, waiting to rescan
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, DEADLINE)
    assert time.monotonic() - started < 0.5


async def test_missing_inbox_folder_and_duplicates(tmp_path: Path, spool: Spool) -> None:
    watcher = InboxWatcher([("main", tmp_path / "nope")], spool, Collector())
    with pytest.raises(DaemonError, match="nope"):
        await watcher.run(asyncio.Event())
    with pytest.raises(ValueError, match="twice"):
        InboxWatcher([("a", tmp_path), ("b", tmp_path)], spool, Collector())
    with pytest.raises(ValueError, match="bad inbox name"):
        InboxWatcher([("a--b", tmp_path)], spool, Collector())


def test_claim_names_left_in_the_inbox_are_restored(inbox: Path, spool: Spool) -> None:
    held = inbox / ".job.yaml.20261207T101112123456Z-abc123.claiming"
    held.write_text("name: job\n")
    taken = inbox / ".other.yaml.20261207T101112123456Z-def456.claiming"
    taken.write_text("left\n")
    (inbox / "other.yaml").write_text("dropped again meanwhile\n")
    (inbox / ".notes.claiming").write_text("not a claim name\n")
    assert spool.restore_claims(inbox) == [inbox / "job.yaml"]
    assert (inbox / "job.yaml").read_text() == "name: job\n" and not held.exists()
    assert taken.exists() and (inbox / "other.yaml").read_text() == "dropped again meanwhile\n"
    assert (inbox / ".notes.claiming").exists()
