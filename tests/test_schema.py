"""The task file format: every rule of issue 2, in JSON, YAML and TOML, asserted as the exact
text a user sees (``FILE:LINE: KEY.PATH: message (hint)``).

Most cases are written once as Python data and dumped to the three formats; the expected
line is looked up in the dumped text, so each assertion is exact for every format. The
helpers (``dump``, ``write_task``, ``problems``, ``line``) are shared with test_pile.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowtaskd.components.registry import plugin_errors, registry
from flowtaskd.core.cron import parse_cron
from flowtaskd.core.eventblock import EVENT_ACTION_MODELS, EVENT_NAMES
from flowtaskd.core.events import STEP_EVENTS, TASK_EVENTS, UPSTREAM_EVENTS
from flowtaskd.core.options import STEP_OPTION_KEYS, UPSTREAM_VALUE_KEYS, Backoff, Overlap
from flowtaskd.core.rules import SkipError, TriggerRule
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import load_pile, load_task

FORMATS = ("yaml", "json", "toml")
PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"


# --- helpers (also used by test_pile.py) ---------------------------------------------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"TOML has no {type(value).__name__}")


def to_toml(data: dict[str, Any]) -> str:
    """A task dict as TOML: scalars, then ``[tables]``, then ``[[steps]]`` + ``[steps.X]``."""
    out = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in data.items()
        if k != "steps" and not isinstance(v, dict)
    ]
    for key, table in data.items():
        if key != "steps" and isinstance(table, dict):
            out += ["", f"[{_toml_key(key)}]"]
            out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    for step in data.get("steps", []):
        ((component, params),) = step.items()
        out += ["", "[[steps]]", f"[steps.{_toml_key(component)}]"]
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in (params or {}).items()]
    return "\n".join(out) + "\n"


def dump(data: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return to_toml(data)


def write_task(data: dict[str, Any], fmt: str, stem: str = "task") -> tuple[str, str]:
    """Write ``data`` as ``<stem>.<fmt>`` in the current folder; (file name, text)."""
    text = dump(data, fmt)
    name = f"{stem}.{fmt}"
    Path(name).write_text(text)
    return name, text


def problems(name: str) -> list[str]:
    with pytest.raises(TaskParseError) as info:
        load_task(name)
    return [str(p) for p in info.value.problems]


def line(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the ``nth`` line containing ``needle``."""
    hits = [no for no, row in enumerate(text.splitlines(), 1) if needle in row]
    assert len(hits) >= nth, f"{needle!r} not found {nth} times in:\n{text}"
    return hits[nth - 1]


def key(fmt: str, name: str) -> str:
    """How a mapping key appears on its line in the dumped format."""
    return {"yaml": f"{name}:", "json": f'"{name}":', "toml": f"{name} ="}[fmt]


def step_key(fmt: str, component: str) -> str:
    """How a step's component key appears (the line of ``steps[i].Component``)."""
    return {"yaml": f"- {component}:", "json": f'"{component}":', "toml": f"[steps.{component}]"}[
        fmt
    ]


def task(*steps: dict[str, Any], **header: Any) -> dict[str, Any]:
    return {"name": header.pop("name", "t"), **header, "steps": list(steps)}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- every problem at once, schema and graph together ---------------------------------------

NIGHTLY = {
    "yaml": """\
name: nightly
description: three mistakes, one of each kind
steps:
  - Command:
      name: fetch
      command: [echo, fetch]
  - Dummy:
      depends: fech
  - Command:
      timeout: 5m
  - Comand: {command: [echo, typo]}
""",
    "json": """\
{
  "name": "nightly",
  "description": "three mistakes, one of each kind",
  "steps": [
    {"Command": {"name": "fetch", "command": ["echo", "fetch"]}},
    {"Dummy": {
      "depends": "fech"
    }},
    {"Command": {
      "timeout": "5m"
    }},
    {"Comand": {"command": ["echo", "typo"]}}
  ]
}
""",
    "toml": """\
name = "nightly"
description = "three mistakes, one of each kind"

[[steps]]
[steps.Command]
name = "fetch"
command = ["echo", "fetch"]

[[steps]]
[steps.Dummy]
depends = "fech"

[[steps]]
[steps.Command]
timeout = "5m"

[[steps]]
Comand = { command = ["echo", "typo"] }
""",
}
NIGHTLY_LINES = {"yaml": (8, 9, 11), "json": (7, 9, 12), "toml": (11, 14, 18)}


