"""``flowtaskd.core.graph.compile_graph``: a task's DAG from its step specs, and everything
wrong with it at once (file, line and key path on each problem)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowtaskd.core.graph import Group, compile_graph, graph_problems
from flowtaskd.core.options import NoParams, StepOptions
from flowtaskd.core.spec import StepSpec


def specs(*steps: tuple[str, dict[str, Any]] | str) -> list[StepSpec]:
    """Dummy steps: ``"id"`` or ``("id", {options})``; ``iterator`` in options for FileList."""
    out = []
    for n, step in enumerate(steps):
        sid, opts = (step, {}) if isinstance(step, str) else step
        opts = dict(opts)
        iterator = opts.pop("iterator", False)
        raw = opts.pop("raw", None)
        named = opts.pop("named", True)
        options = StepOptions.model_validate({**({"name": sid} if named else {}), **opts})
        component = "FileList" if iterator else "Dummy"
        out.append(StepSpec(n, sid, component, NoParams(), options, raw=raw, iterator=iterator))
    return out


def lines(path: Sequence[str | int]) -> int | None:
    """A fake source map: step i is at line 10*(i+1), its keys one line below."""
    if len(path) >= 2 and isinstance(path[1], int):
        return 10 * (path[1] + 1) + (1 if len(path) > 3 else 0)
    return None


def texts(*steps: tuple[str, dict[str, Any]] | str) -> list[str]:
    return [str(p) for p in graph_problems(specs(*steps), "t.yaml", lines)]


def test_a_plain_list_is_a_chain_and_an_empty_depends_a_root() -> None:
    g = compile_graph(specs("a", "b", ("c", {"depends": []}), ("d", {"depends": ["a", "c"]})))
    assert g.problems == []
    assert g.depends == [(), ("a",), (), ("a", "c")]
    edges = [(u, v) for u, vs in g.successors.items() for v in vs]
    assert sorted(edges) == [("a", "b"), ("a", "d"), ("c", "d")]


def test_repeated_depends_count_once() -> None:
    g = compile_graph(specs("a", ("b", {"depends": ["a", "a"]})))
    assert g.depends[1] == ("a",)


def test_unknown_depends_names_the_nearest_ids() -> None:
    (text,) = texts("fetch", "fetch_all", ("load", {"depends": ["fecth"]}))
    assert text == (
        "t.yaml:31: steps[2].Dummy.depends: depends on unknown step `fecth`"
        " (nearest known ids: `fetch`, `fetch_all`)"
    )


def test_duplicate_ids_named_or_automatic() -> None:
    assert texts("a", "a") == [
        "t.yaml:21: steps[1].Dummy.name: duplicate step id `a` (also steps[0], line 10)"
    ]
    (text,) = texts("Dummy_2", ("Dummy_2", {"named": False}))
    assert "this step's id `Dummy_2` is already the name of steps[0]" in text
    assert text.endswith("(give that step another `name:`)")


def test_each_cycle_reported_once_with_its_path() -> None:
    problems = texts(
        ("a", {"depends": ["c"]}),
        ("b", {"depends": ["a"]}),
        ("c", {"depends": ["b"]}),
        ("x", {"depends": ["x"]}),
    )
    assert len(problems) == 2
    assert "dependency cycle: a -> b -> c -> a" in problems[0]
    assert "dependency cycle: x -> x" in problems[1]


def test_a_group_of_members_after_its_parent() -> None:
    g = compile_graph(
        specs(
            ("ls", {"to_group": "g", "iterator": True}),
            ("m1", {"Group": "g"}),
            ("m2", {"Group": "g"}),
            "after",
        )
    )
    assert g.problems == []
    assert g.groups == {"g": Group("g", "ls", ("m1", "m2"))}


def test_group_mistakes() -> None:
    assert any(
        "`to_group` needs an iterator component such as FileList, not Dummy" in t
        for t in texts(("a", {"to_group": "g"}), ("m", {"Group": "g"}))
    )
    assert texts(("ls", {"to_group": "g", "iterator": True})) == [
        "t.yaml:11: steps[0].FileList.to_group: group `g` is empty: no step has `Group: g`"
    ]
    (orphan,) = texts(("ls", {"to_group": "files", "iterator": True}), ("m", {"Group": "file"}))[1:]
    assert "no step feeds group `file`" in orphan and "did you mean `files`?" in orphan
    twice = texts(
        ("a", {"to_group": "g", "iterator": True}),
        ("b", {"to_group": "g", "iterator": True}),
        ("m", {"Group": "g"}),
    )
    assert any("group `g` is fed twice: by `a` and by `b`" in t for t in twice)


def test_a_member_must_run_after_its_parent() -> None:
    (text,) = texts(
        ("ls", {"to_group": "g", "iterator": True}), ("m", {"Group": "g", "depends": []})
    )
    assert "a member of group `g` must run after its parent `ls`" in text


def test_nothing_may_sit_between_two_members() -> None:
    problems = texts(
        ("ls", {"to_group": "g", "iterator": True}),
        ("m1", {"Group": "g"}),
        "between",
        ("m2", {"Group": "g"}),
    )
    assert any(
        "`between` runs after one member of group `g` and before another" in t for t in problems
    )


def test_output_references_must_run_before() -> None:
    problems = texts(
        "a",
        ("b", {"depends": [], "env": {"X": "{steps.a.output}"}}),
        ("c", {"cwd": "{steps.c.output}"}),
        ("d", {"precondition": ["echo", "{steps.zz.output}"]}),
    )
    assert (
        "t.yaml:21: steps[1].Dummy.env.X: `{steps.a.output}` names a step that does not run"
        in (problems[0])
    )
    assert problems[0].endswith("(add `depends: [a]`)")
    assert "`{steps.c.output}` names this step itself" in problems[1]
    assert (
        "steps[3].Dummy.precondition[1]: `{steps.zz.output}` names an unknown step" in problems[2]
    )


def test_references_read_from_the_raw_mapping_when_given() -> None:
    raw = {"command": ["echo", "{steps.b.output}"]}
    (text,) = texts("a", ("b", {"raw": {}}), ("c", {"depends": ["a"], "raw": raw}))
    assert "steps[2].Dummy.command[1]: `{steps.b.output}` names a step that does not run" in text


def test_a_member_output_is_seen_only_inside_its_group() -> None:
    problems = texts(
        ("ls", {"to_group": "g", "iterator": True}),
        ("m", {"Group": "g"}),
        ("n", {"Group": "g", "env": {"A": "{steps.m.output}"}}),
        ("out", {"env": {"A": "{steps.m.output}"}}),
    )
    assert len(problems) == 1
    assert "steps[3]" in problems[0] and "names a member of group `g`" in problems[0]


def test_partial_specs_skip_the_checks_that_need_the_whole_truth() -> None:
    steps = specs("a", ("b", {"depends": [], "env": {"X": "{steps.a.output}"}}))
    assert graph_problems(steps) != []
    assert graph_problems(steps, partial=frozenset({0})) == []


def test_problems_come_in_file_order() -> None:
    problems = graph_problems(
        specs(("a", {"depends": ["nope"]}), "b", ("c", {"depends": ["zzz"]}), "a")
    )
    assert [p.path.split(".")[0] for p in problems] == ["steps[0]", "steps[2]", "steps[3]"]
