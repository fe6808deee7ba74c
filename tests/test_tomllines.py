"""``flowtaskd.core._tomllines.toml_lines``: the line of each key path of TOML text, headers,
arrays of tables, dotted and quoted keys, skipping multi-line strings and arrays."""

from __future__ import annotations

import tomllib

from flowtaskd.core._tomllines import toml_lines

TEXT = '''name = "t"
params.day = "x"

[[steps]]
[steps.Command]
command = ["a",
  "b = 1",
]
env = { A = "1" }

[[steps]]
[steps.Dummy]
note = """
fake = 1
[not.a.table]
"""
"quoted key" = 1
'single' = 2
after = 3 # comment [x]
'''


def test_text_is_valid_toml() -> None:
    assert tomllib.loads(TEXT)["steps"][1]["Dummy"]["after"] == 3


def test_top_level_and_dotted_keys() -> None:
    lines = toml_lines(TEXT)
    assert lines[()] == 1
    assert lines[("name",)] == 1
    assert lines[("params", "day")] == 2
    assert lines[("params",)] == 2  # a dotted key implies its table


def test_arrays_of_tables_count_their_items() -> None:
    lines = toml_lines(TEXT)
    assert lines[("steps", 0)] == 4
    assert lines[("steps",)] == 4
    assert lines[("steps", 0, "Command")] == 5
    assert lines[("steps", 0, "Command", "command")] == 6
    assert lines[("steps", 0, "Command", "env")] == 9
    assert lines[("steps", 1)] == 11
    assert lines[("steps", 1, "Dummy")] == 12


def test_multi_line_values_are_skipped() -> None:
    lines = toml_lines(TEXT)
    assert ("steps", 0, "Command", "b") not in lines  # inside a multi-line array
    assert ("steps", 1, "Dummy", "fake") not in lines  # inside a multi-line string
    assert ("not",) not in lines and ("steps", 1, "not") not in lines
    assert lines[("steps", 1, "Dummy", "quoted key")] == 17
    assert lines[("steps", 1, "Dummy", "single")] == 18
    assert lines[("steps", 1, "Dummy", "after")] == 19


def test_inline_table_keys_report_their_key_line() -> None:
    lines = toml_lines(TEXT)
    assert ("steps", 0, "Command", "env", "A") not in lines


def test_nested_array_of_tables_under_an_array_item() -> None:
    text = "[[a]]\n[[a.b]]\nx = 1\n[[a.b]]\nx = 2\n[[a]]\n[[a.b]]\nx = 3\n"
    assert tomllib.loads(text)["a"][1]["b"][0]["x"] == 3
    lines = toml_lines(text)
    assert lines[("a", 0, "b", 0, "x")] == 3
    assert lines[("a", 0, "b", 1, "x")] == 5
    assert lines[("a", 1)] == 6
    assert lines[("a", 1, "b", 0, "x")] == 8


def test_table_header_with_quoted_and_spaced_parts() -> None:
    text = '[ "a.b" . c ]\nk = 1\n'
    assert tomllib.loads(text) == {"a.b": {"c": {"k": 1}}}
    lines = toml_lines(text)
    assert lines[("a.b", "c", "k")] == 2
    assert lines[("a.b",)] == 1