def test_three_distinct_errors_give_three_problems_in_file_order(fmt: str) -> None:
    Path(f"nightly.{fmt}").write_text(NIGHTLY[fmt])
    a, b, c = NIGHTLY_LINES[fmt]
    assert problems(f"nightly.{fmt}") == [
        f"nightly.{fmt}:{a}: steps[1].Dummy.depends: depends on unknown step `fech` "
        "(nearest known ids: `fetch`)",
        f"nightly.{fmt}:{b}: steps[2].Command.command: field required",
        f"nightly.{fmt}:{c}: steps[3]: unknown component `Comand` (did you mean `Command`?)",
    ]


def test_graph_problems_around_invalid_steps_are_reported_with_schema_problems(fmt: str) -> None:
    data = task(
        {"Dummy": {"name": "a", "depends": "c"}},
        {"Dummy": {"name": "b", "depends": "a", "mesage": "typo"}},  # invalid: still an edge
        {"Dummy": {"name": "c", "depends": "b"}},
        {"Command": {"name": "d", "depends": "nope"}},  # invalid and unknown depends
    )
    name, text = write_task(data, fmt)
    assert problems(name) == [
        f"{name}:{line(text, 'depends', 1)}: steps[0].Dummy.depends: dependency cycle: "
        "a -> b -> c -> a (`a -> b` means b waits for a; remove one of these dependencies)",
        f"{name}:{line(text, 'mesage')}: steps[1].Dummy.mesage: unknown key "
        "(did you mean `message`?)",
        f"{name}:{line(text, step_key(fmt, 'Command'))}: steps[3].Command.command: field required",
        f"{name}:{line(text, 'depends', 4)}: steps[3].Command.depends: depends on unknown "
        "step `nope` (nearest known ids: `a`, `b`, `c`)",
    ]


def test_unknown_key_has_a_did_you_mean_hint(fmt: str) -> None:
    name, text = write_task(task({"Command": {"comand": ["echo", "hi"]}}), fmt)
    assert problems(name) == [
        f"{name}:{line(text, step_key(fmt, 'Command'))}: steps[0].Command.command: field required",
        f"{name}:{line(text, key(fmt, 'comand'))}: steps[0].Command.comand: unknown key "
        "(did you mean `command`?)",
    ]


def test_an_unknown_key_deeper_down_is_matched_against_its_own_model(fmt: str) -> None:
    data = task({"Dummy": {"retry": {"atempts": 2}}}, retry={"dealy": 1})
    name, text = write_task(data, fmt)
    assert problems(name) == [
        f"{name}:{line(text, 'dealy')}: retry.dealy: unknown key (did you mean `delay`?)",
        f"{name}:{line(text, 'atempts')}: steps[0].Dummy.retry.atempts: unknown key "
        "(did you mean `attempts`?)",
    ]


def test_unknown_key_hint_includes_step_options(fmt: str) -> None:
    name, text = write_task(task({"Dummy": {"dpends": []}}), fmt)
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'dpends'))}: steps[0].Dummy.dpends: unknown key "
        "(did you mean `depends`?)"
    ]


def test_unknown_component_has_a_hint_or_lists_the_known_ones(fmt: str) -> None:
    name, text = write_task(task({"FileLst": {"path": "."}}, {"Frobnicate": {}}), fmt)
    known = ", ".join(sorted(registry()))
    assert problems(name) == [
        f"{name}:{line(text, step_key(fmt, 'FileLst'))}: steps[0]: unknown component "
        "`FileLst` (did you mean `FileList`?)",
        f"{name}:{line(text, step_key(fmt, 'Frobnicate'))}: steps[1]: unknown component "
        f"`Frobnicate` (known: {known})",
    ]


@pytest.mark.parametrize("bad", [["Dummy"], [{"Dummy": {}, "Command": {}}], [{}]])
def test_a_step_is_a_mapping_with_one_key(bad: list[Any]) -> None:
    name, _ = write_task(task({"Dummy": {}}) | {"steps": [{"Dummy": {}}, *bad]}, "yaml")
    (only,) = problems(name)
    assert only.startswith(f"{name}:4: steps[1]: a step is a mapping with exactly one key")
    assert only.endswith("(e.g. `- Command: {command: [echo, hi]}`)")


