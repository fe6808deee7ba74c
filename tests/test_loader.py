"""The loader on real files: data, key-path lines, YAML 1.1 traps, duplicates, syntax errors."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flowtaskd.core.loader import (
    TASK_SUFFIXES,
    Document,
    format_for,
    load_document,
    parse_document,
)
from flowtaskd.errors import Problem, TaskNotFound, TaskParseError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def parse_error(text: str, fmt: str) -> Problem:
    with pytest.raises(TaskParseError) as caught:
        parse_document(dedent(text).lstrip("\n"), fmt, f"task.{fmt}")
    [problem] = caught.value.problems
    assert problem.file == f"task.{fmt}"
    assert "Error(" not in problem.message and "<unicode string>" not in problem.message
    return problem


# --- suffixes and files ---------------------------------------------------------------------


def test_suffixes() -> None:
    assert {".json", ".yaml", ".yml", ".toml"} == TASK_SUFFIXES
    assert format_for("a/nightly.yml") == "yaml"
    assert format_for(Path("x.YAML")) == "yaml"
    assert format_for("x.json") == "json"
    assert format_for("x.toml") == "toml"
    assert format_for("x.txt") is None
    assert format_for("Makefile") is None


def test_load_each_format_gives_the_same_data(tmp_path: Path) -> None:
    want = {"name": "nightly", "steps": [{"Command": {"command": "echo", "arguments": ["hi"]}}]}
    json_file = tmp_path / "t.json"
    json_file.write_text(json.dumps(want, indent=2))
    yaml_file = write(
        tmp_path, "t.yaml", "name: nightly\nsteps:\n  - Command: {command: echo, arguments: [hi]}\n"
    )
    toml_file = write(
        tmp_path,
        "t.toml",
        """
        name = "nightly"
        [[steps]]
        [steps.Command]
        command = "echo"
        arguments = ["hi"]
        """,
    )
    for path, fmt in [(json_file, "json"), (yaml_file, "yaml"), (toml_file, "toml")]:
        doc = load_document(path)
        assert (doc.data, doc.format, doc.file, doc.problems) == (want, fmt, str(path), [])
        assert doc.lines[()] == 1


def test_missing_file_is_task_not_found(tmp_path: Path) -> None:
    for name in ("nope.yaml", "nope.txt"):
        with pytest.raises(TaskNotFound, match=r"no such file: .*nope"):
            load_document(tmp_path / name)


def test_unknown_suffix_names_the_file_and_the_supported_suffixes(tmp_path: Path) -> None:
    path = write(tmp_path, "task.ini", "[a]\n")
    with pytest.raises(TaskParseError) as caught:
        load_document(path)
    [problem] = caught.value.problems
    assert problem.file == str(path) and caught.value.file == str(path)
    for suffix in (".ini", ".json", ".toml", ".yaml", ".yml"):
        assert suffix in problem.message


def test_not_utf8_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: x\ndescription: caf\xe9\n")
    with pytest.raises(TaskParseError) as caught:
        load_document(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line) == (str(path), 2)
    assert "UTF-8" in problem.message and "0xe9" in problem.message


def test_directory_and_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(TaskParseError, match="directory"):
        load_document(tmp_path / "dir.yaml")
    if os.geteuid() == 0:
        return  # root reads anything
    path = write(tmp_path, "secret.yaml", "a: 1\n")
    path.chmod(0)
    with pytest.raises(TaskParseError, match="cannot read the file: Permission denied"):
        load_document(path)


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert load_document(path).data == {"a": 1}


@pytest.mark.parametrize(
    ("fmt", "text"), [("json", " \n\n"), ("yaml", ""), ("yaml", "# c\n"), ("toml", "# c\n")]
)
def test_empty_file_gives_none(fmt: str, text: str) -> None:
    doc = parse_document(text, fmt)
    assert (doc.data, doc.problems, doc.lines) == (None, [], {(): 1})


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown format 'ini'"):
        parse_document("", "ini")


# --- JSON -----------------------------------------------------------------------------------

JSON_TASK = """\
{
  "name": "nightly",
  "steps": [
    {"name": "a"},
    {
      "name": "b",
      "Command": {
        "command": "echo",
        "arguments": ["x",
                      "y"]
      }
    }
  ],
  "tab\\tkey": {}
}
"""


def test_json_lines_for_nested_keys_and_items() -> None:
    doc = parse_document(JSON_TASK, "json", "t.json")
    assert doc.data == json.loads(JSON_TASK)
    assert doc.lines == {
        (): 1,
        ("name",): 2,
        ("steps",): 3,
        ("steps", 0): 4,
        ("steps", 0, "name"): 4,
        ("steps", 1): 5,
        ("steps", 1, "name"): 6,
        ("steps", 1, "Command"): 7,
        ("steps", 1, "Command", "command"): 8,
        ("steps", 1, "Command", "arguments"): 9,
        ("steps", 1, "Command", "arguments", 0): 9,
        ("steps", 1, "Command", "arguments", 1): 10,
        ("tab\tkey",): 14,
    }


def test_line_of_falls_back_to_the_deepest_known_parent() -> None:
    doc = parse_document(JSON_TASK, "json")
    assert doc.line_of(["steps", 1, "Command", "command"]) == 8
    assert doc.line_of(("steps", 1, "Command", "timeout")) == 7
    assert doc.line_of(("steps", 5, "name")) == 3
    assert doc.line_of(("nothing", "here")) == 1
    assert doc.line_of(()) == 1
    assert Document(None, None, "json", {}).line_of(("a",)) is None


def test_json_duplicate_key_is_a_problem_and_the_later_value_wins() -> None:
    doc = parse_document('{\n"a": {"x": 1,\n"x": 2},\n"a": {"x": 3}\n}', "json", "d.json")
    assert doc.data == {"a": {"x": 3}}
    assert [(p.path, p.line, p.file) for p in doc.problems] == [
        ("a.x", 3, "d.json"),
        ("a", 4, "d.json"),
    ]
    assert doc.problems[0].message == (
        "duplicate key `x` (first on line 2, again on line 3): the file is refused, where "
        "upstream flowtask would silently keep the later value"
    )


def test_json_constants_and_numbers_match_json_loads() -> None:
    text = '[NaN, Infinity, -Infinity, 1e3, -0, 0.5E-2, 10, true, false, null, "\\ud83d\\ude00"]'
    data = parse_document(text, "json").data
    assert all(math.isnan(x) for x in (data[0], json.loads(text)[0]))
    assert json.dumps(data[1:]) == json.dumps(json.loads(text)[1:])


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('{\n  "a": 1,\n  "b": 2\n  "c": 3\n}', 4, "Expecting ',' delimiter (column 3)"),
        ('{\n  "a": [1,\n  ]\n}', 3, "Expecting value"),
        ('{"a": 1,}', 1, "Expecting property name"),
        ('[1,\n"bad \\x escape"]', 2, "Invalid \\escape"),
        ("[1] 2", 1, "Extra data"),
        ('{"a" 1}', 1, "Expecting ':' delimiter"),
    ],
)
def test_json_syntax_errors_carry_the_line(text: str, line: int, words: str) -> None:
    problem = parse_error(text, "json")
    assert problem.line == line
    assert problem.message.startswith("JSON syntax error: ") and words in problem.message


def test_json_oversized_integer_and_deep_nesting_are_parse_errors() -> None:
    assert "4300 digits" in parse_error("1" * 5000, "json").message
    assert "nested too deeply" in parse_error("[" * 5000 + "]" * 5000, "json").message


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from([1e16, -2.5e-7, 5e-324, 1.7976931348623157e308])  # exponents
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=25,
    )


def expected_lines(value: Any, indented: bool) -> dict[tuple[str | int, ...], int]:
    """Lines as json.dumps(indent=...) lays them out: one key or item per line."""
    out: dict[tuple[str | int, ...], int] = {(): 1}

    def walk(node: Any, path: tuple[str | int, ...], line: int) -> int:
        children = (
            list(node.items())
            if isinstance(node, dict)
            else list(enumerate(node))
            if isinstance(node, list)
            else []
        )
        if not children:
            return line
        for key, child in children:
            line += indented
            out[(*path, key)] = line
            line = walk(child, (*path, key), line)
        return line + indented

    walk(value, (), 1)
    return out


@settings(max_examples=300, deadline=None)
@given(
    value=json_values(),
    indent=st.none() | st.integers(0, 3) | st.just("\t"),
    ensure_ascii=st.booleans(),
)
def test_json_decoder_equals_json_loads(
    value: Any, indent: int | str | None, ensure_ascii: bool
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    doc = parse_document(text, "json")
    assert json.dumps(doc.data) == json.dumps(json.loads(text))  # types too: 1 vs 1.0
    assert doc.lines == expected_lines(value, indent is not None)
    assert doc.problems == []


# --- YAML -----------------------------------------------------------------------------------

YAML_TASK = """\
name: nightly
steps:
  - name: a
    Command:
      command: echo
      arguments: [x, y]
  - name: b
    Command:
      arguments:
        - "--n"
        - 3
