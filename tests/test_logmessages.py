"""``flowtaskd.logmessages``: the human ``message`` beside each log line's ``event``."""

from __future__ import annotations

from typing import Any

import pytest

from flowtaskd.logmessages import add_message, sentence

RUN = {"run_id": "r1", "task": "sales"}


@pytest.mark.parametrize(
    ("event", "fields", "text"),
    [
        ("start", {**RUN, "trigger": "manual"}, "run r1 of sales started (manual)"),
        ("done", {**RUN, "duration": 1.23456}, "run r1 of sales done in 1.235s"),
        ("done", RUN, "run r1 of sales done"),  # no duration: the next template
        ("done", {**RUN, "duration": "soon"}, "run r1 of sales done"),  # wrong type: the next
        (
            "step_error",
            {"step": "a", "exit_code": 2, "error": "boom"},
            "step a failed (exit code 2): boom",
        ),
        ("step_error", {"step": "a", "exit_code": None, "error": "boom"}, "step a failed: boom"),
        ("step_error", {"step": "a"}, "step a failed"),
        (
            "step_retry",
            {"step": "a", "attempt": 1, "delay": 2.25},
            "step a failed (attempt 1), retrying in 2.2s",
        ),
        ("daemon_ready", {}, "daemon ready"),
    ],
)
def test_templates_first_complete_one_wins(event: str, fields: dict[str, Any], text: str) -> None:
    assert sentence(event, fields) == text


def test_unknown_event_becomes_its_name_with_the_task() -> None:
    assert sentence("schedule_fired", {"task": "sales"}) == "schedule fired (sales)"
    assert sentence("schedule_fired", {}) == "schedule fired"
    assert sentence("sales_loaded", {"task": "sales"}) == "sales loaded"  # task already named
    assert sentence("thing_done", {"task": 3}) == "thing done"  # only a text task is named


def test_an_event_missing_every_field_falls_back_to_its_name() -> None:
    assert sentence("start", {"task": "t"}) == "start"


def test_a_stdlib_message_is_already_a_sentence() -> None:
    assert sentence("Connection refused by peer", {"task": "t"}) == "Connection refused by peer"


def test_add_message_sets_message_and_keeps_one_given() -> None:
    line: dict[str, Any] = {"event": "run_queued", **RUN}
    assert add_message(None, "info", line)["message"] == "run r1 of sales queued"
    kept: dict[str, Any] = {"event": "run_queued", "message": "mine", **RUN}
    assert add_message(None, "info", kept)["message"] == "mine"
    assert add_message(None, "info", {})["message"] == ""
