"""``flowtaskd.core._jsonpos.JsonReader``: JSON decoded as ``json.loads`` does, with the line
of every key and item and every duplicate key recorded."""

from __future__ import annotations

import json

import pytest

from flowtaskd.core._jsonpos import JsonReader

TEXT = """{
  "name": "t",
  "steps": [
    {"Command": {"command": ["a", "b"]}},
    {
      "Dummy": {}
    }
  ],
  "n": -1.5e3, "ok": true, "none": null
}"""


def test_data_equals_json_loads() -> None:
    assert JsonReader(TEXT).read() == json.loads(TEXT)


def test_lines_of_keys_and_items() -> None:
    reader = JsonReader(TEXT)
    reader.read()
    assert reader.lines[()] == 1
    assert reader.lines[("name",)] == 2
    assert reader.lines[("steps",)] == 3
    assert reader.lines[("steps", 0)] == 4
    assert reader.lines[("steps", 0, "Command", "command", 1)] == 4
    assert reader.lines[("steps", 1)] == 5
    assert reader.lines[("steps", 1, "Dummy")] == 6
    assert reader.lines[("ok",)] == 9


def test_duplicate_key_keeps_the_later_value_and_records_both_lines() -> None:
    reader = JsonReader('{\n"a": 1,\n"b": 2,\n"a": 3\n}')
    assert reader.read() == {"a": 3, "b": 2}
    assert reader.duplicates == [(("a",), 4, 2)]
    assert reader.lines[("a",)] == 4


def test_escaped_keys_and_strings_decode() -> None:
    text = '{"a\\u00e9\\n": "x\\"y", "plain": "\\t"}'
    reader = JsonReader(text)
    assert reader.read() == json.loads(text)
    assert ("a\u00e9\n",) in reader.lines


@pytest.mark.parametrize(
    "text",
    ["1", "-0", "2.5", "1e2", '"s"', "[]", "{}", "[[], {}]", "NaN", "-Infinity", " [1 ,2 ] "],
)
def test_scalars_and_empty_containers(text: str) -> None:
    got, want = JsonReader(text).read(), json.loads(text)
    if isinstance(want, float) and want != want:  # NaN
        assert got != got
    else:
        assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    "text",
    ["", "{", '{"a" 1}', '{"a": 1,}', "[1,]", "[1}", '{"a": 1]', "tru", "{} x", "[1 2]", "{1: 2}"],
)
def test_invalid_json_raises_a_bare_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        JsonReader(text).read()
    with pytest.raises(ValueError):
        json.loads(text)