def test_step_parameters_must_be_a_mapping_and_null_means_none(fmt: str) -> None:
    if fmt == "toml":
        pytest.skip("TOML has no null, and a step table is always a mapping")
    name, text = write_task(task({"Dummy": None}, {"Command": "echo hi"}), fmt)
    assert problems(name) == [
        f"{name}:{line(text, step_key(fmt, 'Command'))}: steps[1].Command: the parameters of "
        "a Command step are a mapping, got text 'echo hi' "
        "(e.g. `- Command: {command: [echo, hi]}`)"
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "t.yaml:1: a task is a mapping with `name` and `steps`, got list"),
        ({"name": "x", "steps": []}, "t.yaml:2: steps: a task needs at least one step"),
        ({"steps": [{"Dummy": {}}]}, "t.yaml:1: name: field required"),
        (
            {"name": "x", "steps": {"Dummy": {}}},
            "t.yaml:2: steps: should be a valid list, got a mapping",
        ),
    ],
)
def test_the_top_level_shape(data: Any, expected: str) -> None:
    Path("t.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert problems("t.yaml") == [expected]


def test_an_empty_file_is_a_problem() -> None:
    Path("t.yaml").write_text("# nothing yet\n")
    assert problems("t.yaml") == [
        "t.yaml:1: a task is a mapping with `name` and `steps`, got nothing"
    ]


# --- step ids and depends ---------------------------------------------------------------------


def test_step_ids_count_steps_from_one_in_file_order_and_name_overrides(fmt: str) -> None:
    data = task(
        {"Dummy": {}},
        {"Command": {"command": ["true"], "name": "build"}},
        {"Command": {"command": ["true"]}},
        {"Dummy": {}},
    )
    name, _ = write_task(data, fmt)
    assert [s.id for s in load_task(name).steps] == ["Dummy_1", "build", "Command_3", "Dummy_4"]


def test_step_ids_must_be_unique(fmt: str) -> None:
    data = task(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "Dummy_4"}},
        {"Dummy": {}},
    )
    name, text = write_task(data, fmt)
    first = line(text, step_key(fmt, "Dummy"), 1)
    third = line(text, step_key(fmt, "Dummy"), 3)
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'name'), 3)}: steps[1].Dummy.name: duplicate step id "
        f"`a` (also steps[0], line {first})",
        f"{name}:{line(text, step_key(fmt, 'Dummy'), 4)}: steps[3].Dummy: this step's id "
        f"`Dummy_4` is already the name of steps[2], line {third} "
        "(give that step another `name:`)",
    ]


@pytest.mark.parametrize("bad", ["a b", "{x}", "-x", "a/b", ""])
def test_a_step_name_is_a_safe_id(bad: str) -> None:
    name, text = write_task(task({"Dummy": {"name": bad}}), "yaml")
    message = f"a step name is letters, digits, `_`, `.` and `-`, got {bad!r}"
    assert problems(name) == [f"{name}:{line(text, 'name:', 2)}: steps[0].Dummy.name: {message}"]


def test_depends_default_chain_empty_root_string_and_list(fmt: str) -> None:
    data = task(
        {"Dummy": {"name": "a"}},
        {"Dummy": {"name": "b"}},  # waits for a (the step before it)
        {"Dummy": {"name": "c", "depends": []}},  # a root
        {"Dummy": {"name": "d", "depends": "a"}},  # a string
        {"Dummy": {"name": "e", "depends": ["b", "c", "d"]}},  # a list
        {"Dummy": {"name": "f"}},  # waits for e
    )
    name, _ = write_task(data, fmt)
    pile = load_pile(name)
    assert sorted(pile.graph.edges) == [
        ("a", "b"),
        ("a", "d"),
        ("b", "e"),
        ("c", "e"),
        ("d", "e"),
        ("e", "f"),
    ]
    assert pile.roots() == ["a", "c"]
    assert [s.depends for s in pile] == [(), ("a",), (), ("a",), ("b", "c", "d"), ("e",)]


def test_unknown_depends_names_the_step_and_the_nearest_known_ids(fmt: str) -> None:
    data = task(
        {"Dummy": {"name": "extract"}},
        {"Dummy": {"name": "transform"}},
        {"Dummy": {"name": "load", "depends": ["transfrom", "zzz"]}},
    )
    name, text = write_task(data, fmt)
    at = line(text, key(fmt, "depends"))
    assert problems(name) == [
        f"{name}:{at}: steps[2].Dummy.depends: depends on unknown step `transfrom` "
        "(nearest known ids: `transform`)",
        f"{name}:{at}: steps[2].Dummy.depends: depends on unknown step `zzz` "
        "(nearest known ids: `extract`, `transform`)",
    ]


