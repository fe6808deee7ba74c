"""Errors carry what a user needs to fix the input: ``FILE:LINE: key.path: message (hint)``."""

from __future__ import annotations

import pytest

from flowtaskd.errors import (
    ConfigError,
    FlowtaskError,
    Problem,
    TaskParseError,
    format_path,
)


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        ((), ""),
        (("name",), "name"),
        (("steps", 2, "Command", "command"), "steps[2].Command.command"),
        ((0, "x"), "[0].x"),
    ],
)
def test_format_path(parts: tuple[str | int, ...], text: str) -> None:
    assert format_path(parts) == text


def test_a_problem_reads_file_line_key_message_and_hint() -> None:
    p = Problem("unknown key", "t.yaml", 4, "steps[0].Dummy.mesage", "did you mean `message`?")
    assert str(p) == "t.yaml:4: steps[0].Dummy.mesage: unknown key (did you mean `message`?)"
    assert str(Problem("a task needs at least one step")) == (
        "<task>: a task needs at least one step"
    )
    assert p.to_dict()["line"] == 4


def test_a_parse_error_lists_every_problem_and_is_a_flowtask_error() -> None:
    err = TaskParseError([Problem("one", "f", 1), Problem("two", "f", 2)], "f")
    assert str(err) == "f:1: one\nf:2: two"
    assert err.to_dict() == {
        "file": "f",
        "problems": [p.to_dict() for p in err.problems],
    }
    assert isinstance(err, FlowtaskError)
    assert str(TaskParseError([], "x.toml")) == "x.toml: invalid task"
    assert issubclass(ConfigError, TaskParseError)
