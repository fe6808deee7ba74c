"""``flowtaskd.components.commands``: ``Command`` (an argv), ``RunShell`` (``/bin/sh -c``)
and ``Python`` (a function by name), run as real processes and calls against a real
:class:`StepContext`. (``tests/test_command.py`` is the flowtask API's ``Command`` task.)"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.components.base import Component
from flowtaskd.components.commands import (
    CommandComponent,
    PythonComponent,
    PythonParams,
    RunShellComponent,
    load_function,
    shell_script,
)
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.core.rules import StepStatus

HERE = "tests.test_components_commands"


async def run(comp: type[Component], raw: dict[str, Any], tmp_path: Path, **kw: Any) -> StepOutcome:
    params = comp.Params.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", f"{comp.name}_1", comp.name, params, log_dir=tmp_path, **kw)
    return await comp(params).run(ctx)


# functions the Python steps below call by name


def greet(name: str, punct: str = "!") -> str:
    return f"hi {name}{punct}"


async def agreet(name: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"hi": name, "n": [1, 2]}


def nothing() -> None:
    return None


def circular() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def explode(token: str) -> None:
    raise RuntimeError(f"bad token {token}")


RELEASE = threading.Event()


def blocks() -> str:
    RELEASE.wait(10)
    return "late"


async def forever() -> None:
    await asyncio.Event().wait()


class Jobs:
    @staticmethod
    def nightly(day: str) -> str:
        return f"nightly {day}"


NOT_CALLABLE = 42


# -- Command -----------------------------------------------------------------------------


async def test_command_runs_an_argv_without_a_shell(tmp_path: Path) -> None:
    code = "import sys; print(' | '.join(sys.argv[1:]))"
    out = await run(
        CommandComponent, {"command": [sys.executable, "-c", code, "$HOME", "a;b"]}, tmp_path
    )
    assert out.status is StepStatus.DONE and out.exit_code == 0
    assert out.output == "$HOME | a;b"  # no expansion, no command separator
    assert Path(out.log_path or "").read_text() == "$HOME | a;b\n"


async def test_command_as_a_string_is_split_like_a_shell_would(tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c 'import sys; print(sys.argv[1:])' 'two words' x"
    out = await run(CommandComponent, {"command": cmd}, tmp_path)
    assert out.output == "['two words', 'x']"


async def test_command_numbers_are_arguments_and_output_is_capped(tmp_path: Path) -> None:
    code = "import sys; print(sys.argv[1] * 100)"
    raw = {"command": [sys.executable, "-c", code, 7], "output_cap": 10}
    out = await run(CommandComponent, raw, tmp_path)
    assert out.ok and out.output is not None and len(out.output) <= 10
    assert out.output.startswith("7777")


async def test_command_failure_says_the_exit_code(tmp_path: Path) -> None:
    code = "import sys; sys.exit('no input file')"
    out = await run(CommandComponent, {"command": [sys.executable, "-c", code]}, tmp_path)
    assert out.status is StepStatus.FAILED and out.exit_code == 1
    assert out.error == "exit code 1: no input file"


def test_command_params_refuse_an_empty_or_odd_command() -> None:
    for bad, why in (
        ([], "the command is empty"),
        ("  ", "the command is empty"),
        ([["x"]], "every argv element must be a string"),
    ):
        with pytest.raises(ValidationError, match=why):
            CommandComponent.Params.model_validate({"command": bad})
    with pytest.raises(ValidationError, match="output_cap"):
        CommandComponent.Params.model_validate({"command": ["x"], "output_cap": -1})


# -- RunShell ----------------------------------------------------------------------------


def test_shell_script_of_a_command_or_commands() -> None:
    assert shell_script({"command": "echo a | wc -c"}) == "echo a | wc -c"
    script = shell_script({"commands": ["a", "b"]})
    assert script.splitlines() == [
        "a",
        '_rc=$?; [ "$_rc" -eq 0 ] || exit "$_rc"',
        "b",
        '_rc=$?; [ "$_rc" -eq 0 ] || exit "$_rc"',
    ]
    assert shell_script({"command": None, "commands": None}) == ""


def test_run_shell_takes_one_form_once() -> None:
    with pytest.raises(ValidationError, match="give `command`"):
        RunShellComponent.Params.model_validate({"command": "a", "commands": ["b"]})
    with pytest.raises(ValidationError, match="commands"):
        RunShellComponent.Params.model_validate({"commands": []})


async def test_run_shell_runs_a_script_through_sh(tmp_path: Path) -> None:
    raw = {"command": 'x=$(printf "%s-" a b); echo "$x" | tr a-z A-Z'}
    out = await run(RunShellComponent, raw, tmp_path, cwd=str(tmp_path))
    assert out.ok and out.output == "A-B-"


async def test_run_shell_commands_run_in_one_shell_and_stop_at_a_failure(tmp_path: Path) -> None:
    raw = {"commands": ["cd sub", "pwd > where", "false", "touch after"]}
    (tmp_path / "sub").mkdir()
    out = await run(RunShellComponent, raw, tmp_path, cwd=str(tmp_path))
    assert out.status is StepStatus.FAILED and out.exit_code == 1
    assert (tmp_path / "sub" / "where").read_text().strip() == str(tmp_path / "sub")
    assert not (tmp_path / "sub" / "after").exists()


# -- Python ------------------------------------------------------------------------------


def test_load_function_by_module_and_attribute_path() -> None:
    assert load_function(f"{HERE}:greet") is greet
    assert load_function(f"{HERE}:Jobs.nightly")("d") == "nightly d"
    with pytest.raises(ValueError, match="is not callable"):
        load_function(f"{HERE}:NOT_CALLABLE")
    with pytest.raises(AttributeError):
        load_function(f"{HERE}:missing")
    with pytest.raises(ImportError):
        load_function("tests.no_such_module:f")


def test_python_params_want_module_colon_function() -> None:
    for ok in ("a:b", "a.b_c:D.e"):
        assert PythonParams.model_validate({"function": ok}).function == ok
    for bad in ("a.b", "a:b:c", "a b:c", ":f", "a:", "a.:f"):
        with pytest.raises(ValidationError, match=r"expected 'package\.module:function'"):
            PythonParams.model_validate({"function": bad})


async def test_python_calls_a_function_with_kwargs(tmp_path: Path) -> None:
    raw = {"function": f"{HERE}:greet", "kwargs": {"name": "ops", "punct": "?"}}
    out = await run(PythonComponent, raw, tmp_path)
    assert out.status is StepStatus.DONE and out.output == "hi ops?"


async def test_python_awaits_a_coroutine_and_gives_json(tmp_path: Path) -> None:
    out = await run(
        PythonComponent, {"function": f"{HERE}:agreet", "kwargs": {"name": "x"}}, tmp_path
    )
    assert out.output == '{"hi": "x", "n": [1, 2]}'


async def test_python_output_of_none_and_of_what_json_cannot_write(tmp_path: Path) -> None:
    out = await run(PythonComponent, {"function": f"{HERE}:nothing"}, tmp_path)
    assert out.ok and out.output is None
    out = await run(PythonComponent, {"function": f"{HERE}:circular"}, tmp_path)
    assert out.ok and out.output == "[1, [...]]"  # not JSON: its str()


async def test_python_that_cannot_be_loaded_fails(tmp_path: Path) -> None:
    out = await run(PythonComponent, {"function": f"{HERE}:missing"}, tmp_path)
    assert out.status is StepStatus.FAILED
    assert out.error is not None and out.error.startswith(f"cannot load {HERE}:missing: ")


async def test_python_exception_names_type_file_and_line_and_masks_secrets(tmp_path: Path) -> None:
    raw = {"function": f"{HERE}:explode", "kwargs": {"token": "s3cr3t-42"}}
    out = await run(PythonComponent, raw, tmp_path, secrets=("s3cr3t-42",))
    assert out.status is StepStatus.FAILED
    line = explode.__code__.co_firstlineno + 1
    assert out.error == f"RuntimeError: bad token *** ({__file__}:{line})"


async def test_python_bad_kwargs_are_the_steps_failure(tmp_path: Path) -> None:
    out = await run(PythonComponent, {"function": f"{HERE}:greet", "kwargs": {"nom": 1}}, tmp_path)
    assert out.status is StepStatus.FAILED
    assert out.error is not None and out.error.startswith("TypeError: ")


async def test_python_timeout_of_a_coroutine_and_of_a_thread(tmp_path: Path) -> None:
    out = await run(PythonComponent, {"function": f"{HERE}:forever"}, tmp_path, timeout=0.05)
    assert out.status is StepStatus.TIMED_OUT and out.error == f"{HERE}:forever timed out"
    RELEASE.clear()
    try:
        out = await run(PythonComponent, {"function": f"{HERE}:blocks"}, tmp_path, timeout=0.05)
        assert out.status is StepStatus.TIMED_OUT  # the thread is abandoned, not stopped
    finally:
        RELEASE.set()