def test_a_cycle_is_reported_with_its_path(fmt: str) -> None:
    data = task(
        {"Dummy": {"name": "a", "depends": "c"}},
        {"Dummy": {"name": "b"}},
        {"Dummy": {"name": "c"}},
        {"Dummy": {"name": "d", "depends": "d"}},
    )
    name, text = write_task(data, fmt)
    hint = "(`a -> b` means b waits for a; remove one of these dependencies)"
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'depends'))}: steps[0].Dummy.depends: dependency "
        f"cycle: a -> b -> c -> a {hint}",
        f"{name}:{line(text, key(fmt, 'depends'), 2)}: steps[3].Dummy.depends: dependency "
        f"cycle: d -> d {hint}",
    ]


# --- groups -----------------------------------------------------------------------------------


def test_a_group_fans_out_from_an_iterator(fmt: str) -> None:
    data = task(
        {"FileList": {"path": "data", "pattern": "*.csv", "to_group": "files"}},
        {"Command": {"command": ["wc", "-l", "{file}"], "Group": "files"}},
        {"Dummy": {"Group": "files"}},
        {"Dummy": {"name": "after"}},
    )
    name, _ = write_task(data, fmt)
    pile = load_pile(name)
    (group,) = pile.groups.values()
    assert (group.name, group.parent, group.members) == (
        "files",
        "FileList_1",
        ("Command_2_1", "Dummy_2_2"),  # upstream's numbering: members under their group's
    )
    assert pile.group_of("Dummy_2_2") is group and pile.group_of("after") is None


def test_group_mistakes_are_all_reported(fmt: str) -> None:
    data = task(
        {"Dummy": {"to_group": "a"}},  # not an iterator
        {"Dummy": {"Group": "a"}},
        {"FileList": {"path": ".", "to_group": "a"}},  # a fed twice
        {"FileList": {"path": ".", "to_group": "empty"}},  # nobody in it
        {"Dummy": {"Group": "emtpy"}},  # no parent (a typo)
        {"Dummy": {"Group": "nowhere", "depends": []}},  # no parent at all
    )
    name, text = write_task(data, fmt)
    at = [
        line(text, key(fmt, k), n)
        for k, n in [("to_group", 1), ("to_group", 2), ("to_group", 3), ("Group", 2), ("Group", 3)]
    ]
    assert problems(name) == [
        f"{name}:{at[0]}: steps[0].Dummy.to_group: `to_group` needs an iterator component "
        "such as FileList, not Dummy",
        f"{name}:{at[1]}: steps[2].FileList.to_group: group `a` is fed twice: by `Dummy_1` "
        "and by `FileList_3` (a group has one parent; give each group its own name)",
        f"{name}:{at[2]}: steps[3].FileList.to_group: group `empty` is empty: no step has "
        "`Group: empty`",
        f"{name}:{at[3]}: steps[4].Dummy.Group: no step feeds group `emtpy` (none has "
        "`to_group: emtpy`) (did you mean `empty`?)",
        f"{name}:{at[4]}: steps[5].Dummy.Group: no step feeds group `nowhere` (none has "
        "`to_group: nowhere`) (add `to_group: nowhere` to an iterator step such as FileList)",
    ]


def test_nested_groups_are_rejected(fmt: str) -> None:
    data = task(
        {"FileList": {"path": ".", "to_group": "outer"}},
        {"FileList": {"path": ".", "Group": "outer", "to_group": "inner"}},
        {"Dummy": {"Group": "inner"}},
    )
    name, text = write_task(data, fmt)
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'to_group'), 2)}: steps[1].FileList.to_group: nested "
        "groups are not supported: a member of group `outer` cannot feed group `inner`"
    ]


# --- {steps.X.output} ---------------------------------------------------------------------------


def test_output_references_must_name_an_upstream_step(fmt: str) -> None:
    data = task(
        {"Command": {"name": "a", "command": ["date"]}},
        {"Command": {"name": "b", "command": ["echo", "{steps.a.output}"]}},  # fine (chain)
        {"Command": {"name": "c", "depends": [], "command": ["echo", "{steps.b.output}"]}},
        {
            "Command": {
                "name": "d",
                "command": ["echo", "{steps.nope.output}"],
                "env": {"X": "{steps.d.output}"},
            }
        },
        {"Command": {"name": "e", "command": "echo {{steps.c.output}}"}},  # escaped braces
    )
    name, text = write_task(data, fmt)
    assert problems(name) == [
        f"{name}:{line(text, 'steps.b.output')}: steps[2].Command.command[1]: "
        "`{steps.b.output}` names a step that does not run before `c` (add `depends: [b]`)",
        f"{name}:{line(text, 'steps.nope.output')}: steps[3].Command.command[1]: "
        "`{steps.nope.output}` names an unknown step (nearest known ids: `e`, `a`, `b`)",
        f"{name}:{line(text, 'steps.d.output')}: steps[3].Command.env.X: "
        "`{steps.d.output}` names this step itself",
    ]


