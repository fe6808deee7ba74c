"""``flowtaskd.engine.stats``: what a run and its steps did, and its JSON shape."""

from __future__ import annotations

from flowtaskd.components.context import StepOutcome
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.engine.stats import AttemptStats, StepMonitor, TaskMonitor


def outcome(**kw: object) -> StepOutcome:
    return StepOutcome(**{"status": StepStatus.FAILED, **kw})  # type: ignore[arg-type]


def test_attempt_duration_only_once_finished() -> None:
    a = AttemptStats(1, "running", started_at=10.0)
    assert a.duration is None and a.to_dict()["duration"] is None
    a.finished_at = 12.5
    assert a.duration == 2.5
    assert a.to_dict()["attempt"] == 1 and a.to_dict()["duration"] == 2.5


def test_record_copies_the_outcome_and_keeps_the_last_output() -> None:
    step = StepMonitor("s", "Command")
    first = AttemptStats(1, "running", 0.0)
    step.record(
        first,
        outcome(
            output="one",
            exit_code=2,
            error="boom",
            cpu_user=0.5,
            cpu_system=0.25,
            max_rss_kb=100,
            bytes_out=3,
            log_path="/l/s.1",
            worker="tcp://w",
        ),
    )
    assert (first.status, first.exit_code, first.error) == ("failed", 2, "boom")
    assert (first.cpu_user, first.cpu_system, first.max_rss_kb) == (0.5, 0.25, 100)
    assert (first.bytes_out, first.log_path, first.worker) == (3, "/l/s.1", "tcp://w")
    second = AttemptStats(2, "running", 1.0)
    step.record(second, StepOutcome(StepStatus.DONE, exit_code=0))
    assert step.output == "one"  # an attempt without output keeps the last one
    assert step.exit_code == 0 and second.status == "done"


def test_step_to_dict_sums_and_peaks_over_attempts() -> None:
    step = StepMonitor("s", "Command", status=StepStatus.DONE, started_at=1.0, finished_at=4.0)
    step.attempts = [
        AttemptStats(1, "failed", 1.0, 2.0, cpu_user=0.5, max_rss_kb=300, bytes_out=10),
        AttemptStats(2, "done", 2.0, 4.0, cpu_user=0.25, max_rss_kb=200),
    ]
    d = step.to_dict()
    assert d["status"] == "done" and d["attempts"] == 2 and d["duration"] == 3.0
    assert d["cpu_user"] == 0.75 and d["cpu_system"] is None
    assert d["max_rss_kb"] == 300 and d["bytes_out"] == 10
    assert [t["attempt"] for t in d["tries"]] == [1, 2]


def test_an_untried_step() -> None:
    d = StepMonitor("s", "Dummy").to_dict()
    assert d["status"] == "pending" and d["attempts"] == 0 and d["duration"] is None
    assert d["max_rss_kb"] is None and d["tries"] == []


def test_task_counts_and_to_dict() -> None:
    run = TaskMonitor("t", "r1", status=TaskStatus.DONE, params={"x": 1}, started_at=5.0)
    assert run.duration is None
    run.finished_at = 7.0
    run.steps = {
        "a": StepMonitor("a", "Dummy", status=StepStatus.DONE),
        "b": StepMonitor("b", "Dummy", status=StepStatus.DONE),
        "c": StepMonitor("c", "Dummy", status=StepStatus.SKIPPED),
    }
    assert run.counts() == {"done": 2, "skipped": 1}
    d = run.to_dict()
    assert (d["task"], d["run_id"], d["status"], d["trigger"]) == ("t", "r1", "done", "manual")
    assert d["duration"] == 2.0 and d["params"] == {"x": 1}
    assert set(d["steps"]) == {"a", "b", "c"} and d["steps"]["c"]["status"] == "skipped"
