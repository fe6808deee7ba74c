"""``flowtaskd.core.plan.plan_run``: what a run would do, resolved at a given time, secrets
masked, without running anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowtaskd.core.plan import plan_run
from flowtaskd.tasks import TaskPile

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def pile(*steps: dict[str, Any], **header: Any) -> TaskPile:
    return TaskPile({"name": "p", **header, "steps": list(steps)})


def by_id(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in plan["steps"]}


def test_header_of_the_plan() -> None:
    plan = plan_run(pile({"Dummy": {"name": "a"}}, params={"x": 1}, timeout=60), {"y": 2}, AT)
    assert plan["task"] == "p"
    assert plan["at"] == "2026-03-01T12:30:00+00:00"
    assert plan["params"] == {"x": 1, "y": 2}
    assert plan["timeout"] == 60
    assert plan["levels"] == [["a"]]
    assert plan["groups"] == {}


def test_params_override_defaults_and_masks_resolve_at_the_time() -> None:
    p = pile(
        {"Command": {"name": "a", "command": ["echo", "{day}", "{today:%Y%m%d}", "{task}"]}},
        params={"day": "mon"},
    )
    (step,) = plan_run(p, {"day": "tue"}, AT)["steps"]
    assert step["params"]["command"] == ["echo", "tue", "20260301", "p"]
    assert step["error"] is None


def test_env_cwd_and_precondition_are_resolved_too() -> None:
    p = pile(
        {
            "Command": {
                "name": "a",
                "command": ["true"],
                "env": {"B": "{yesterday}"},
                "cwd": "/tmp/{today}",
                "precondition": ["test", "{d}"],
            }
        },
        env={"A": "x"},
        params={"d": "1"},
    )
    (step,) = plan_run(p, {}, AT)["steps"]
    assert step["env"] == {"A": "x", "B": "2026-02-28"}
    assert step["cwd"] == "/tmp/2026-03-01"
    assert step["precondition"] == ["test", "1"]


def test_outputs_and_group_items_are_labels() -> None:
    p = pile(
        {"Command": {"name": "a", "command": ["date"]}},
        {"FileList": {"name": "ls", "path": "data", "to_group": "g", "depends": []}},
        {"Command": {"name": "each", "command": ["wc", "{file}"], "Group": "g"}},
        {"Command": {"name": "b", "command": ["echo", "{steps.a.output}"], "depends": "a"}},
    )
    plan = plan_run(p, {}, AT)
    steps = by_id(plan)
    assert steps["b"]["params"]["command"] == ["echo", "<output of a>"]
    assert steps["each"]["params"]["command"] == ["wc", "<item.file>"]
    assert steps["each"]["group"] == "g" and steps["ls"]["to_group"] == "g"
    assert plan["groups"] == {"g": ["each"]}
    assert steps["b"]["depends"] == ["a"]


def test_unresolvable_placeholder_is_reported_on_its_step() -> None:
    p = pile({"Command": {"name": "a", "command": ["echo", "{nope}"], "env": {"E": "v"}}})
    (step,) = plan_run(p, {}, AT)["steps"]
    assert "{nope}" in step["error"]
    assert step["params"]["command"] == ["echo", "{nope}"]  # as written
    assert step["env"] == {}


def test_secrets_masked_from_params_env_and_header() -> None:
    p = pile(
        {"Command": {"name": "a", "command": ["x", "{token}", "id={token}!", "k3y-value"]}},
        secrets=["token", "key", "pw"],
        params={"token": "hunter2"},
        env={"pw": "p4ss"},
    )
    plan = plan_run(p, {}, AT, env={"key": "k3y-value"})
    (step,) = plan["steps"]
    assert step["error"] is None
    assert step["params"]["command"] == ["x", "***", "id=***!", "***"]  # env's value too
    assert plan["params"] == {"token": "***"}
    assert step["env"] == {"pw": "***"}
    text = repr(plan)
    assert "hunter2" not in text and "k3y-value" not in text and "p4ss" not in text


def test_longer_secret_masked_first() -> None:
    p = pile(
        {"Command": {"name": "a", "command": ["{a}{b}"]}},
        secrets=["a", "b"],
        params={"a": "abc", "b": "abcdef"},
    )
    (step,) = plan_run(p, {}, AT)["steps"]
    assert step["params"]["command"] == ["******"]  # "abcabcdef": abcdef first, then abc


def test_levels_follow_the_dag_with_a_group_as_one_unit() -> None:
    p = pile(
        {"Dummy": {"name": "r1"}},
        {"Dummy": {"name": "r2", "depends": []}},
        {"FileList": {"name": "ls", "path": ".", "to_group": "g", "depends": ["r1"]}},
        {"Dummy": {"name": "m1", "Group": "g"}},
        {"Dummy": {"name": "m2", "Group": "g", "depends": ["m1"]}},
        {"Dummy": {"name": "end", "depends": ["m2", "r2"]}},
    )
    assert plan_run(p, {}, AT)["levels"] == [["r1", "r2"], ["ls"], ["group:g"], ["end"]]


def test_retry_and_timeout_policy_per_step() -> None:
    p = pile(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b", "retry": {"attempts": 3, "delay": "2s"}, "timeout": "1m"}},
        retry={"attempts": 2},
    )
    steps = by_id(plan_run(p, {}, AT))
    assert steps["a"]["retry"]["attempts"] == 2  # the task's default
    assert steps["b"]["retry"]["attempts"] == 3 and steps["b"]["retry"]["delay"] == 2.0
    assert steps["b"]["timeout"] == 60.0 and steps["a"]["timeout"] is None
    assert steps["a"]["trigger_rule"] == "all_success"
