"""``flowtaskd.core.problems``: pydantic's errors as ``FILE:LINE: KEY.PATH: message (hint)``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from flowtaskd.core.loader import parse_document
from flowtaskd.core.options import StepOptions
from flowtaskd.core.problems import closest, pydantic_problems, shown
from flowtaskd.errors import Problem


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int = 0
    label: str = ""


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int
    inner: Inner = Inner()
    value: str | list[str] = ""


def problems(
    data: Any, text: str | None = None, prefix: tuple[str | int, ...] = ("steps", 0), **kw: Any
) -> list[Problem]:
    doc = parse_document(text, "yaml", "t.yaml") if text is not None else None
    with pytest.raises(ValidationError) as exc:
        Outer.model_validate(data)
    return pydantic_problems(exc.value, prefix, doc, data=data, **kw)


def test_missing_field_names_file_line_and_key_path() -> None:
    text = "inner:\n  depth: 1\n"
    (p,) = problems({"inner": {"depth": 1}}, text, prefix=())
    assert str(p) == "t.yaml:1: count: field required"  # the line of its parent mapping


def test_type_error_says_what_was_given_on_its_line() -> None:
    text = "count: 1\ninner:\n  depth: deep\n"
    data = {"count": 1, "inner": {"depth": "deep"}}
    (p,) = problems(data, text, prefix=())
    assert (p.file, p.line, p.path) == ("t.yaml", 3, "inner.depth")
    assert p.message.endswith("got text 'deep'")


def test_unknown_key_at_the_top_hints_from_known_keys() -> None:
    (p,) = problems({"count": 1, "cuont": 2}, known_keys=["count", "inner"])
    assert (p.path, p.message, p.hint) == ("steps[0].cuont", "unknown key", "did you mean `count`?")


def test_unknown_key_deeper_hints_from_the_sub_model() -> None:
    data = {"count": 1, "inner": {"lable": "x"}}
    (p,) = problems(data, known_keys=["count"], models=[Outer])
    assert p.path == "steps[0].inner.lable"
    assert p.hint == "did you mean `label`?"


def test_unknown_key_with_nothing_close_has_no_hint() -> None:
    (p,) = problems({"count": 1, "zzzz": 2}, known_keys=["count"])
    assert p.hint is None


def test_union_tags_are_dropped_and_duplicates_merged() -> None:
    ps = problems({"count": 1, "value": 5})
    assert {p.path for p in ps} == {"steps[0].value"}  # not value.str, value.list[str]
    assert len({(p.path, p.message) for p in ps}) == len(ps)


def test_without_data_the_location_is_kept_as_pydantic_gives_it() -> None:
    with pytest.raises(ValidationError) as exc:
        Outer.model_validate({"count": 1, "value": 5})
    paths = {p.path for p in pydantic_problems(exc.value, (), None)}
    assert "value.str" in paths


def test_bad_step_name_explains_the_pattern() -> None:
    with pytest.raises(ValidationError) as exc:
        StepOptions.model_validate({"name": "a b"})
    (p,) = pydantic_problems(exc.value, ("steps", 0, "Command"), None, data={"name": "a b"})
    assert p.message == "a step name is letters, digits, `_`, `.` and `-`, got 'a b'"


def test_a_mapping_expected() -> None:
    with pytest.raises(ValidationError) as exc:
        Outer.model_validate({"count": 1, "inner": [1]})
    (p,) = pydantic_problems(exc.value, (), None, data={"count": 1, "inner": [1]})
    assert p.message == "should be a mapping, got a list"


def test_closest() -> None:
    assert closest("comand", ["command", "cwd", "env"]) == "command"
    assert closest("xyz", ["command"]) is None
    assert closest("a", []) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "boolean True"),
        (5, "integer 5"),
        (1.5, "number 1.5"),
        ("x", "text 'x'"),
        ([1], "a list"),
        ({}, "a mapping"),
        ("y" * 50, "text '" + "y" * 36 + "..."),
        (b"b", "bytes b'b'"),
    ],
)
def test_shown(value: Any, text: str) -> None:
    assert shown(value) == text
