"""flowtaskd.daemon.runs.request: what a RunRequest derives (its task, its logical time)."""

from __future__ import annotations

from flowtaskd.daemon.runs.request import SHUTDOWN, RunRequest
from flowtaskd.tasks import TaskPile


def _pile(name: str = "report") -> TaskPile:
    return TaskPile({"name": name, "steps": [{"Dummy": {"name": "a"}}]})


def test_task_is_the_pile_name() -> None:
    assert RunRequest(_pile("nightly"), "manual").task == "nightly"


def test_logical_time_defaults_to_the_fire_time() -> None:
    assert RunRequest(_pile(), "schedule").logical is None
    assert RunRequest(_pile(), "schedule", fire_time=100.0).logical == 100.0
    req = RunRequest(_pile(), "backfill", fire_time=100.0, logical_time=50.0)
    assert req.logical == 50.0
    assert RunRequest(_pile(), "backfill", logical_time=0.0).logical == 0.0  # zero is a time


def test_each_request_gets_its_own_run_id_and_params() -> None:
    a, b = RunRequest(_pile(), "manual"), RunRequest(_pile(), "manual")
    assert a.run_id and a.run_id != b.run_id
    assert a.params == {} and a.params is not b.params
    assert a.cancel_reason is None and a.trigger == "manual"


def test_shutdown_reason() -> None:
    assert SHUTDOWN == "cancelled at shutdown"
