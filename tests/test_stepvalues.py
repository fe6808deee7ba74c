"""``flowtaskd.core.stepvalues.StepValues``: upstream's per-step values. Variables carried
down the pile (an earlier value kept), masks (the task's, a step's own winning, a given
value overriding), conditions for one step, ``#name#`` whole values and ``file.value``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowtaskd.core.masks import Masks
from flowtaskd.core.stepvalues import StepValues
from flowtaskd.tasks import TaskPile

NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


def _values(*steps: dict[str, Any], **header: Any) -> StepValues:
    return StepValues(TaskPile({"name": "t", **header, "steps": list(steps)}))


def test_a_plain_pile_uses_nothing_and_no_step_is_involved() -> None:
    sv = _values({"Dummy": {}}, {"Dummy": {}})
    assert sv.used is False
    assert not sv.involved("Dummy_1", {}) and not sv.involved("Dummy_2", {"x": 1})
    assert sv.values("Dummy_1", {"x": 1}, NOW) == ({}, sv.values("Dummy_2", {}, NOW)[1])
    assert sv.values("Dummy_1", {}, NOW)[1].values == {}


def test_a_file_mapping_involves_the_step_even_in_a_plain_pile() -> None:
    sv = _values({"Dummy": {}})
    assert sv.involved("Dummy_1", {"file": {"pattern": "x"}})
    assert not sv.involved("Dummy_1", {"file": "x.csv"})


def test_variables_flow_down_and_an_earlier_value_is_kept() -> None:
    sv = _values(
        {"Dummy": {"name": "one", "variables": {"a": "step", "b": "one"}}},
        {"Dummy": {"name": "two", "variables": {"b": "two", "c": "two"}}},
        {"Dummy": {"name": "three"}},
        variables={"a": "task"},
    )
    assert sv.used
    assert sv.values("one", {}, NOW)[0] == {"a": "task", "b": "one"}
    assert sv.values("two", {}, NOW)[0] == {"a": "task", "b": "one", "c": "two"}
    assert sv.values("three", {}, NOW)[0] == {"a": "task", "b": "one", "c": "two"}
    assert all(sv.involved(s, {}) for s in ("one", "two", "three"))


def test_variables_follow_upstreams_pile_order_where_a_group_moves_its_members_up() -> None:
    # upstream runs a group right after its parent, whatever the file order
    sv = _values(
        {"ParamIterator": {"params": {"x": [1]}, "to_group": "G"}},
        {"Dummy": {"name": "after", "variables": {"v": "after"}}},
        {"Dummy": {"name": "member", "Group": "G", "variables": {"v": "member"}}},
    )
    assert sv.values("member", {}, NOW)[0] == {"v": "member"}
    assert sv.values("after", {}, NOW)[0] == {"v": "member"}


def test_conditions_are_for_their_step_only_and_win_over_variables() -> None:
    sv = _values(
        {"Dummy": {"name": "a", "variables": {"k": "var"}, "conditions": {"k": "cond", "n": 1}}},
        {"Dummy": {"name": "b"}},
    )
    assert sv.values("a", {}, NOW)[0] == {"k": "cond", "n": 1}
    assert sv.values("b", {}, NOW)[0] == {"k": "var"}


def test_masks_evaluate_at_now_and_a_steps_own_mask_wins() -> None:
    sv = _values(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b", "masks": {"{day}": ["yesterday"]}}},
        masks={"{day}": ["today", {"mask": "%Y-%m-%d"}], "{year}": ["current_year"]},
    )
    extra, masks = sv.values("a", {}, NOW)
    assert extra == {"day": "2026-03-11", "year": 2026} and masks.values == extra
    assert sv.values("b", {}, NOW)[0] == {"day": "2026-03-10", "year": 2026}
    assert sv.task_masks == {"{day}": ["today", {"mask": "%Y-%m-%d"}], "{year}": ["current_year"]}


def test_a_param_or_variable_with_a_value_overrides_a_mask_of_its_name() -> None:
    sv = _values(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b", "variables": {"day": "from-variable"}}},
        masks={"{day}": ["today", {"mask": "%Y%m%d"}]},
    )
    assert sv.values("a", {"day": "given"}, NOW)[0] == {"day": "given"}
    assert sv.values("a", {"day": ""}, NOW)[0] == {"day": "20260311"}  # empty: not given
    assert sv.values("b", {}, NOW)[0] == {"day": "from-variable"}


def test_whole_masks_replace_whole_strings_by_values_of_any_type() -> None:
    sv = _values({"Dummy": {}}, masks={"#year#": ["current_year"]})
    extra, masks = sv.values("Dummy_1", {}, NOW)
    assert extra == {} and masks.whole == {"#year#": 2026}
    params = {"n": "#year#", "l": ["#year#", "in #year#"], "m": {"k": "#year#"}}
    assert StepValues.whole(params, masks) == {
        "n": 2026,
        "l": [2026, "in #year#"],
        "m": {"k": 2026},
    }
    assert StepValues.whole(params, Masks({}, {})) is params  # nothing to replace: the same object


def test_file_value_from_a_mask_function_a_value_name_or_text() -> None:
    def pattern(file: dict[str, Any], values: dict[str, Any] | None = None) -> Any:
        out = StepValues.file_pattern({"file": file, "x": 1}, values or {}, NOW)
        assert out["x"] == 1 and out["file"].get("value") == file.get("value")
        return out["file"]["pattern"]

    assert pattern({"pattern": "s_{value}.csv", "value": ["yesterday", {"mask": "%d"}]}) == (
        "s_10.csv"
    )
    assert pattern({"pattern": "s_{value}.csv", "value": "day"}, {"day": "D"}) == "s_D.csv"
    assert pattern({"pattern": "s_{value}.csv", "value": "literal"}) == "s_literal.csv"
    assert pattern({"pattern": "s_{value}_{value}", "value": 7}) == "s_7_7"
    assert pattern({"pattern": "s_{value}.csv"}) == "s_{value}.csv"  # no value: as written


def test_params_without_a_file_pattern_are_returned_as_they_are() -> None:
    for params in ({}, {"file": "a.csv"}, {"file": {"value": "x"}}):
        assert StepValues.file_pattern(params, {"x": 1}, NOW) is params
