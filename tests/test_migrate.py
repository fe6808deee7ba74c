"""``flowtaskd.core.migrate``: what an upstream flowtask file needs here (components upstream
ships and flowtaskd does not, names neither has), whether a file is upstream-style, and the
steps the DAG may start before a step written above them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components.registry import registry
from flowtaskd.core.migrate import (
    UPSTREAM_COMPONENTS,
    is_upstream_style,
    needed_components,
    order_notes,
)
from flowtaskd.tasks import TaskPile, load_pile


def test_needed_components_sorts_missing_from_unknown_once_each_in_file_order() -> None:
    data = {
        "steps": [
            {"QueryToPandas": {}},
            {"Frobnicate": {}},
            {"Command": {"command": ["true"]}},  # flowtaskd has it
            {"NextTask": {"task": "x"}},  # a continuation, never a component
            {"TableOutput": {}},
            {"QueryToPandas": {}},
            {"Frobnicate": {}},
        ]
    }
    assert needed_components(data, registry()) == (["QueryToPandas", "TableOutput"], ["Frobnicate"])


def test_needed_components_takes_the_catalog_it_is_given() -> None:
    data: dict[str, Any] = {"steps": [{"Dummy": {}}, {"Mine": {}}]}
    assert needed_components(data, {"Mine": object(), "Dummy": object()}) == ([], [])
    assert needed_components(data, {}) == (["Dummy"], ["Mine"])  # Dummy is upstream's too


@pytest.mark.parametrize(
    "data",
    [None, [], "steps", {}, {"steps": None}, {"steps": {"Dummy": {}}}, {"steps": ["Dummy", 3]}],
)
def test_needed_components_of_a_file_without_a_step_list_is_nothing(data: Any) -> None:
    assert needed_components(data, registry()) == ([], [])


def test_steps_that_are_not_one_component_are_left_to_the_validator() -> None:
    data: dict[str, Any] = {"steps": [{"QueryToPandas": {}, "TableOutput": {}}, {}, {"Foo": {}}]}
    assert needed_components(data, registry()) == ([], ["Foo"])


def test_the_upstream_list_holds_upstreams_names() -> None:
    assert {"QueryToPandas", "TableOutput", "NextTask", "tMap"} <= UPSTREAM_COMPONENTS
    assert "Command" not in UPSTREAM_COMPONENTS and "Python" not in UPSTREAM_COMPONENTS


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "t", "steps": [{"Dummy": {"depends": []}}]}, True),
        ({"name": "t", "description": "x", "steps": [{"PrintMessage": {}}]}, True),
        ({"name": "t", "steps": [{"Dummy": {}, "Other": {}}, "x"]}, True),  # others: skipped
        ({"name": "t", "steps": None}, True),
        ({"name": "t", "schedule": "@daily", "steps": []}, False),
        ({"name": "t", "order": "dag", "steps": []}, False),
        ({"name": "t", "max_active_steps": 2, "steps": []}, False),
        ({"name": "t", "steps": [{"Command": {"command": ["true"]}}]}, False),
        ({"name": "t", "steps": [{"RunTask": {"task": "x"}}]}, False),
        ({"name": "t", "steps": [{"Dummy": {"trigger_rule": "all_done"}}]}, False),
        ({"name": "t", "steps": [{"Dummy": {"retry": {"attempts": 2}}}]}, False),
        ({"name": "t", "steps": [{"Dummy": {"executor": "dask"}}]}, False),
        ("name: t", False),
        (None, False),
    ],
)
def test_is_upstream_style_means_none_of_flowtaskds_own_keys(data: Any, expected: bool) -> None:
    assert is_upstream_style(data) is expected


def _pile(*steps: dict[str, Any], **header: Any) -> TaskPile:
    return TaskPile({"name": "t", **header, "steps": list(steps)})


def test_a_chain_in_file_order_has_no_notes() -> None:
    assert order_notes(_pile({"Dummy": {}}, {"PrintMessage": {"message": "x"}})) == []


def test_a_step_free_of_the_step_above_it_is_noted_with_the_fix() -> None:
    pile = _pile(
        {"Dummy": {}},
        {"PrintMessage": {"message": "x", "depends": "Dummy_1"}},
        {"Dummy": {"depends": "Dummy_1"}},
    )
    ((sid, line, note),) = order_notes(pile)
    assert (sid, line) == ("Dummy_3", None)  # a dict has no lines
    assert note == (
        "note: `Dummy_3` can start before `PrintMessage_2`, written above it, as `depends` "
        "allows; upstream runs steps in file order: add `order: file` to do the same"
    )


def test_every_step_above_that_is_no_ancestor_is_named() -> None:
    pile = _pile(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b", "depends": []}},
        {"Dummy": {"name": "c", "depends": ["a"]}},
        {"Dummy": {"name": "d", "depends": ["c", "b"]}},
    )
    notes = {sid: note for sid, _, note in order_notes(pile)}
    assert set(notes) == {"b", "c"}
    assert "`b` can start before `a`," in notes["b"]
    assert "`c` can start before `b`," in notes["c"]


def test_members_of_one_group_are_not_noted_against_each_other() -> None:
    pile = _pile(
        {"ParamIterator": {"params": {"x": [1, 2]}, "to_group": "G"}},
        {"Dummy": {"Group": "G"}},
        {"Dummy": {"Group": "G", "depends": "ParamIterator_1"}},
        {"Dummy": {"depends": "ParamIterator_1"}},
    )
    assert [s for s, _, _ in order_notes(pile)] == ["Dummy_3"]
    (note,) = [n for _, _, n in order_notes(pile)]
    assert "before `Dummy_2_1`, `Dummy_2_2`, written above it" in note


def test_order_file_or_flowtaskds_own_keys_mean_no_notes() -> None:
    free: tuple[dict[str, Any], ...] = ({"Dummy": {}}, {"Dummy": {"depends": []}})
    assert len(order_notes(_pile(*free))) == 1
    assert order_notes(_pile(*free, order="file")) == []
    assert order_notes(_pile(*free, timeout=60)) == []


def test_notes_of_a_task_file_carry_the_steps_line(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsteps:\n  - Dummy: {}\n  - Dummy:\n      depends: []\n")
    assert [(s, line) for s, line, _ in order_notes(load_pile(path))] == [("Dummy_2", 4)]
