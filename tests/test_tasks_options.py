"""``flowtaskd.tasks.options.inherited``: what a sub-run takes over from its parent's options."""

from __future__ import annotations

from flowtaskd.engine.events import EventBus
from flowtaskd.tasks.options import TaskOptions, inherited
from tests.conftest import FakeClock


def test_a_sub_run_inherits_the_environment_of_its_parent() -> None:
    parent = TaskOptions(
        log_dir="/logs",
        kill_grace=1.5,
        python_allow=("mypkg.",),
        tasks_dir="/tasks",
        base_env={"A": "1"},
        resolve_task=None,
        webhooks=None,
    )
    assert inherited(parent) == parent


def test_a_sub_run_does_not_inherit_what_is_the_parents_own() -> None:
    parent = TaskOptions(
        params={"x": 1},
        run_id="r1",
        trigger="schedule",
        depth=2,
        events=EventBus(),
        clock=FakeClock(),
        kept={},
        log_dir="/logs",
    )
    assert inherited(parent) == {"log_dir": "/logs"}


def test_nothing_given_nothing_inherited() -> None:
    assert inherited(TaskOptions()) == {}