# --- YAML 1.1 traps -----------------------------------------------------------------------------


def test_yaml_traps_fail_with_a_hint_to_quote() -> None:
    Path("t.yaml").write_text(
        "name: traps\nsteps:\n  - Dummy:\n      message: on\n  - Command:\n"
        "      command: [echo, 12:30]\n      timeout: 12:30\n  - Dummy: {message: '12:30'}\n"
    )
    assert problems("t.yaml") == [
        "t.yaml:4: steps[0].Dummy.message: `on` is read as boolean True by YAML 1.1 "
        "(quote it ('on') if you mean text)",
        "t.yaml:6: steps[1].Command.command[1]: `12:30` is read as the number 750 (base 60) "
        "by YAML 1.1 (quote it ('12:30') if you mean text)",
        "t.yaml:7: steps[1].Command.timeout: `12:30` is read as the number 750 (base 60) by "
        "YAML 1.1 (quote it ('12:30') if you mean text)",
    ]


def test_a_yaml_trap_as_a_key_is_reported_too() -> None:
    Path("t.yaml").write_text("name: t\nsteps:\n  - Dummy: {}\nevents:\n  on: []\n")
    assert problems("t.yaml")[0] == (
        "t.yaml:5: events.on: key `on` is read as boolean True by YAML 1.1 "
        "(quote it ('on') if you mean text)"
    )


# --- schedules and time zones -------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        "0 6 * * *",
        "30 2 * * mon-fri",
        "0 0 * * 0",
        "0 0 * * 7",
        "*/15 8-18 * jan-mar 1-5",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "@midnight",
        ["0 6 * * *", "0 18 * * sun"],
    ],
)
def test_valid_schedules(schedule: str | list[str], fmt: str) -> None:
    name, _ = write_task(task({"Dummy": {}}, schedule=schedule, timezone="Europe/Berlin"), fmt)
    d = load_task(name)
    assert d.schedules == ((schedule,) if isinstance(schedule, str) else tuple(schedule))
    assert d.header.timezone == "Europe/Berlin"


def test_day_of_week_0_and_7_are_both_sunday() -> None:
    assert parse_cron("0 0 * * 0").weekdays == parse_cron("0 0 * * 7").weekdays == {0}
    assert parse_cron("0 0 * * sun").weekdays == {0}


def test_bad_schedules_and_timezones_are_reported(fmt: str) -> None:
    data = task(
        {"Dummy": {}},
        timezone="Mars/Olympus",
        schedule=["0 6 * * *", "0 6 * * * *", "61 * * * *", "@reboot", "@often"],
    )
    name, text = write_task(data, fmt)
    tz, sched = line(text, key(fmt, "timezone")), line(text, key(fmt, "schedule"))
    if fmt == "yaml":  # a block list: each item on its own line
        first = line(text, "- 0 6 * * * *")
        at = [first, first + 1, first + 2, first + 3]
    elif fmt == "json":
        at = [sched + 2, sched + 3, sched + 4, sched + 5]
    else:
        at = [sched] * 4  # TOML arrays report the line of their key
    assert problems(name) == [
        f"{name}:{tz}: timezone: unknown timezone 'Mars/Olympus' (use an IANA name such as "
        "'Europe/Paris' or 'UTC')",
        f"{name}:{at[0]}: schedule[1]: cron expression '0 6 * * * *' has 6 fields; seconds "
        "and years are not supported: use 5 fields (minute hour day-of-month month "
        "day-of-week)",
        f"{name}:{at[1]}: schedule[2]: minute field '61' out of range 0-59",
        f"{name}:{at[2]}: schedule[3]: @reboot is not supported: a schedule fires at clock "
        "times, and flowtaskd has no boot event",
        f"{name}:{at[3]}: schedule[4]: unknown cron macro '@often' (known: @yearly, "
        "@annually, @monthly, @weekly, @daily, @midnight, @hourly)",
    ]


def test_a_single_bad_schedule_string_is_reported_on_its_key(fmt: str) -> None:
    name, text = write_task(task({"Dummy": {}}, schedule="0 25 * * *"), fmt)
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'schedule'))}: schedule: hour field '25' out of range 0-23"
    ]