started: 2024-05-01
"""


def test_yaml_lines_and_data_match_safe_load(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "nightly.yaml", YAML_TASK))
    assert doc.data == yaml.safe_load(YAML_TASK)
    assert doc.problems == []
    assert doc.lines == {
        (): 1,
        ("name",): 1,
        ("steps",): 2,
        ("steps", 0): 3,
        ("steps", 0, "name"): 3,
        ("steps", 0, "Command"): 4,
        ("steps", 0, "Command", "command"): 5,
        ("steps", 0, "Command", "arguments"): 6,
        ("steps", 0, "Command", "arguments", 0): 6,
        ("steps", 0, "Command", "arguments", 1): 6,
        ("steps", 1): 7,
        ("steps", 1, "name"): 7,
        ("steps", 1, "Command"): 8,
        ("steps", 1, "Command", "arguments"): 9,
        ("steps", 1, "Command", "arguments", 0): 10,
        ("steps", 1, "Command", "arguments", 1): 11,
        ("started",): 12,
    }
    assert doc.line_of(("steps", 1, "Command", "command")) == 8


@pytest.mark.parametrize(
    ("text", "path", "value", "message"),
    [
        ("enabled: on\n", "enabled", True, "`on` is read as boolean True"),
        ("enabled: Off\n", "enabled", False, "`Off` is read as boolean False"),
        ("xs:\n  - YES\n", "xs[0]", True, "`YES` is read as boolean True"),
        ("xs:\n  - no\n", "xs[0]", False, "`no` is read as boolean False"),
        ("at: 12:30\n", "at", 750, "`12:30` is read as the number 750 (base 60)"),
        ("at: 1:20:30\n", "at", 4830, "`1:20:30` is read as the number 4830 (base 60)"),
        ("at: 1:30.5\n", "at", 90.5, "`1:30.5` is read as the number 90.5 (base 60)"),
    ],
)
def test_yaml_11_value_traps_are_problems(text: str, path: str, value: Any, message: str) -> None:
    doc = parse_document("name: x\n" + text, "yaml", "t.yaml")
    [problem] = doc.problems
    assert (problem.path, problem.line, problem.file) == (path, text.count("\n") + 1, "t.yaml")
    assert problem.message == message + " by YAML 1.1"
    assert problem.hint is not None and "quote it" in problem.hint
    leaf = doc.data
    for part in path.replace("[0]", ".0").split("."):
        leaf = leaf[int(part)] if part.isdigit() else leaf[part]
    assert leaf == value and type(leaf) is type(value)  # converted, as safe_load does


def test_yaml_on_as_a_key_is_a_problem() -> None:
    doc = parse_document("name: ci\non:\n  push: {}\nsteps: []\n", "yaml", "ci.yaml")
    assert doc.data == {"name": "ci", True: {"push": {}}, "steps": []}
    [problem] = doc.problems
    assert (problem.path, problem.line) == ("on", 2)
    assert problem.message == "key `on` is read as boolean True by YAML 1.1"
    assert doc.lines[(True, "push")] == 3


def test_yaml_no_trap_when_quoted_or_plain_true_or_text() -> None:
    text = "a: 'on'\nb: \"12:30\"\nc: true\nd: False\ne: y\nf: n\ng: 12-30\nh: |\n  on\n'yes': 1\n"
    doc = parse_document(text, "yaml")
    assert doc.problems == []
    assert doc.data == yaml.safe_load(text)


def test_yaml_duplicate_keys() -> None:
    doc = parse_document("name: a\nsteps:\n  - x: 1\n    x: 2\nname: b\n", "yaml", "d.yaml")
    assert doc.data == {"name": "b", "steps": [{"x": 2}]}
    assert [(p.path, p.line) for p in doc.problems] == [("steps[0].x", 4), ("name", 5)]
    assert all("the file is refused" in p.message for p in doc.problems)
    assert "duplicate key `name` (first on line 1, again on line 5)" in doc.problems[1].message


def test_yaml_anchors_aliases_and_merges() -> None:
    text = dedent(
        """
        defaults: &defaults
          retries: 2
          timeout: 30
        steps:
          - &first
            name: a
            <<: *defaults
          - *first
          - <<: [*defaults, {retries: 9, extra: 1}]
            timeout: 5
        """
    ).lstrip("\n")
    doc = parse_document(text, "yaml")
    assert doc.data["steps"][:2] == yaml.safe_load(text)["steps"][:2]
    assert doc.data["steps"][0] is doc.data["steps"][1]  # an alias shares, as in safe_load
    # earlier merge sources win (YAML merge spec; PyYAML's flatten_mapping dedupes by object
    # identity, so its answer varies); explicit keys win over merged ones
    assert doc.data["steps"][2] == {"retries": 2, "timeout": 5, "extra": 1}
    assert doc.problems == []
    assert doc.lines[("steps", 0, "retries")] == 7  # merged keys: the `<<` line
    assert doc.lines[("steps", 2, "timeout")] == 10  # explicit keys win
    assert doc.line_of(("steps", 1, "name")) == 5  # the aliased item


def test_yaml_multiple_documents_is_a_problem() -> None:
    doc = parse_document("a: 1\n---\nb: 2\n", "yaml", "m.yaml")
    assert doc.data == {"a": 1}
    [problem] = doc.problems
    assert problem.line == 3 and "2 YAML documents" in problem.message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("name: x\nsteps:\n  - a: 1\n   b: 2\n", 4, "did not find expected '-' indicator"),
        ("a: [1, 2\nb: 3\n", 2, "did not find expected ',' or ']'"),
        ("a:\n\tb: 1\n", 2, "cannot start any token"),
        ("a: 1\nb: !foo 1\n", 2, "could not determine a constructor for the tag '!foo'"),
        ("a: &x [1, *x]\n", 1, "recursive alias"),
        ("? [1]\n: 2\n", 1, "unhashable key"),
        ("a: 1\nb: x\x01\n", 2, "control characters are not allowed"),
    ],
)
def test_yaml_errors_carry_the_line(text: str, line: int, words: str) -> None:
    problem = parse_error(text, "yaml")
    assert problem.line == line
    assert words in problem.message


def test_yaml_is_safe_only() -> None:
    problem = parse_error("a: !!python/object/apply:os.system ['true']\n", "yaml")
    assert "constructor" in problem.message


# --- TOML -----------------------------------------------------------------------------------

TOML_TASK = """\
name = "nightly"
description = '''
key = "not a key"
[not.a.table]
'''

