"""``flowtaskd.tasks.command.Command``: a task that is one operating-system command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.tasks import Command


def test_without_a_command_it_refuses() -> None:
    with pytest.raises(ValueError, match="Command needs a command"):
        Command("x")


async def test_the_task_positional_is_the_command(tmp_path: Path) -> None:
    cmd = Command("pos", ["echo", "one", "two"], log_dir=tmp_path)
    async with cmd:
        stats = await cmd.run()
    assert stats.status is TaskStatus.DONE
    assert stats.steps["command"].output == "one two"
    assert cmd.pile is not None and cmd.pile.definition.name == "pos"


async def test_a_string_command_and_cwd_and_env(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    script = f"{sys.executable} -c \"import os; print(os.getcwd(), os.environ['V'])\""
    async with Command(
        "s", command=script, cwd=str(tmp_path / "here"), env={"V": "vee"}, log_dir=tmp_path
    ) as cmd:
        stats = await cmd.run()
    assert stats.steps["command"].output == f"{tmp_path / 'here'} vee"


async def test_the_timeout_stops_the_command(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    async with Command("t", command=argv, timeout=0.3, kill_grace=0.5, log_dir=tmp_path) as cmd:
        stats = await cmd.run()
    assert stats.status is TaskStatus.FAILED
    step = stats.steps["command"]
    assert step.status is StepStatus.TIMED_OUT
    assert step.error == "timed out"


async def test_default_name_and_a_failing_command(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "raise SystemExit(3)"]
    async with Command(command=argv, log_dir=tmp_path) as c:
        stats = await c.run()
    assert stats.task == "command"
    assert stats.status is TaskStatus.FAILED
    assert stats.steps["command"].exit_code == 3