def test_a_schedule_of_the_wrong_type_is_one_problem_without_union_tags(fmt: str) -> None:
    name, text = write_task(task({"Dummy": {}}, schedule=5), fmt)
    assert problems(name) == [
        f"{name}:{line(text, key(fmt, 'schedule'))}: schedule: should be a valid list, "
        "got integer 5"
    ]


# --- extension keys ---------------------------------------------------------------------------

FULL = task(
    {
        "Command": {
            "name": "fetch",
            "description": "get it",
            "command": ["curl", "-fsS", 8080],
            "retry": {
                "attempts": 3,
                "delay": "10s",
                "backoff": "exponential",
                "max_delay": "5m",
                "jitter": 0.2,
                "on_exit_codes": [7, 28],
            },
            "timeout": "5m",
            "skipError": "skip",
            "precondition": ["test", "-d", "/tmp"],
            "env": {"LANG": "C", "PORT": 8080},
            "cwd": "/tmp",
            "trigger_rule": "all_done",
        }
    },
    {
        "RunShell": {
            "name": "publish",
            "depends": "fetch",
            "command": "echo done",
            "timeout": 30,
            "skipError": "log",
            "trigger_rule": "one_failed",
            "precondition": "test -d /tmp",
        }
    },
    {"Dummy": {"depends": [], "timeout": 2.5, "retry": {"attempts": 2, "delay": 1}}},
    name="full",
    description="every extension key",
    comments="c",
    timezone="UTC",
    schedule=["0 6 * * *"],
    params={"day": "today", "n": 3},
    env={"A": "1", "B": 2},
    secrets=["API_TOKEN"],
    timeout="1h",
    retry={"attempts": 2, "delay": "30s"},
    max_active_runs=2,
    overlap="queue",
    max_active_steps=4,
)


def test_every_extension_key_is_read(fmt: str) -> None:
    name, _ = write_task(FULL, fmt)
    d = load_task(name)
    h = d.header
    assert (h.name, h.description, h.comments, h.timezone) == (
        "full",
        "every extension key",
        "c",
        "UTC",
    )
    assert d.schedules == ("0 6 * * *",)
    assert h.params == {"day": "today", "n": 3} and h.env == {"A": "1", "B": "2"}
    assert h.secrets == ["API_TOKEN"] and h.timeout == 3600.0
    assert h.retry is not None and (h.retry.attempts, h.retry.delay) == (2, 30.0)
    assert (h.max_active_runs, h.overlap, h.max_active_steps) == (2, Overlap.QUEUE, 4)
    fetch, publish, dummy = d.steps
    o = fetch.options
    assert o.retry is not None
    assert (
        o.retry.attempts,
        o.retry.delay,
        o.retry.backoff,
        o.retry.max_delay,
        o.retry.jitter,
        o.retry.on_exit_codes,
    ) == (3, 10.0, Backoff.EXPONENTIAL, 300.0, 0.2, [7, 28])
    assert (o.timeout, o.skipError, o.trigger_rule) == (300.0, SkipError.SKIP, TriggerRule.ALL_DONE)
    assert o.precondition == ["test", "-d", "/tmp"] and o.env == {"LANG": "C", "PORT": "8080"}
    assert o.cwd == "/tmp" and o.description == "get it"
    assert fetch.params.model_dump()["command"] == ["curl", "-fsS", "8080"]
    p = publish.options
    assert (p.depends, p.timeout, p.skipError, p.trigger_rule, p.precondition) == (
        ["fetch"],
        30.0,
        SkipError.LOG,
        TriggerRule.ONE_FAILED,
        "test -d /tmp",
    )
    assert (dummy.options.depends, dummy.options.timeout) == ([], 2.5)
    assert dummy.options.retry is not None and dummy.options.retry.delay == 1.0


def test_defaults_of_the_extension_keys(fmt: str) -> None:
    name, _ = write_task(task({"Dummy": {}}), fmt)
    d = load_task(name)
    h, o = d.header, d.steps[0].options
    assert (h.max_active_runs, h.overlap, h.max_active_steps, h.timeout, h.retry) == (
        1,
        Overlap.SKIP,
        16,
        None,
        None,
    )
    assert (h.params, h.env, h.secrets, d.schedules) == ({}, {}, [], ())
    assert (o.trigger_rule, o.skipError, o.depends, o.retry, o.timeout) == (
        TriggerRule.ALL_SUCCESS,
        SkipError.ENFORCE,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("rule", [r.value for r in TriggerRule])
def test_every_trigger_rule_is_accepted(rule: str) -> None:
    name, _ = write_task(task({"Dummy": {"trigger_rule": rule}}), "yaml")
    assert load_task(name).steps[0].options.trigger_rule == rule


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("0.5s", 0.5),
        ("250ms", 0.25),
        ("45", 45.0),
    ],
)
def test_durations(value: Any, seconds: float, fmt: str) -> None:
    name, _ = write_task(task({"Dummy": {"timeout": value, "retry": {"delay": value}}}), fmt)
    opts = load_task(name).steps[0].options
    assert opts.timeout == seconds and opts.retry is not None and opts.retry.delay == seconds


