"""flowtaskd.daemon.outputs.metric_labels: bounded task/step labels and skip reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from flowtaskd.daemon.outputs import metric_labels
from flowtaskd.daemon.outputs.metric_labels import OTHER, LabelBounds, build_info, skip_reason
from flowtaskd.tasks import TaskPile


@dataclass
class _Loaded:
    pile: object


class _Library:
    def __init__(self, tasks: Mapping[str, object]) -> None:
        self.tasks = tasks


def _library() -> _Library:
    pile = TaskPile({"name": "report", "steps": [{"Dummy": {"name": "fetch"}}]})
    return _Library({"report": _Loaded(pile), "broken": _Loaded(None)})


def test_without_a_library_names_pass_through() -> None:
    b = LabelBounds(None)
    assert b.task("anything", "r1") == "anything"
    assert b.step("anything", "s") == "s"


def test_a_loaded_task_keeps_its_name_others_are_other() -> None:
    b = LabelBounds(_library())
    assert b.task("report", "r1") == "report"
    assert b.task("made-up-per-file", "r2") == OTHER
    assert b.task(None, "r3") == OTHER
    assert b.task(42, "r3") == OTHER


def test_an_inbox_run_is_labelled_by_its_inbox_until_forgotten() -> None:
    b = LabelBounds(_library())
    b.note_inbox("r1", "drop")
    b.note_inbox("r2", None)  # no inbox: not noted
    assert b.task("report", "r1") == "inbox:drop"  # even a loaded name
    assert b.task("report", "r2") == "report"
    b.forget("r1")
    b.forget("never-noted")
    assert b.task("report", "r1") == "report"


def test_steps_are_kept_only_when_the_task_has_them() -> None:
    b = LabelBounds(_library())
    assert b.step("report", "fetch") == "fetch"
    assert b.step("report", "fetch-2026-01-01") == OTHER
    assert b.step("unknown", "fetch") == OTHER
    assert b.step("broken", "fetch") == OTHER
    assert b.step("report", None) == OTHER


def test_inbox_notes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metric_labels, "_INBOXES_MAX", 3)
    b = LabelBounds(None)
    for i in range(5):
        b.note_inbox(f"r{i}", "drop")
    assert b.task("t", "r0") == "t" and b.task("t", "r1") == "t"  # the oldest went
    assert b.task("t", "r4") == "inbox:drop"


@pytest.mark.parametrize(
    ("payload", "word"),
    [
        ({"reason": "overlap=skip: a run is active"}, "overlap"),
        ({"reason": "Queue full (100 waiting)"}, "queue_full"),
        ({"reason": "task is paused"}, "paused"),
        ({"reason": "daemon stopping"}, "stopping"),
        ({"reason": "cancelled while queued"}, "cancelled"),
        ({"reason": "something new"}, OTHER),
        ({}, OTHER),
        ({"kind": "paused", "reason": "overlap"}, "paused"),
        ({"kind": "free text", "reason": "overlap"}, "overlap"),
    ],
)
def test_skip_reason_folds_text(payload: dict[str, object], word: str) -> None:
    assert skip_reason(payload) == word


def test_build_info() -> None:
    info = build_info()
    assert set(info) == {"version", "python"}
    assert info["python"].count(".") == 2