[schedule]
cron = "0 3 * * *"

[[steps]]
name = "a"
arguments = [
  "x", # a ] in a comment
  "[y]",
]
[steps.Command]
command = "echo"

[[steps]]
name = "b"
env."A B".c = "1"
"quoted.key" = 2

[[steps.retry]]
delay = 1
[[steps.retry]]
delay = 2
"""


def test_toml_lines_for_tables_arrays_of_tables_and_keys(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "t.toml", TOML_TASK))
    assert doc.data["steps"][1]["env"] == {"A B": {"c": "1"}}
    assert doc.lines == {
        (): 1,
        ("name",): 1,
        ("description",): 2,
        ("schedule",): 7,
        ("schedule", "cron"): 8,
        ("steps",): 10,
        ("steps", 0): 10,
        ("steps", 0, "name"): 11,
        ("steps", 0, "arguments"): 12,
        ("steps", 0, "Command"): 16,
        ("steps", 0, "Command", "command"): 17,
        ("steps", 1): 19,
        ("steps", 1, "name"): 20,
        ("steps", 1, "env"): 21,
        ("steps", 1, "env", "A B"): 21,
        ("steps", 1, "env", "A B", "c"): 21,
        ("steps", 1, "quoted.key"): 22,
        ("steps", 1, "retry"): 24,
        ("steps", 1, "retry", 0): 24,
        ("steps", 1, "retry", 0, "delay"): 25,
        ("steps", 1, "retry", 1): 26,
        ("steps", 1, "retry", 1, "delay"): 27,
    }
    assert doc.line_of(("steps", 0, "arguments", 1)) == 12  # array items: their key's line


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('name = "x"\n[steps\n', 2, "Expected ']' at the end of a table declaration (column 7)"),
        ("a = 1\nb = \n\nc = 2\n", 2, "Invalid value (column 5)"),
        ("a = 1\na = 2\n", 2, "Cannot overwrite a value"),
        ("a = 1\nb = [1,\n\n", 2, "(at the end)"),
    ],
)
def test_toml_syntax_errors_carry_the_line(text: str, line: int, words: str) -> None:
    problem = parse_error(text, "toml")
    assert problem.line == line
    assert problem.message.startswith("TOML syntax error: ") and words in problem.message
    assert "(at line" not in problem.message