def test_bad_extension_values_are_all_reported(fmt: str) -> None:
    data = task(
        {
            "Dummy": {
                "trigger_rule": "sometimes",
                "skipError": "ignore",
                "timeout": "5 parsecs",
                "retry": {"attempts": 0, "backoff": "linear", "jitter": 2, "atempts": 1},
            }
        },
        {"Dummy": {"timeout": 0, "env": {"A": [1]}, "depends": 5}},
        overlap="never",
        max_active_runs=0,
        secrets="TOKEN",
        env={"X": True},
    )
    name, text = write_task(data, fmt)

    def at(k: str, n: int = 1) -> int:
        inline = {
            "attempts": "retry =",
            "backoff": "retry =",
            "jitter": "retry =",
            "atempts": "retry =",
            "A": "env =",
        }  # TOML inline tables: their key's line
        if fmt == "toml" and k in inline:
            return line(text, inline[k])
        return line(text, key(fmt, k), n)

    got = problems(name)
    overlap = "should be 'skip', 'queue', 'cancel' or 'allow', got text 'never'"
    rules = "'all_success', 'all_done', 'all_failed', 'one_success', 'one_failed', "
    expected = {
        f"{name}:{at('overlap')}: overlap: {overlap}",
        f"{name}:{at('max_active_runs')}: max_active_runs: should be greater than or equal "
        "to 1, got integer 0",
        f"{name}:{at('secrets')}: secrets: should be a valid list, got text 'TOKEN'",
        f"{name}:{at('X')}: env.X: should be a valid string, got boolean True",
        f"{name}:{at('trigger_rule')}: steps[0].Dummy.trigger_rule: should be {rules}"
        "'none_failed' or 'always', got text 'sometimes'",
        f"{name}:{at('skipError')}: steps[0].Dummy.skipError: should be 'enforce', 'skip' or "
        "'log', got text 'ignore'",
        f"{name}:{at('timeout')}: steps[0].Dummy.timeout: invalid interval '5 parsecs': "
        "expected a duration like '30s', '5m', '1h30m' or '1d'",
        f"{name}:{at('attempts')}: steps[0].Dummy.retry.attempts: should be greater than or "
        "equal to 1, got integer 0",
        f"{name}:{at('backoff')}: steps[0].Dummy.retry.backoff: should be 'fixed' or "
        "'exponential', got text 'linear'",
        f"{name}:{at('jitter')}: steps[0].Dummy.retry.jitter: should be less than or equal "
        "to 1, got integer 2",
        f"{name}:{at('atempts')}: steps[0].Dummy.retry.atempts: unknown key (did you mean "
        "`attempts`?)",
        f"{name}:{at('timeout', 2)}: steps[1].Dummy.timeout: must be greater than zero",
        f"{name}:{at('A')}: steps[1].Dummy.env.A: should be a valid string, got a list",
        f"{name}:{at('depends', 1)}: steps[1].Dummy.depends: depends on pile index 5, but "
        "the pile has 2 entries (0 to 1) (an index counts upstream's pile from 0; a group is "
        "one entry)",
    }
    assert set(got) == expected and len(got) == len(expected)


# --- events ---------------------------------------------------------------------------------


def test_event_names_are_the_run_events() -> None:
    assert EVENT_NAMES == TASK_EVENTS + STEP_EVENTS + UPSTREAM_EVENTS


