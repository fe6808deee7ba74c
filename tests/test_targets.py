"""core.targets: the steps a branching step names, checked against the task's ids."""

from __future__ import annotations

from dataclasses import dataclass

from flowtaskd.core.targets import NamesSteps, target_problems


@dataclass
class Branch:
    names: list[tuple[tuple[str | int, ...], str]]

    def step_targets(self) -> list[tuple[tuple[str | int, ...], str]]:
        return self.names


KNOWN = ["check", "small", "large", "before"]


def problems(names: list[tuple[tuple[str | int, ...], str]], after: list[str] | None) -> list:
    calls: list[str] = []

    def later() -> list[str]:
        calls.append("after")
        return after or []

    def nearest(name: str) -> list[str]:
        return [k for k in KNOWN if k[:2] == name[:2]]

    got = list(
        target_problems(
            "check", Branch(names), KNOWN, later if after is not None else None, nearest
        )
    )
    assert len(calls) <= 1  # the steps after it are asked for once
    return got


def test_a_sound_choice_has_no_problems() -> None:
    assert (
        problems(
            [(("true_component",), "small"), (("false_component",), "large")], ["small", "large"]
        )
        == []
    )


def test_unknown_self_and_not_after() -> None:
    got = problems(
        [(("true_component",), "smal"), (("false_component",), "check"), (("default",), "before")],
        ["small", "large"],
    )
    assert got == [
        (("true_component",), "names unknown step `smal`", "nearest known ids: `small`"),
        (("false_component",), "`check` is this step itself", "name a step that depends on it"),
        (
            ("default",),
            "names step `before`, which does not run after `check`",
            "add `depends: [check]` to `before`",
        ),
    ]


def test_no_nearest_and_an_unsound_graph() -> None:
    got = problems([(("cases", 0, "component"), "zzz"), (("default",), "before")], None)
    assert got == [
        (("cases", 0, "component"), "names unknown step `zzz`", "nearest known ids: none")
    ]


def test_params_that_name_no_steps_are_skipped() -> None:
    assert not isinstance({"true_component": "x"}, NamesSteps)
    assert list(target_problems("a", {"true_component": "x"}, [], None, lambda _: [])) == []
