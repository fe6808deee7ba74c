"""Placeholders and masks (``core.values``): substitution into every string of a
parameter tree, escaped braces, format specs, and errors that name the key and suggest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowtaskd.core.values import has_braces, mask_values, placeholders, resolve
from flowtaskd.errors import PlaceholderError

NOW = datetime(2026, 3, 1, 0, 30, tzinfo=UTC)


def test_masks_are_today_yesterday_and_now() -> None:
    masks = mask_values(NOW)
    assert str(masks["today"]) == "2026-03-01"
    assert str(masks["yesterday"]) == "2026-02-28"
    assert masks["now"] == NOW


def test_resolve_fills_every_string_of_a_tree_and_copies_it() -> None:
    params = {"a": "{day}", "b": ["x{n}", {"c": "{day}-{n}"}], "d": 3}
    got = resolve(params, {"day": "mon", "n": 7})
    assert got == {"a": "mon", "b": ["x7", {"c": "mon-7"}], "d": 3}
    assert params["a"] == "{day}"  # the original is left alone


def test_format_specs_and_escaped_braces() -> None:
    values = {**mask_values(NOW), "n": 5}
    assert resolve("{now:%Y%m%d}", values) == "20260301"
    assert resolve("{{literal}} {n}", values) == "{literal} 5"
    assert placeholders("{{not}} {a} {b:%d}") == ["a", "b"]


def test_an_unknown_placeholder_names_where_and_suggests() -> None:
    with pytest.raises(PlaceholderError) as err:
        resolve({"cmd": ["echo", "{dya}"]}, {"day": "mon"})
    text = str(err.value)
    assert "dya" in text and "params.cmd[1]" in text and "day" in text


def test_has_braces_looks_into_nested_values() -> None:
    assert has_braces({"a": [1, {"b": "x{y}"}]})
    assert not has_braces({"a": [1, {"b": "plain"}], "c": None})
