"""EventBus: strong refs, isolation, bounded async delivery, filters, lifecycle."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from typing import Any

import blinker
import pytest
import structlog
from structlog.testing import capture_logs

from flowtaskd.engine.events import (
    ALL_EVENTS,
    DAEMON_EVENTS,
    STEP_EVENTS,
    TASK_EVENTS,
    UPSTREAM_EVENTS,
    EventBus,
)
from tests.conftest import FakeClock, wait_for


@pytest.fixture(autouse=True)
def _reset_structlog() -> Any:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_event_names() -> None:
    assert TASK_EVENTS == (
        "start",
        "running",
        "done",
        "on_error",
        "exception",
        "completed",
        "cancelled",
    )  # upstream flowtask names
    assert ALL_EVENTS == TASK_EVENTS + STEP_EVENTS + UPSTREAM_EVENTS + DAEMON_EVENTS
    assert len(set(ALL_EVENTS)) == len(ALL_EVENTS)
    assert "*" not in ALL_EVENTS


def test_lambda_receiver_is_held_strongly() -> None:
    bus = EventBus()
    got: list[str] = []
    bus.connect("done", lambda p: got.append(p["task"]))
    gc.collect()
    bus.emit("done", {"task": "t"})
    assert got == ["t"]


def test_payload_is_stamped_copied_and_isolated() -> None:
    clock = FakeClock(1234.5)
    bus = EventBus(clock=clock)
    seen: list[dict[str, Any]] = []

    def mutator(p: dict[str, Any]) -> None:
        p["task"] = "mutated"
        p["extra"] = 1

    bus.connect("start", mutator)
    bus.connect("start", seen.append)
    original = {"task": "t", "run_id": "r1"}
    bus.emit("start", original)
    assert original == {"task": "t", "run_id": "r1"}  # caller's dict untouched
    assert seen == [{"event": "start", "ts": 1234.5, "task": "t", "run_id": "r1"}]

    bus.emit("start", {"task": "t", "ts": 1.0})  # an explicit ts is kept
    assert seen[-1]["ts"] == 1.0


def test_raising_sync_receiver_is_isolated_logged_and_counted() -> None:
    bus = EventBus()
    got: list[str] = []

    def boom(p: dict[str, Any]) -> None:
        raise RuntimeError("receiver broke")

    bus.connect("done", boom)
    bus.connect("done", lambda p: got.append(p["task"]))
    with capture_logs() as logs:
        bus.emit("done", {"task": "a"})
        bus.emit("done", {"task": "b"})
    assert got == ["a", "b"]
    assert bus.receiver_errors == 2
    failed = [e for e in logs if e["event"] == "receiver_failed"]
    assert len(failed) == 2
    assert failed[0]["receiver"].endswith("boom")
    assert "receiver broke" in failed[0]["error"]
    assert failed[0]["signal"] == "done"


def test_sync_receiver_returning_a_coroutine_is_an_error() -> None:
    bus = EventBus()

    async def real(p: dict[str, Any]) -> None:
        return None

    def wrapper(p: dict[str, Any]) -> Any:
        return real(p)  # a sync wrapper: nobody would ever await this coroutine

    bus.connect("done", wrapper)
    with capture_logs():
        bus.emit("done", {})
    assert bus.receiver_errors == 1  # and no "never awaited" RuntimeWarning (warnings=error)


async def test_sync_and_async_receivers_on_one_signal() -> None:
    bus = EventBus()
    sync_got: list[dict[str, Any]] = []
    async_got: list[str] = []

    async def areceiver(p: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        async_got.append(p["task"])

    bus.connect("step_done", sync_got.append)
    bus.connect("step_done", areceiver)
    async with bus:
        bus.emit("step_done", {"task": "x"})
        assert len(sync_got) == 1  # inline
        assert async_got == []  # not awaited by emit
        await wait_for(lambda: async_got == ["x"], timeout=5.0, interval=0.001)


async def test_async_callable_objects_and_partials_are_detected() -> None:
    got: list[tuple[str, str]] = []

    class Sink:
        async def __call__(self, p: dict[str, Any]) -> None:
            got.append(("obj", p["event"]))

    async def tagged(tag: str, p: dict[str, Any]) -> None:
        got.append((tag, p["event"]))

    bus = EventBus()
    bus.connect("done", Sink())
    bus.connect("done", functools.partial(tagged, "partial"))
    async with bus:
        bus.emit("done", {})
        await wait_for(lambda: len(got) == 2, timeout=5.0, interval=0.001)
    assert sorted(got) == [("obj", "done"), ("partial", "done")]
    assert bus.receiver_errors == 0


async def test_raising_async_receiver_is_isolated_and_counted() -> None:
    bus = EventBus()
    good: list[int] = []

    async def bad(p: dict[str, Any]) -> None:
        raise ValueError("nope")

    async def ok(p: dict[str, Any]) -> None:
        good.append(p["n"])

    bus.connect("done", bad)
    bus.connect("done", ok)
    with capture_logs() as logs:
        async with bus:
            for n in range(3):
                bus.emit("done", {"n": n})
            await wait_for(
                lambda: len(good) == 3 and bus.receiver_errors == 3, timeout=5.0, interval=0.001
            )
    assert good == [0, 1, 2]  # the bad receiver's consumer survived every failure too
    assert sum(e["event"] == "receiver_failed" for e in logs) == 3


async def test_slow_async_receiver_never_blocks_emit() -> None:
    bus = EventBus(queue_size=1000)
    never = asyncio.Event()
    fast: list[int] = []

    async def stuck(p: dict[str, Any]) -> None:
        await never.wait()

    async def quick(p: dict[str, Any]) -> None:
        fast.append(p["n"])

    bus.connect("step_done", stuck)
    bus.connect("step_done", quick, queue_size=10_000)
    with capture_logs() as logs:
        await bus.start()
        for n in range(10_000):  # synchronous: returns without the stuck receiver running
            bus.emit("step_done", {"n": n})
        assert bus.dropped == 9_000  # its queue holds 1000, the rest is dropped for it only
        await wait_for(lambda: len(fast) == 10_000, timeout=5.0, interval=0.001)
        await bus.aclose(timeout=0.05)  # the stuck one cannot drain: cancelled
    assert fast == list(range(10_000))  # order preserved, nothing lost for the fast one
    full = [e for e in logs if e["event"] == "receiver_queue_full"]
    assert len(full) == 1  # logged once per burst, not 9000 times
    assert full[0]["receiver"].endswith("stuck")
    assert any(e["event"] == "events_drain_timeout" for e in logs)
    assert not bus.started


async def test_drop_logging_once_per_burst() -> None:
    bus = EventBus()
    got: list[int] = []

    async def receiver(p: dict[str, Any]) -> None:
        got.append(p["n"])

    bus.connect("done", receiver, queue_size=2)
    with capture_logs() as logs:
        async with bus:
            for n in range(5):
                bus.emit("done", {"n": n})
            await wait_for(lambda: len(got) == 2, timeout=5.0, interval=0.001)
            bus.emit("done", {"n": 5})  # fits again: the burst is over
            for n in range(6, 10):
                bus.emit("done", {"n": n})  # second burst: 5, 6 queued, 7..9 dropped
            await wait_for(lambda: len(got) == 4, timeout=5.0, interval=0.001)
    assert got == [0, 1, 5, 6]
    assert bus.dropped == 3 + 3
    names = [e["event"] for e in logs]
    assert names.count("receiver_queue_full") == 2
    recovered = [e for e in logs if e["event"] == "receiver_queue_recovered"]
    assert [e["dropped"] for e in recovered] == [3]


async def test_order_is_preserved_per_receiver_across_events() -> None:
    bus = EventBus()
    got: list[tuple[str, int]] = []

    async def receiver(p: dict[str, Any]) -> None:
        if p["n"] % 7 == 0:
            await asyncio.sleep(0)  # yield mid-stream; order must still hold
        got.append((p["event"], p["n"]))

    bus.connect(["step_start", "step_done"], receiver)
    expected = []
    async with bus:
        for n in range(500):
            name = "step_start" if n % 2 else "step_done"
            expected.append((name, n))
            bus.emit(name, {"n": n})
        await wait_for(lambda: len(got) == 500, timeout=5.0, interval=0.001)
    assert got == expected


def test_task_filter() -> None:
    bus = EventBus()
    only_a: list[Any] = []
    all_for_a: list[Any] = []
    bus.connect("done", lambda p: only_a.append(p.get("task")), task="a")
    bus.connect("*", lambda p: all_for_a.append(p["event"]), task="a")
    bus.emit("done", {"task": "a"})
    bus.emit("done", {"task": "b"})
    bus.emit("done", {})
    bus.emit("step_done", {"task": "a"})
    bus.emit("daemon_ready", {})
    assert only_a == ["a"]
    assert all_for_a == ["done", "step_done"]


def test_catch_all_receives_every_event() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.connect("*", lambda p: seen.append(p["event"]))
    for name in ALL_EVENTS:
        bus.emit(name, {"task": "t"})
    assert seen == list(ALL_EVENTS)


def test_disconnect_sync_is_idempotent() -> None:
    bus = EventBus()
    got: list[str] = []
    off = bus.connect(["start", "done"], lambda p: got.append(p["event"]))
    bus.emit("start", {})
    assert bus.has_receivers("done")
    off()
    off()
    bus.emit("done", {})
    assert got == ["start"]
    assert not bus.has_receivers("done")


async def test_disconnect_async_discards_pending_and_stops_consumer() -> None:
    bus = EventBus()
    got: list[int] = []

    async def receiver(p: dict[str, Any]) -> None:
        got.append(p["n"])

    off = bus.connect("done", receiver)
    bus.emit("done", {"n": 1})  # queued: the bus is not started
    off()
    async with bus:
        bus.emit("done", {"n": 2})
        await asyncio.sleep(0)
    assert got == []

    off2 = bus.connect("done", receiver)
    async with bus:
        bus.emit("done", {"n": 3})
        await wait_for(lambda: got == [3], timeout=5.0, interval=0.001)
        off2()
        # the cancelled consumer finished
        await wait_for(lambda: not bus._tasks, timeout=5.0, interval=0.001)
        bus.emit("done", {"n": 4})
    assert got == [3]


def test_unknown_names_raise_with_a_hint() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match=r"did you mean 'done'\?") as info:
        bus.connect("doen", print)
    assert "step_start" in str(info.value)  # lists the valid names
    with pytest.raises(ValueError, match=r"did you mean 'step_start'\?"):
        bus.emit("step_started", {})
    with pytest.raises(ValueError, match="unknown event 'nope'"):
        bus.connect(["done", "nope"], print)
    assert not bus.has_receivers("done")  # nothing half-connected
    with pytest.raises(ValueError):
        bus.emit("*", {})


async def test_aclose_drains_events_queued_before_start() -> None:
    bus = EventBus()
    got: list[int] = []

    async def receiver(p: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        got.append(p["n"])

    bus.connect("done", receiver)
    for n in range(100):
        bus.emit("done", {"n": n})  # no loop owner yet: they wait in the queue
    await bus.start()
    await bus.aclose(timeout=5.0)
    assert got == list(range(100))
    assert not bus._tasks


async def test_connect_after_start_spawns_a_consumer() -> None:
    got: list[str] = []

    async def receiver(p: dict[str, Any]) -> None:
        got.append(p["event"])

    async with EventBus() as bus:
        bus.connect("running", receiver)
        bus.emit("running", {})
        await wait_for(lambda: got == ["running"], timeout=5.0, interval=0.001)


async def test_emit_from_another_thread_runs_receivers_on_the_loop_thread() -> None:
    bus = EventBus()
    threads: list[int] = []
    arrived = asyncio.Event()

    def sync_receiver(p: dict[str, Any]) -> None:
        threads.append(threading.get_ident())

    async def async_receiver(p: dict[str, Any]) -> None:
        threads.append(threading.get_ident())
        arrived.set()

    bus.connect("done", sync_receiver)
    bus.connect("done", async_receiver)
    async with bus:
        await asyncio.to_thread(bus.emit, "done", {"task": "t"})
        async with asyncio.timeout(5):
            await arrived.wait()
    assert threads == [threading.get_ident()] * 2


def test_buses_are_isolated() -> None:
    one, two = EventBus(), EventBus()
    got: list[str] = []
    one.connect("*", lambda p: got.append("one"))
    two.emit("done", {})
    assert got == []
    assert not blinker.signal("done").receivers  # blinker's global namespace untouched
    one.emit("done", {})
    assert got == ["one"]


def test_bad_queue_size_and_receiver() -> None:
    with pytest.raises(ValueError):
        EventBus(queue_size=0)
    with pytest.raises(TypeError):
        EventBus().connect("done", "not callable")  # type: ignore[arg-type]


def test_connecting_and_disconnecting_between_events_takes_effect_at_once() -> None:
    """Routes of (event, task) are remembered between events, and forgotten on any change."""
    bus = EventBus()
    got_a: list[dict[str, object]] = []
    got_b: list[dict[str, object]] = []
    off_a = bus.connect("start", got_a.append)
    bus.emit("start", {"task": "t"})
    off_b = bus.connect("*", got_b.append, task="t")
    bus.emit("start", {"task": "t"})
    bus.emit("start", {"task": "u"})
    off_a()
    bus.emit("start", {"task": "t"})
    off_b()
    bus.emit("start", {"task": "t"})
    assert [p["task"] for p in got_a] == ["t", "t", "u"]
    assert [p["task"] for p in got_b] == ["t", "t"]
