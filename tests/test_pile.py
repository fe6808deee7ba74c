"""The flowtask API of the task model: ``TaskPile``, ``Step``, ``from_task_pile``,
``check_syntax``, ``flowtaskd.load_task``, and the DAG rules that go beyond one step
(group order, references across groups, several cycles at once)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import flowtaskd
from flowtaskd.components.registry import registry
from flowtaskd.core.graph import graph_problems
from flowtaskd.core.schema import validate_definition
from flowtaskd.errors import FlowtaskError, Problem, TaskParseError
from flowtaskd.tasks import Group, Step, TaskPile, check_syntax, load_pile, load_task
from tests.test_schema import line, step_key, task, write_task


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def texts(exc: pytest.ExceptionInfo[TaskParseError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


DAG = task(
    {"Command": {"name": "fetch", "command": ["date"]}},
    {"FileList": {"name": "ls", "path": "data", "to_group": "files", "depends": []}},
    {"Command": {"name": "count", "command": ["wc", "-l", "{file}"], "Group": "files"}},
    {"Command": {"name": "sales", "command": ["echo", "{steps.fetch.output}"], "depends": "fetch"}},
    {"Dummy": {"name": "done", "depends": ["count", "sales"]}},
    name="dag",
)


def test_task_pile_from_a_dict() -> None:
    pile = TaskPile(DAG, program="acme")
    assert pile.name == "dag" and len(pile) == 5 and pile.task == DAG
    assert isinstance(pile.graph, nx.DiGraph)
    assert sorted(pile.graph.edges) == [
        ("count", "done"),
        ("fetch", "sales"),
        ("ls", "count"),
        ("sales", "done"),
    ]
    assert (
        [s.id for s in pile]
        == [s.id for s in pile.steps]
        == ["fetch", "ls", "count", "sales", "done"]
    )
    assert pile.roots() == ["fetch", "ls"]
    assert pile.upstream("done") == ["count", "sales"] and pile.downstream("fetch") == ["sales"]
    assert "count" in pile and "nope" not in pile
    assert pile.groups == {"files": Group("files", "ls", ("count",))}
    assert pile.build() is pile  # built once, in the constructor
    step = pile["count"]
    assert (step.component, step.id, step.step_name, step.step_id) == (
        "Command",
        "count",
        "Command",
        "count",
    )
    assert (step.program, step.group, step.to_group, step.depends) == (
        "acme",
        "files",
        None,
        ("ls",),
    )
    assert step.component == "Command"
    assert step.params == {"command": ["wc", "-l", "{file}"], "output_cap": 65536}
    assert pile["ls"].params["files_only"] is True  # defaults are filled in


def test_task_pile_from_a_definition_keeps_it() -> None:
    definition = validate_definition(DAG, catalog=registry())
    pile = TaskPile(definition)
    assert pile.definition is definition and pile["fetch"].spec is definition.steps[0]


@pytest.mark.parametrize("bad", [[], "name: x", None, 5])
def test_task_pile_of_something_else_is_a_parse_error(bad: Any) -> None:
    with pytest.raises(TaskParseError) as info:
        TaskPile(bad)
    (problem,) = info.value.problems
    assert problem.message.startswith("a task is a mapping with `name` and `steps`")


def test_task_pile_reports_every_problem_of_a_dict() -> None:
    with pytest.raises(TaskParseError) as info:
        TaskPile({"name": "x", "steps": [{"Dummy": {"depends": "a"}}, {"Command": {}}]})
    assert texts(info) == [
        "<task>: steps[0].Dummy.depends: depends on unknown step `a` "
        "(nearest known ids: `Command_2`)",
        "<task>: steps[1].Command.command: field required",
    ]
    assert isinstance(info.value, FlowtaskError)


def test_step_on_its_own() -> None:
    step = Step("Command", 3, {"command": ["ls"], "depends": "a", "Group": "g"}, program="p")
    assert (step.id, step.component, step.program, step.depends, step.group) == (
        "Command_3",
        "Command",
        "p",
        ("a",),
        "g",
    )
    named = Step("Dummy", "wait", {})
    assert (named.id, named.depends, named.group, named.to_group) == ("wait", (), None, None)
    assert repr(named) == "Step('Dummy', 'wait')"
    assert Step("Nope", 1, {}).component == "Nope"


def test_from_task_pile_keeps_params_and_depends() -> None:
    pile = TaskPile.from_task_pile(
        [
            {"task_id": "a", "step": "Command", "command": ["date"]},
            {"task_id": "b", "step": "Dummy", "depends": [], "message": "hi"},
            {
                "task_id": "c",
                "step": "Command",
                "command": "echo {steps.a.output}",
                "depends": ["a", "b"],
            },
            {"step": "Dummy"},  # no task_id: its id is <Component>_<N>
        ],
        program="prog",
    )
    assert pile.name == "Generated TaskPile"
    assert sorted(pile.graph.edges) == [("a", "c"), ("b", "c"), ("c", "Dummy_4")]
    assert pile["b"].params["message"] == "hi" and pile["c"].params["command"] == (
        "echo {steps.a.output}"
    )
    assert pile["a"].program == "prog"
    assert TaskPile.from_task_pile([{"task_id": 1, "step": "Dummy"}], name="n")[("1")].id == "1"


def test_from_task_pile_upstream_items_make_a_chain() -> None:
    pile = TaskPile.from_task_pile(
        [{"task_id": "x", "step": "Dummy"}, {"task_id": "y", "step": "Dummy"}], name="up"
    )
    assert (pile.name, list(pile.graph.edges)) == ("up", [("x", "y")])


def test_from_task_pile_errors() -> None:
    with pytest.raises(TaskParseError) as info:
        TaskPile.from_task_pile([{"task_id": "a", "step": "Dummy"}, {"task_id": "b"}, "x"])
    assert [p.path for p in info.value.problems] == ["task_pile[1]", "task_pile[2]"]
    with pytest.raises(TaskParseError) as info:
        TaskPile.from_task_pile([{"task_id": "a", "step": "Command", "comand": ["ls"]}])
    assert texts(info) == [
        "<task>: steps[0].Command.command: field required",
        "<task>: steps[0].Command.comand: unknown key (did you mean `command`?)",
    ]


def test_check_syntax() -> None:
    assert check_syntax(DAG) is True
    with pytest.raises(TaskParseError) as info:
        check_syntax({"name": "x", "steps": [{"Dummy": {"name": "a", "depends": "a"}}]})
    assert all(isinstance(p, Problem) for p in info.value.problems)
    assert texts(info)[0].startswith("<task>: steps[0].Dummy.depends: dependency cycle: a -> a")


def test_the_package_exports_the_api() -> None:
    names = {"load_task", "TaskPile", "Step", "TaskParseError", "check_syntax", "FlowtaskError"}
    assert names <= set(flowtaskd.__all__)
    assert flowtaskd.load_task is load_task and flowtaskd.TaskPile is TaskPile
    assert flowtaskd.check_syntax is check_syntax and flowtaskd.Step is Step
    assert issubclass(flowtaskd.TaskParseError, flowtaskd.FlowtaskError)
    with pytest.raises(AttributeError):
        _ = flowtaskd.nothing_here  # type: ignore[attr-defined]


def test_importing_the_package_is_cheap() -> None:
    code = (
        "import sys, flowtaskd; heavy = {'networkx', 'pydantic', 'yaml'} & set(sys.modules); "
        "assert not heavy, heavy; flowtaskd.load_task; assert 'pydantic' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_load_task_reads_every_format() -> None:
    for fmt in ("yaml", "json", "toml"):
        name, text = write_task(DAG, fmt, stem="dag")
        definition = flowtaskd.load_task(name)
        assert definition.name == "dag" and definition.file == name
        assert definition.steps[2].line == line(text, step_key(fmt, "Command"), 2)
        assert list(load_pile(name).graph.edges) == list(TaskPile(DAG).graph.edges)


def test_load_task_checks_the_graph_too() -> None:
    name, text = write_task(
        task({"Dummy": {"name": "a", "depends": "b"}}, {"Dummy": {"name": "b"}}), "yaml"
    )
    with pytest.raises(TaskParseError) as info:
        load_task(name)
    assert texts(info) == [
        f"{name}:{line(text, 'depends')}: steps[0].Dummy.depends: dependency cycle: a -> b -> a "
        "(`a -> b` means b waits for a; remove one of these dependencies)"
    ]


# --- rules about the graph as a whole -----------------------------------------------------


def problems_of(*steps: dict[str, Any]) -> list[str]:
    with pytest.raises(TaskParseError) as info:
        TaskPile(task(*steps))
    return [p.split(": ", 1)[1] for p in texts(info)]


def test_a_group_member_must_run_after_its_parent() -> None:
    assert problems_of(
        {"FileList": {"name": "ls", "path": ".", "to_group": "g"}},
        {"Dummy": {"name": "m", "Group": "g", "depends": []}},
    ) == [
        "steps[1].Dummy.Group: a member of group `g` must run after its parent `ls` "
        "(add `depends: ls`, or depend on a step after it)"
    ]


def test_no_step_may_sit_between_two_members_of_a_group() -> None:
    assert problems_of(
        {"FileList": {"name": "ls", "path": ".", "to_group": "g"}},
        {"Dummy": {"name": "m1", "Group": "g"}},
        {"Dummy": {"name": "between"}},
        {"Dummy": {"name": "m2", "Group": "g"}},
    ) == [
        "steps[2].Dummy: `between` runs after one member of group `g` and before another, "
        "but a group's members run together, once per item (make it a member with "
        "`Group: g`, or let it wait for the whole group)"
    ]


def test_two_groups_may_not_interleave() -> None:
    got = problems_of(
        {"FileList": {"name": "p", "path": ".", "to_group": "g"}},
        {"FileList": {"name": "q", "path": ".", "to_group": "h", "depends": []}},
        {"Dummy": {"name": "g1", "Group": "g", "depends": "p"}},
        {"Dummy": {"name": "h1", "Group": "h", "depends": ["q", "g1"]}},
        {"Dummy": {"name": "g2", "Group": "g", "depends": "h1"}},
    )
    assert got == [
        "steps[3].Dummy: `h1` runs after one member of group `g` and before "
        "another, but a group's members run together, once per item (make it a "
        "member with `Group: g`, or let it wait for the whole group)"
    ]


def test_steps_after_a_group_wait_for_all_of_it() -> None:
    pile = TaskPile(
        task(
            {"FileList": {"name": "p", "path": ".", "to_group": "g"}},
            {"Dummy": {"name": "a", "Group": "g"}},
            {"Dummy": {"name": "b", "Group": "g", "depends": "p"}},  # parallel members
            {"Dummy": {"name": "after", "depends": ["a", "b"]}},
            {"Command": {"name": "uses", "command": "echo {steps.p.output}"}},
        )
    )
    assert pile.groups["g"].members == ("a", "b")


def test_a_member_output_is_only_seen_inside_its_group() -> None:
    assert problems_of(
        {"FileList": {"name": "p", "path": ".", "to_group": "g"}},
        {"Command": {"name": "m1", "Group": "g", "command": "echo {file}"}},
        {"Command": {"name": "m2", "Group": "g", "command": "echo {steps.m1.output}"}},
        {"Command": {"name": "out", "command": "echo {steps.m2.output}"}},
    ) == [
        "steps[3].Command.command: `{steps.m2.output}` names a member of group `g`: it "
        "runs once per item, and only the group's own members see its output"
    ]


def test_references_in_precondition_and_cwd_are_checked() -> None:
    got = problems_of(
        {"Command": {"name": "a", "command": ["date"]}},
        {
            "Command": {
                "name": "b",
                "depends": [],
                "command": ["true"],
                "precondition": ["test", "{steps.a.output}"],
                "cwd": "{steps.a.output}",
            }
        },
    )
    assert got == [  # in the order they are written
        "steps[1].Command.precondition[1]: `{steps.a.output}` names a step that does not run "
        "before `b` (add `depends: [a]`)",
        "steps[1].Command.cwd: `{steps.a.output}` names a step that does not run before `b` "
        "(add `depends: [a]`)",
    ]


def test_every_cycle_is_reported_in_file_order() -> None:
    got = problems_of(
        {"Dummy": {"name": "x", "depends": "y"}},
        {"Dummy": {"name": "y"}},
        {"Dummy": {"name": "p", "depends": "r"}},
        {"Dummy": {"name": "q"}},
        {"Dummy": {"name": "r"}},
    )
    hint = " (`a -> b` means b waits for a; remove one of these dependencies)"
    assert got == [
        "steps[0].Dummy.depends: dependency cycle: x -> y -> x" + hint,
        "steps[2].Dummy.depends: dependency cycle: p -> q -> r -> p" + hint,
    ]


def test_the_shortest_cycle_through_the_first_step_is_shown() -> None:
    got = problems_of(
        {"Dummy": {"name": "a", "depends": ["d", "b"]}},
        {"Dummy": {"name": "b", "depends": "c"}},
        {"Dummy": {"name": "c", "depends": "a"}},
        {"Dummy": {"name": "d", "depends": "a"}},
    )
    assert got[0].startswith("steps[0].Dummy.depends: dependency cycle: a -> d -> a ")
    assert len(got) == 1  # one strongly connected part, one problem


def test_graph_checks_skip_what_an_invalid_step_hides() -> None:
    # the member's own keys are wrong: no guess about its order or its group is made
    name, _ = write_task(
        task(
            {"FileList": {"name": "ls", "path": ".", "to_group": "g"}},
            {"Command": {"name": "m", "Group": "g", "depends": 5, "comand": ["ls"]}},
        ),
        "yaml",
    )
    with pytest.raises(TaskParseError) as info:
        load_task(name)
    assert [p.path for p in info.value.problems] == [
        "steps[1].Command.command",
        "steps[1].Command.depends",
        "steps[1].Command.comand",
    ]


def test_graph_problems_on_their_own() -> None:
    specs = validate_definition(
        task({"Dummy": {"name": "a"}}, {"Dummy": {"name": "b"}}), catalog=registry()
    ).steps
    assert graph_problems(specs) == []


def test_the_pile_answers_edges_without_networkx() -> None:
    pile = TaskPile(DAG)
    graph = pile.graph
    assert pile.edges() == list(graph.edges)
    for step in pile:
        assert list(pile.predecessors(step.id)) == list(graph.predecessors(step.id))
        assert list(pile.successors(step.id)) == list(graph.successors(step.id))
        assert pile.upstream(step.id) == list(graph.predecessors(step.id))
        assert pile.downstream(step.id) == list(graph.successors(step.id))
    assert pile.graph is graph  # built once, then kept


def test_loading_and_running_a_task_imports_no_networkx(tmp_path: Path) -> None:
    task = tmp_path / "t.yaml"
    task.write_text(
        "name: t\nsteps:\n  - Dummy: {name: a}\n  - Dummy: {name: b}\n"
        "  - Dummy: {name: c, depends: [a, b]}\n"
    )
    code = (
        "import asyncio, sys\n"
        "from flowtaskd.tasks.task import Task\n"
        f"task = Task(task={str(task)!r}, log_dir={str(tmp_path / 'logs')!r})\n"
        "monitor = asyncio.run(task.run())\n"
        "assert monitor.status == 'done', monitor.status\n"
        "assert 'networkx' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
