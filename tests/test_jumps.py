"""``flowtaskd.engine.jumps``: upstream's ``Goto`` and ``OnError`` over a real pile: which
steps are jumped over (a group as one entry), which target is forced, what is handled."""

from __future__ import annotations

from typing import Any

from flowtaskd.components.registry import registry
from flowtaskd.core.pile import TaskPile
from flowtaskd.core.rules import StepStatus
from flowtaskd.engine.jumps import Jumps


def jumps(*steps: dict[str, Any]) -> Jumps:
    return Jumps(TaskPile({"name": "j", "steps": list(steps)}, catalog=registry()))


# Dummy_1, FileList_2 + group files_3 (Dummy_3_1, Dummy_3_2), NextTask_4 (never a step),
# Dummy_5, PrintMessage_6, Dummy_7
PILE: tuple[dict[str, Any], ...] = (
    {"Dummy": {"Goto": "PrintMessage"}},
    {"FileList": {"path": "/tmp", "to_group": "files"}},
    {"Dummy": {"Group": "files"}},
    {"Dummy": {"Group": "files"}},
    {"NextTask": {"task": "after"}},
    {"Dummy": {"OnError": "Dummy_7"}},
    {"PrintMessage": {}},
    {"Dummy": {}},
)


def test_a_pile_without_jumps_is_not_active() -> None:
    j = jumps({"Dummy": {}}, {"Dummy": {}})
    assert not j.active
    j.after("Dummy_1", StepStatus.DONE)
    j.after("Dummy_2", StepStatus.FAILED)
    assert (j.jumped, j.forced, j.handled) == ({}, set(), set())


def test_goto_of_a_done_step_jumps_over_everything_up_to_its_target() -> None:
    j = jumps(*PILE)
    assert j.active
    j.after("Dummy_1", StepStatus.DONE)
    why = "jumped over: Goto of Dummy_1"
    assert j.jumped == {
        "FileList_2": why,
        "Dummy_3_1": why,  # a group is one entry of the pile: all its members
        "Dummy_3_2": why,
        "Dummy_5": why,
    }
    assert j.forced == {"PrintMessage_6"} and j.handled == set()


def test_goto_of_a_step_that_did_not_end_done_jumps_nowhere() -> None:
    for status in (
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.SKIPPED,
        StepStatus.CANCELLED,
    ):
        j = jumps(*PILE)
        j.after("Dummy_1", status)
        assert (j.jumped, j.forced) == ({}, set()), status


def test_on_error_of_a_failed_or_timed_out_step_is_handled_and_jumps() -> None:
    for status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
        j = jumps(*PILE)
        j.after("Dummy_5", status)
        assert j.jumped == {"PrintMessage_6": "jumped over: OnError of Dummy_5"}
        assert j.forced == {"Dummy_7"} and j.handled == {"Dummy_5"}


def test_on_error_of_a_done_step_does_nothing() -> None:
    j = jumps(*PILE)
    j.after("Dummy_5", StepStatus.DONE)
    assert (j.jumped, j.forced, j.handled) == ({}, set(), set())


def test_the_first_reason_a_step_was_jumped_over_is_kept() -> None:
    j = jumps(
        {"Dummy": {"name": "a", "Goto": "d"}},
        {"Dummy": {"name": "b", "OnError": "d"}},
        {"Dummy": {"name": "c"}},
        {"Dummy": {"name": "d"}},
    )
    j.after("b", StepStatus.FAILED)
    j.after("a", StepStatus.DONE)
    assert j.jumped == {"c": "jumped over: OnError of b", "b": "jumped over: Goto of a"}
    assert j.forced == {"d"} and j.handled == {"b"}


def test_a_jump_to_the_next_step_jumps_over_nothing() -> None:
    j = jumps({"Dummy": {"name": "a", "Goto": "b"}}, {"Dummy": {"name": "b"}})
    j.after("a", StepStatus.DONE)
    assert j.jumped == {} and j.forced == {"b"}


def test_steps_without_a_jump_are_ignored() -> None:
    j = jumps(*PILE)
    j.after("PrintMessage_6", StepStatus.FAILED)
    j.after("FileList_2", StepStatus.DONE)
    assert (j.jumped, j.forced, j.handled) == ({}, set(), set())