def test_events_block(fmt: str) -> None:
    data = task(
        {"Dummy": {}},
        events={
            "on_error": [{"Log": {"message": "failed", "level": "error"}}],
            "completed": [{"Command": {"command": ["true"]}}, {"WebHook": {"url": "http://x"}}],
            "dne": [],
            "done": [{"Mail": {}}, {"Log": {"mesage": "x"}}],
        },
    )
    name, text = write_task(data, fmt)
    got = problems(name)
    assert [p.split(": ", 1)[1] for p in got] == [
        "events.dne: unknown event `dne` (did you mean `done`?)",
        "events.done[0]: unknown action `Mail` (known: " + ", ".join(EVENT_ACTION_MODELS) + ")",
        "events.done[1].Log.mesage: unknown key (did you mean `message`?)",
    ]
    assert got[0].startswith(f"{name}:{line(text, key(fmt, 'dne'))}:")
    del data["events"]["dne"], data["events"]["done"]
    name, _ = write_task(data, fmt)
    events = load_task(name).events
    assert [a.action for a in events["completed"]] == ["Command", "WebHook"]
    assert events["on_error"][0].params.model_dump() == {"message": "failed", "level": "error"}


# --- plugins ----------------------------------------------------------------------------------


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/plugin_pkg installed the way pip would leave it: a ``*.dist-info`` folder on
    sys.path whose entry_points.txt names the plugin's components."""
    site = tmp_path / "site"
    info = site / "flowtaskd_greet-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flowtaskd-greet\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[flowtaskd.components]\n"
        "Greet = flowtaskd_greet:GreetComponent\n"
        "Missing = flowtaskd_greet:NotThere\n"
        "Broken = flowtaskd_greet_broken:Component\n"
        "NotAClass = flowtaskd_greet:not_a_component\n"
        "Loose = flowtaskd_greet:LooseComponent\n"
        "Clash = flowtaskd_greet:ClashComponent\n"
        "Shadow = flowtaskd_greet:ShadowCommand\n"
    )
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(site))
    registry.cache_clear()
    yield
    for module in ("flowtaskd_greet", "flowtaskd_greet_broken"):
        sys.modules.pop(module, None)
    monkeypatch.undo()
    registry.cache_clear()


def test_the_plugin_package_declares_its_entry_point() -> None:
    text = (PLUGIN_DIR / "pyproject.toml").read_text()
    assert '[project.entry-points."flowtaskd.components"]' in text
    assert 'Greet = "flowtaskd_greet:GreetComponent"' in text


@pytest.mark.usefixtures("plugins")
def test_a_plugin_component_validates_with_its_own_model(fmt: str) -> None:
    name, _ = write_task(task({"Greet": {"greeting": "hi", "times": 2, "name": "hello"}}), fmt)
    (spec,) = load_task(name).steps
    assert (spec.id, spec.component, type(spec.params).__name__) == (
        "hello",
        "Greet",
        "GreetParams",
    )
    assert spec.params.model_dump() == {"greeting": "hi", "times": 2}
    name, text = write_task(task({"Greet": {"greting": "hi"}}), fmt)
    assert problems(name) == [
        f"{name}:{line(text, step_key(fmt, 'Greet'))}: steps[0].Greet.greeting: field required",
        f"{name}:{line(text, key(fmt, 'greting'))}: steps[0].Greet.greting: unknown key "
        "(did you mean `greeting`?)",
    ]


@pytest.mark.usefixtures("plugins")
def test_broken_plugins_are_reported_and_left_out() -> None:
    names = set(registry())
    assert "Greet" in names and {"Command", "Dummy", "FileList"} <= names
    assert not names & {"Missing", "Broken", "NotAClass", "Loose", "Clash", "Shadow"}
    errors = plugin_errors()
    assert len(errors) == 6
    text = "\n".join(errors)
    assert "plugin 'Missing' (flowtaskd_greet:NotThere) failed to load: AttributeError" in text
    assert (
        "plugin 'Broken' (flowtaskd_greet_broken:Component) failed to load: "
        "RuntimeError: this plugin is broken on purpose" in text
    )
    assert "plugin 'NotAClass' (flowtaskd_greet:not_a_component) is not a Component class" in text
    assert (
        "plugin 'Loose' (flowtaskd_greet:LooseComponent) has a `Params` that accepts "
        "unknown keys (subclass StrictModel)" in text
    )
    assert (
        "plugin 'Clash' (flowtaskd_greet:ClashComponent) has parameters named like step "
        "options: depends, timeout" in text
    )
    assert (
        "plugin 'Shadow' (flowtaskd_greet:ShadowCommand) may not replace component "
        "'Command'" in text
    )


def test_built_in_parameters_never_clash_with_step_options() -> None:
    for name, comp in registry().items():
        assert comp.name == name
        # a component may take upstream's value keys (name, conditions, ...) as its own
        assert not set(comp.Params.model_fields) & (STEP_OPTION_KEYS - UPSTREAM_VALUE_KEYS), name
