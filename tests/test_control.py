"""The control socket against a real daemon: in-process for the protocol, and the real
``flowtaskd`` CLI (and once a real daemon process) as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from flowtaskd import logs
from flowtaskd.daemon.config.load import DaemonConfig, load_config
from flowtaskd.daemon.control.server import MAX_LINE, ControlServer
from flowtaskd.daemon.service import Daemon
from tests.conftest import pid_alive, wait_for, wait_for_sync, write

DEADLINE = 15.0
TWO = "name: two\ndescription: two quick steps\nsteps:\n  - Dummy: {message: hi}\n  - Dummy: {}\n"
FAIL = "name: fail\nsteps:\n  - Command: {command: ['false']}\n"
SCHEDULED = "name: nightly\nschedule: '0 3 * * *'\nsteps:\n  - Dummy: {}\n"
BROKEN = "name: broken\nsteps:\n  - Dummy: {}\n  - Nope: {}\n"
RUN_EVENTS = [
    "run_queued",
    "start",
    "running",
    "step_start",
    "step_done",
    "step_start",
    "step_done",
    "done",
    "completed",
]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    logs.reset_logging()  # the in-process daemon configured logging for the whole process


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short folder for sockets (sun_path holds 107 bytes; tmp_path can be longer)."""
    path = Path(tempfile.mkdtemp(prefix="ftd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config_file(tmp_path: Path, sock_dir: Path) -> Path:
    tasks = tmp_path / "tasks"
    write(tasks / "two.yaml", TWO)
    write(tasks / "fail.yaml", FAIL)
    write(tasks / "nightly.yaml", SCHEDULED)
    write(tasks / "broken.yaml", BROKEN)
    pidfile = tmp_path / "sleeper.pid"
    write(
        tasks / "sleeper.yaml",
        "name: sleeper\nsteps:\n  - Command:\n      command: [sh, -c,"
        f" 'echo $$ > {pidfile}; exec sleep 60']\n",
    )
    many = "".join("  - Dummy: {}\n" for _ in range(200))
    write(tasks / "many.yaml", f"name: many\nsteps:\n{many}")
    return write(
        tmp_path / "flowtaskd.yaml",
        (
            f"state_dir: {tmp_path / 'var'}\ntasks: [{tasks}]\n"
            f"control: {{socket: {sock_dir / 'control.sock'}, mode: '0640'}}\n"
            "log: {level: warning}\nshutdown_grace: 2\nkill_grace: 1\nweb: false\n"
        ),
    )


@pytest.fixture
def config(config_file: Path, tmp_path: Path) -> DaemonConfig:
    return load_config(config_file, cwd=tmp_path, environ={})


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@asynccontextmanager
async def running(config: DaemonConfig, **control: Any) -> AsyncIterator[Daemon]:
    """A real daemon in this process; ``control`` overrides the ControlServer's settings."""
    daemon = Daemon(config)
    if control:
        daemon.extensions = [e for e in daemon.extensions if not isinstance(e, ControlServer)]
        daemon.extensions.append(ControlServer(daemon, **control))
    task = asyncio.create_task(daemon.run())
    path = config.control.socket
    try:
        await wait_for(lambda: task.done() or _answers(path), DEADLINE)
        if task.done():
            task.result()
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, DEADLINE)
    assert not path.exists()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * MAX_LINE)
        return cls(reader, writer)

    async def send(self, request: dict[str, Any] | bytes) -> None:
        data = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), DEADLINE)
        assert line, "the daemon closed the connection"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def ask(self, request: dict[str, Any] | bytes) -> dict[str, Any]:
        await self.send(request)
        return await self.recv()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@asynccontextmanager
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    c = await Client.open(daemon.config.control.socket)
    try:
        yield c
    finally:
        await c.close()


async def _history(c: Client, run_id: str) -> dict[str, Any] | None:
    reply = await c.ask({"cmd": "history", "n": 50})
    assert reply["ok"], reply
    return next((r for r in reply["runs"] if r["run_id"] == run_id), None)


async def _finished(c: Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        run = await _history(c, run_id)
        if run is not None and run["status"] not in ("pending", "running"):
            return run
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish within {DEADLINE}s")


# --- protocol -------------------------------------------------------------------------------


async def test_status_and_tasks(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as c:
        assert stat.S_IMODE(os.stat(config.control.socket).st_mode) == 0o640
        st = await c.ask({"cmd": "status"})
        assert st["ok"] and st["pid"] == os.getpid() and st["version"]
        assert (st["tasks"], st["invalid"]) == (5, 1)
        assert st["state_dir"] == str(config.state_dir) and st["uptime"] >= 0
        assert st["runs"] == {
            "active": [],
            "active_count": 0,
            "queued": [],
            "queued_count": 0,
            "queued_truncated": False,
            "completed": 0,
        }
        assert st["next_fire_times"]["task:nightly:0"].endswith("03:00:00+00:00")
        assert st["control"]["connections"] == 1
        reply = await c.ask({"cmd": "tasks"})
        by_name = {t["name"]: t for t in reply["tasks"]}
        assert sorted(by_name) == ["fail", "many", "nightly", "sleeper", "two"]
        assert by_name["two"] == {
            "name": "two",
            "file": str(config.tasks[0] / "two.yaml"),
            "steps": 2,
            "schedules": [],
            "description": "two quick steps",
            "paused": False,
        }
        assert by_name["nightly"]["schedules"] == ["0 3 * * *"]
        [bad] = reply["invalid"]
        assert bad["file"].endswith("broken.yaml")
        assert bad["problems"][0]["line"] == 4 and "Nope" in bad["problems"][0]["message"]


async def test_trigger_runs_and_history_records_it(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as c:
        reply = await c.ask({"cmd": "trigger", "task": "two", "params": {"who": "me"}})
        assert reply["ok"] and set(reply) == {"ok", "run_id", "log_dir"}
        assert reply["log_dir"] == str(config.state_dir / "logs" / "two" / reply["run_id"])
        run = await _finished(c, reply["run_id"])
        assert (run["task"], run["status"], run["trigger"]) == ("two", "done", "manual")
        assert run["params"] == {"who": "me"} and "stats" not in run


async def test_trigger_wait_replies_when_the_run_ends(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as c:
        first = await c.ask({"cmd": "trigger", "task": "two", "wait": True})
        end = await c.recv()
        assert end["ok"] and end["run_id"] == first["run_id"] and end["status"] == "done"
        assert end["stats"]["steps"]["Dummy_1"]["output"] == "hi"
        first = await c.ask({"cmd": "trigger", "task": "fail", "wait": True})
        end = await c.recv()
        assert (end["run_id"], end["status"]) == (first["run_id"], "failed")
        assert "Command_1" in end["error"]
        assert (await c.ask({"cmd": "status"}))["runs"]["completed"] == 2  # still usable


async def test_a_subscriber_sees_the_ordered_events_of_a_run(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as sub, client(daemon) as only_end:
        reply = await sub.ask({"cmd": "subscribe", "task": "two"})
        assert reply == {"ok": True, "subscribed": {"events": "*", "task": "two"}}
        reply = await only_end.ask({"cmd": "subscribe", "events": ["completed"]})
        assert reply["subscribed"]["events"] == ["completed"]
        async with client(daemon) as c:
            await c.ask({"cmd": "trigger", "task": "fail"})  # another task: filtered out
            run_id = (await c.ask({"cmd": "trigger", "task": "two"}))["run_id"]
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["event"] != "completed":
            seen.append(await sub.recv())
        assert [e["event"] for e in seen] == RUN_EVENTS
        assert {e["run_id"] for e in seen} == {run_id} and {e["task"] for e in seen} == {"two"}
        assert [e["step"] for e in seen if e["event"].startswith("step")] == [
            "Dummy_1",
            "Dummy_1",
            "Dummy_2",
            "Dummy_2",
        ]
        assert [e["ts"] for e in seen] == sorted(e["ts"] for e in seen)
        ends = [await only_end.recv(), await only_end.recv()]
        assert sorted(e["task"] for e in ends) == ["fail", "two"]
        assert {e["event"] for e in ends} == {"completed"}


async def test_a_stuck_subscriber_is_dropped_and_slows_nothing(config: DaemonConfig) -> None:
    async with running(config, queue_size=100, write_timeout=60.0) as daemon, client(daemon) as c:
        path = config.control.socket
        stuck = socket.socket(socket.AF_UNIX)  # subscribes, then never reads
        stuck.connect(str(path))
        stuck.sendall(b'{"cmd": "subscribe"}\n')
        await wait_for(lambda: _control_of(daemon).subscribers == 1, DEADLINE)
        blob = "x" * 600_000  # its start event fills the stuck client's socket and buffers
        first = await c.ask(
            {"cmd": "trigger", "task": "two", "params": {"blob": blob}, "wait": True}
        )
        assert (await c.recv())["status"] == "done"
        assert _control_of(daemon).dropped == 0  # not yet: its socket and buffer hold them

        good = socket.socket(socket.AF_UNIX)  # a prompt reader, in its own thread
        good.settimeout(DEADLINE)
        good.connect(str(path))
        good.sendall(b'{"cmd": "subscribe", "task": "many"}\n')
        good_lines = good.makefile("rb")
        assert json.loads(await asyncio.to_thread(good_lines.readline))["ok"]

        def read_run() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = []
            while not events or events[-1]["event"] != "completed":
                events.append(json.loads(good_lines.readline()))
            return events

        reader = asyncio.create_task(asyncio.to_thread(read_run))
        started = time.monotonic()
        run_id = (await c.ask({"cmd": "trigger", "task": "many"}))["run_id"]
        events = await asyncio.wait_for(reader, DEADLINE)
        took = time.monotonic() - started
        steps = ["step_start", "step_done"] * 200
        assert [e["event"] for e in events] == [
            "run_queued",
            "start",
            "running",
            *steps,
            "done",
            "completed",
        ]
        assert {e["run_id"] for e in events} == {run_id}
        assert took < 5.0 and events[-1]["stats"]["duration"] < 5.0
        st = await c.ask({"cmd": "status"})
        assert st["control"]["dropped_subscribers"] == 1
        assert st["control"]["subscribers"] == 1
        stuck.settimeout(DEADLINE)
        received = b""
        while chunk := stuck.recv(1 << 20):  # what was sent before the drop, then EOF
            received += chunk
        assert (
            json.loads(received.split(b"\n", 1)[0])["ok"] is True
            and first["run_id"].encode() in received
        )
        assert run_id.encode() not in received
        stuck.close()
        good_lines.close()
        good.close()


async def _stuck_subscriber(config: DaemonConfig, server: ControlServer) -> socket.socket:
    """A client that subscribes, then never reads."""
    stuck = socket.socket(socket.AF_UNIX)
    stuck.connect(str(config.control.socket))
    stuck.sendall(b'{"cmd": "subscribe"}\n')
    await wait_for(lambda: server.subscribers == 1, DEADLINE)
    return stuck


def _control_of(daemon: Daemon) -> ControlServer:
    return next(e for e in daemon.extensions if isinstance(e, ControlServer))


async def test_a_subscriber_over_its_byte_bound_is_dropped(config: DaemonConfig) -> None:
    control = {"buffer_bytes": 1_000_000, "queue_size": 100_000, "write_timeout": 60.0}
    async with running(config, **control) as daemon, client(daemon) as c:
        server = _control_of(daemon)
        with await _stuck_subscriber(config, server) as stuck:
            # some events of a run carry its params (100 kB): a run is a few hundred kB the
            # client never reads; its socket takes some, the rest counts against the bound
            request = {"cmd": "trigger", "task": "two", "params": {"blob": "x" * 100_000}}
            await c.ask({**request, "wait": True})
            assert (await c.recv())["status"] == "done"
            assert server.dropped == 0  # one run is well within the bound
            for _ in range(30):  # ~10 MB in all: far over the bound
                await c.ask({**request, "wait": True})
                assert (await c.recv())["status"] == "done"
            await wait_for(lambda: server.dropped == 1, DEADLINE)  # at the latest, a flush on
            st = await c.ask({"cmd": "status"})
            assert st["control"]["dropped_subscribers"] == 1
            assert st["control"]["subscribers"] == 0 and server.stream_backlog() == 0
            stuck.settimeout(DEADLINE)
            while stuck.recv(1 << 20):  # what was sent before the drop, then EOF
                pass


async def test_a_burst_waits_for_the_flush_delay_and_the_stop_flushes_it(
    config: DaemonConfig,
) -> None:
    async with running(config, flush_delay=60.0) as daemon:
        sub = await Client.open(config.control.socket)
        try:
            assert (await sub.ask({"cmd": "subscribe", "task": "two"}))["ok"]
            async with client(daemon) as c:
                await c.ask({"cmd": "trigger", "task": "two", "wait": True})
                assert (await c.recv())["status"] == "done"
            # the first event after a quiet spell goes out at once; the rest wait for the
            # next write, 60 s on (or a half-full buffer, or the stop)
            assert (await sub.recv())["event"] == "run_queued"
            waiting = _control_of(daemon).stream_backlog()
            assert 1 <= waiting <= len(RUN_EVENTS) - 1
            daemon.request_stop()
            rest = sub.reader.read()  # everything buffered, then the end
            lines = (await asyncio.wait_for(rest, DEADLINE)).splitlines()
            names = [json.loads(line)["event"] for line in lines]
            assert names[-waiting:] == RUN_EVENTS[-waiting:] and names[-1] == "completed"
            assert ["run_queued", *names] == RUN_EVENTS
        finally:
            await sub.close()


async def test_a_stream_gets_only_what_came_after_it_subscribed(config: DaemonConfig) -> None:
    async with running(config, flush_delay=60.0) as daemon:  # nothing goes out before stop
        early, late = await Client.open(config.control.socket), None
        try:
            assert (await early.ask({"cmd": "subscribe"}))["ok"]
            async with client(daemon) as c:
                await c.ask({"cmd": "trigger", "task": "two", "wait": True})
                first = (await c.recv())["run_id"]
                late = await Client.open(config.control.socket)
                assert (await late.ask({"cmd": "subscribe"}))["ok"]  # joins mid-batch
                await c.ask({"cmd": "trigger", "task": "two", "wait": True})
                second = (await c.recv())["run_id"]
            daemon.request_stop()
            got = {}
            for name, sub in (("early", early), ("late", late)):
                data = await asyncio.wait_for(sub.reader.read(), DEADLINE)
                got[name] = [json.loads(line) for line in data.splitlines()]
            runs_of = {k: [e.get("run_id") for e in v if e.get("run_id")] for k, v in got.items()}
            assert set(runs_of["early"]) == {first, second}
            assert set(runs_of["late"]) == {second}
            of_second = [e["event"] for e in got["late"] if e.get("run_id") == second]
            assert of_second == RUN_EVENTS
        finally:
            await early.close()
            if late is not None:
                await late.close()


async def test_a_subscriber_that_stops_reading_is_dropped_after_the_write_timeout(
    config: DaemonConfig,
) -> None:
    control = {"write_timeout": 0.5, "queue_size": 100_000, "buffer_bytes": 1 << 30}
    async with running(config, **control) as daemon, client(daemon) as c:
        server = _control_of(daemon)
        with await _stuck_subscriber(config, server):
            request = {"cmd": "trigger", "task": "two", "params": {"blob": "x" * 900_000}}
            await c.ask({**request, "wait": True})  # fills its socket and transport
            assert (await c.recv())["status"] == "done"
            await c.ask({"cmd": "trigger", "task": "two", "wait": True})  # must wait: held
            assert (await c.recv())["status"] == "done"
            # no bound is near: only the time it has held events drops it
            await wait_for(lambda: server.dropped == 1, DEADLINE)
            await wait_for(lambda: server.subscribers == 0, DEADLINE)  # its connection closes


async def test_at_stop_a_subscriber_behind_gets_what_it_was_held_in_order(
    config: DaemonConfig,
) -> None:
    control = {"queue_size": 100_000, "write_timeout": 60.0, "stop_grace": 10.0}
    async with running(config, **control) as daemon, client(daemon) as c:
        server = _control_of(daemon)
        with await _stuck_subscriber(config, server) as behind:
            big = {"cmd": "trigger", "task": "two", "params": {"blob": "x" * 900_000}}
            await c.ask({**big, "wait": True})  # more than its socket takes: it is behind
            first = (await c.recv())["run_id"]  # (some of its events may be held already:
            # how many a flush takes depends on how fast the run goes, so it is not asserted)
            await c.ask({"cmd": "trigger", "task": "two", "wait": True})
            second = (await c.recv())["run_id"]
            await wait_for(lambda: server.stream_backlog() > 0, DEADLINE)  # held
            daemon.request_stop()

            def read_all() -> bytes:
                behind.settimeout(DEADLINE)
                data = b""
                while chunk := behind.recv(1 << 20):
                    data += chunk
                return data

            data = await asyncio.to_thread(read_all)
    events = [json.loads(line) for line in data.splitlines()[1:]]
    runs = [e["run_id"] for e in events if e.get("run_id") in (first, second)]
    assert runs == [first] * len(RUN_EVENTS) + [second] * len(RUN_EVENTS)
    assert [e["event"] for e in events if e.get("run_id") == second] == RUN_EVENTS


async def test_a_slow_reader_catches_up_without_losing_anything(config: DaemonConfig) -> None:
    async with running(config, queue_size=100_000, write_timeout=30.0) as daemon:
        server = _control_of(daemon)
        slow = socket.socket(socket.AF_UNIX)
        slow.settimeout(DEADLINE)
        slow.connect(str(config.control.socket))
        slow.sendall(b'{"cmd": "subscribe", "task": "many"}\n')
        await wait_for(lambda: server.subscribers == 1, DEADLINE)

        def read_slowly() -> list[dict[str, Any]]:
            lines, buf = [], b""
            while not lines or lines[-1].get("event") != "completed":
                buf += slow.recv(4096)  # small reads with pauses: behind for most of the run
                time.sleep(0.002)
                *done, buf = buf.split(b"\n")
                lines.extend(json.loads(line) for line in done)
            return lines

        reader = asyncio.create_task(asyncio.to_thread(read_slowly))
        async with client(daemon) as c:
            await c.ask({"cmd": "trigger", "task": "many", "params": {"pad": "y" * 2000}})
            lines = await asyncio.wait_for(reader, 60)
        slow.close()
        assert lines[0]["ok"] is True
        events = [e["event"] for e in lines[1:]]
        assert events == ["run_queued", "start", "running", *["step_start", "step_done"] * 200,
                          "done", "completed"]  # fmt: skip
        assert server.dropped == 0


async def test_subscribers_with_different_filters_each_get_their_share(
    config: DaemonConfig,
) -> None:
    async with running(config, queue_size=1000) as daemon:
        subs = [await Client.open(config.control.socket) for _ in range(3)]
        try:
            requests: list[dict[str, Any]] = [
                {"cmd": "subscribe"},
                {"cmd": "subscribe", "task": "many", "events": ["step_done", "completed"]},
                {"cmd": "subscribe", "task": "two", "events": ["*"]},
            ]
            for sub, request in zip(subs, requests, strict=True):
                assert (await sub.ask(request))["ok"]
            async with client(daemon) as c:
                many = (await c.ask({"cmd": "trigger", "task": "many"}))["run_id"]
                await c.ask({"cmd": "trigger", "task": "two", "wait": True})
                two = (await c.recv())["run_id"]
                await _finished(c, many)

            async def until_both_completed(sub: Client) -> list[dict[str, Any]]:
                seen: list[dict[str, Any]] = []
                while sum(e["event"] == "completed" for e in seen) < 2:
                    seen.append(await sub.recv())
                return seen

            everything = await until_both_completed(subs[0])
            # (on a busy machine the subscription can even come before daemon_ready)
            everything = [e for e in everything if e.get("run_id")]
            assert len(everything) == (3 + 400 + 2) + len(RUN_EVENTS)
            of_many = [e for e in everything if e["run_id"] == many]
            assert [e["step"] for e in of_many if e["event"] == "step_done"] == [
                f"Dummy_{i}" for i in range(1, 201)
            ]
            filtered: list[dict[str, Any]] = []
            while not filtered or filtered[-1]["event"] != "completed":
                filtered.append(await subs[1].recv())
            assert filtered == [e for e in of_many if e["event"] in ("step_done", "completed")]
            of_two: list[dict[str, Any]] = []
            while not of_two or of_two[-1]["event"] != "completed":
                of_two.append(await subs[2].recv())
            assert [e["event"] for e in of_two] == RUN_EVENTS
            assert {e["run_id"] for e in of_two} == {two}
        finally:
            for sub in subs:
                await sub.close()


async def test_malformed_requests_get_errors_and_the_connection_stays(
    config: DaemonConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(config) as daemon, client(daemon) as c:
        cases: list[tuple[bytes | dict[str, Any], str]] = [
            (b"not json\n", "not JSON"),
            (b"\xff\xfe\x00\n", "not JSON"),
            (b"[1, 2]\n", "got an array"),
            ({"cmd": "stauts"}, "did you mean 'status'?"),
            ({"cmd": 3}, '"cmd" names the request'),
            ({"task": "two"}, "it is missing"),
            ({"cmd": "status", "tsk": 1}, "status takes no field 'tsk'"),
            ({"cmd": "trigger", "tsk": "two"}, "did you mean 'task'?"),
            ({"cmd": "trigger"}, "'task' must be a non-empty string; it is missing"),
            ({"cmd": "trigger", "task": "two", "params": [1]}, "'params' must be an object"),
            ({"cmd": "trigger", "task": "two", "wait": "yes"}, "'wait' must be true or false"),
            ({"cmd": "trigger", "task": "nope"}, "no task named 'nope' is loaded"),
            ({"cmd": "cancel", "run_id": "zzz"}, "no such running or queued run"),
            ({"cmd": "history", "n": 0}, "'n' must be a whole number"),
            ({"cmd": "subscribe", "events": ["complete"]}, "did you mean 'completed'?"),
            ({"cmd": "subscribe", "events": []}, "non-empty array"),
        ]
        for request, message in cases:
            reply = await c.ask(request)
            assert reply["ok"] is False and message in reply["error"], (request, reply)
        await c.send(b"\n  \n")  # blank lines are ignored
        assert (await c.ask({"cmd": "status"}))["ok"]

        def boom() -> dict[str, str]:
            raise RuntimeError("boom")

        monkeypatch.setattr(daemon.scheduler, "next_fire_times", boom)  # an internal failure
        reply = await c.ask({"cmd": "status"})
        assert reply == {"ok": False, "error": "internal error in status: RuntimeError: boom"}
        assert (await c.ask({"cmd": "tasks"}))["ok"]
        await c.send(b'{"cmd": "status", "pad": "' + b"x" * MAX_LINE + b'"}\n')
        reply = await c.recv()
        assert reply["ok"] is False and "longer than" in reply["error"]
        assert await asyncio.wait_for(c.reader.read(), DEADLINE) == b""  # closed
    assert daemon.runs.completed == 0


async def test_cancel_kills_a_running_step(config: DaemonConfig, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    async with running(config) as daemon, client(daemon) as c:
        first = await c.ask({"cmd": "trigger", "task": "sleeper", "wait": True})
        async with client(daemon) as other:
            await wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), DEADLINE)
            pid = int(pidfile.read_text())
            assert pid_alive(pid)
            reply = await other.ask({"cmd": "cancel", "run_id": first["run_id"][:12]})
            assert reply == {"ok": True, "run_id": first["run_id"], "was": "running"}
            end = await c.recv()
            assert (end["run_id"], end["status"]) == (first["run_id"], "cancelled")
            await wait_for(lambda: not pid_alive(pid), DEADLINE)
            assert (await other.ask({"cmd": "cancel", "run_id": first["run_id"]}))["ok"] is False


async def test_reload_picks_up_a_new_task(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as c:
        write(config.tasks[0] / "late.yaml", "name: late\nsteps:\n  - Dummy: {}\n")
        reply = await c.ask({"cmd": "reload"})
        assert reply["ok"] and reply["tasks"] == 6
        assert "late" in daemon.library.tasks


async def test_streams_and_waiting_triggers_outlive_the_drain(config: DaemonConfig) -> None:
    async with running(config) as daemon, client(daemon) as sub, client(daemon) as waiting:
        request = {"cmd": "subscribe", "events": ["daemon_stopping", "completed"]}
        assert (await sub.ask(request))["ok"]
        first = await waiting.ask({"cmd": "trigger", "task": "sleeper", "wait": True})
        await wait_for(lambda: first["run_id"] in daemon.runs.active, DEADLINE)
        daemon.request_stop()
        assert (await sub.recv())["event"] == "daemon_stopping"
        daemon.request_stop()  # a second signal: the drain cancels the run now
        end = await waiting.recv()
        assert (end["run_id"], end["status"]) == (first["run_id"], "cancelled")
        last = await sub.recv()
        assert (last["event"], last["run_id"]) == ("completed", first["run_id"])
        assert await asyncio.wait_for(sub.reader.read(), DEADLINE) == b""  # then closed
        assert await asyncio.wait_for(waiting.reader.read(), DEADLINE) == b""


# --- the CLI --------------------------------------------------------------------------------


async def cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowtaskd",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_commands(config: DaemonConfig, config_file: Path) -> None:
    sock = str(config.control.socket)
    async with running(config) as daemon:
        code, out, err = await cli("status", "--config", str(config_file))
        assert code == 0 and "tasks: 5 loaded, 1 invalid" in out, err
        code, out, _ = await cli("tasks", "--socket", sock)
        assert code == 0 and "two" in out and "0 3 * * *" in out and "broken.yaml" in out
        code, out, _ = await cli("tasks", "--socket", sock, "--json")
        assert code == 0 and len(json.loads(out)["tasks"]) == 5

        code, out, _ = await cli(
            "trigger", "two", "--wait", "-p", "who=me", "-p", "n:=3", "--socket", sock
        )
        run_id = out.splitlines()[0]
        assert code == 0 and f"run {run_id} done" in out
        found = await asyncio.to_thread(daemon.store.get_run, run_id)
        assert found is not None and found[0].params == {"who": "me", "n": 3}
        code, out, _ = await cli("trigger", "fail", "--wait", "--json", "--socket", sock)
        assert code == 1 and json.loads(out.splitlines()[1])["status"] == "failed"
        code, out, err = await cli("trigger", "nope", "--socket", sock)
        assert (code, out) == (1, "")  # refused: the exit code table's 1
        assert err == "flowtaskd: no task named 'nope' is loaded\n"
        code, out, err = await cli("trigger", "tow", "--socket", sock)
        assert (code, err) == (1, "flowtaskd: no task named 'tow' is loaded; did you mean 'two'?\n")
        code, out, err = await cli("trigger", "broken", "--socket", sock)
        assert code == 1 and err.startswith("flowtaskd: no task named 'broken' is loaded: its file")
        assert err.endswith("broken.yaml is invalid (flowtaskd tasks shows why)\n")
        code, _, err = await cli("trigger", "two", "-p", "novalue", "--socket", sock)
        assert code == 2 and "KEY=VALUE" in err

        code, out, _ = await cli("trigger", "sleeper", "--socket", sock)
        assert code == 0
        await wait_for(lambda: out.strip() in daemon.runs.active, DEADLINE)
        code, out, _ = await cli("cancel", out.strip(), "--socket", sock)
        assert code == 0 and "(it was running)" in out
        code, out, _ = await cli("reload", "--socket", sock)
        assert code == 0
        assert (
            out == "reloaded: 5 tasks loaded, 1 invalid file (flowtaskd tasks shows the problems)\n"
        )


async def test_cli_events_streams_until_interrupted(config: DaemonConfig) -> None:
    sock = str(config.control.socket)
    async with running(config) as daemon:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowtaskd",
            "events",
            "--json",
            "--task",
            "two",
            "--event",
            "start,step_done",
            "--event",
            "completed",
            "--socket",
            sock,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_for(lambda: _control_of(daemon).subscribers == 1, DEADLINE)
            _, out, _ = await cli("trigger", "two", "--socket", sock)
            names: list[str] = []
            while not names or names[-1] != "completed":
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE)
                event = json.loads(line)
                assert event["run_id"] == out.strip()
                names.append(event["event"])
            assert names == ["start", "step_done", "step_done", "completed"]
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), DEADLINE) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def _run_cli(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowtaskd", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        **kwargs,
    )


def test_cli_without_a_daemon(sock_dir: Path, tmp_path: Path) -> None:
    path = sock_dir / "control.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # a socket file nobody listens on
        stale.bind(str(path))
    for args in (
        ["status", "--socket", str(path)],
        ["events", "--socket", str(sock_dir / "nothing.sock")],
        ["trigger", "two", "--wait", "--socket", str(path)],
    ):
        done = _run_cli(args, cwd=tmp_path)
        where = args[-1]
        assert (done.returncode, done.stdout) == (3, ""), done  # 3: the daemon is not reachable
        assert done.stderr == f"flowtaskd: cannot reach the daemon at {where} (is it running?)\n"
    # without --socket: the default socket of the default config (./var/control.sock)
    done = _run_cli(
        ["status"],
        cwd=tmp_path,
        env={**os.environ, "STATE_DIRECTORY": "", "RUNTIME_DIRECTORY": ""},
    )
    assert done.returncode == 3
    assert done.stderr == (
        f"flowtaskd: cannot reach the daemon at {tmp_path / 'var'}/control.sock (is it running?)\n"
    )


@pytest.mark.e2e
def test_a_daemon_process_serves_the_cli_and_cleans_up(
    config_file: Path, config: DaemonConfig, tmp_path: Path
) -> None:
    path = config.control.socket
    with socket.socket(socket.AF_UNIX) as stale:  # left by a crash: replaced at start
        stale.bind(str(path))
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "flowtaskd", "run", "--config", str(config_file)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_sync(lambda: daemon.poll() is not None or _answers(path), DEADLINE)
        assert daemon.poll() is None, log.read_text()
        done = _run_cli(["trigger", "two", "--wait", "--config", str(config_file)], cwd=tmp_path)
        assert done.returncode == 0 and " done in " in done.stdout, done.stderr
        done = _run_cli(["status", "--config", str(config_file)], cwd=tmp_path)
        assert done.returncode == 0 and f"pid {daemon.pid}," in done.stdout
        assert "1 finished since start" in done.stdout
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(DEADLINE) == 0
        assert not path.exists()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


async def test_status_shows_the_head_of_a_long_queue_and_runs_pages_through_it(
    config: DaemonConfig,
) -> None:
    from flowtaskd.core.options import Overlap  # noqa: PLC0415
    from flowtaskd.daemon.runs.manager import RunRequest  # noqa: PLC0415

    async with running(config) as daemon, client(daemon) as c:
        daemon.runs.max_runs = 0  # nothing starts: everything stays queued
        loaded = daemon.library.get("two")
        assert loaded is not None
        ids = [
            daemon.runs.submit(RunRequest(loaded.pile, "manual", overlap=Overlap.QUEUE))
            for _ in range(250)
        ]
        runs = (await c.ask({"cmd": "status"}))["runs"]
        assert runs["queued_count"] == 250 and runs["queued_truncated"] is True
        assert [r["run_id"] for r in runs["queued"]] == ids[:20]
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await c.ask({"cmd": "runs", "offset": offset, "limit": 100})
            assert page["ok"] is True and page["queued_count"] == 250
            seen += [r["run_id"] for r in page["queued"]]
            offset = page["next_offset"]
        assert seen == ids
        bad = await c.ask({"cmd": "runs", "limit": 0})
        assert bad["ok"] is False and "'limit'" in bad["error"]
