"""``flowtaskd.cli.plan``: ``flowtaskd render FILE [-p K=V] [--at T] [--json]``, the plan of a
run as text level by level (or JSON), its exit codes and one-line errors; driven through the
CLI's ``main`` on real task files. (The plan itself is test_core_plan.py's.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowtaskd.cli import main
from flowtaskd.cli.plan import attempts_of, format_plan
from flowtaskd.tasks import load_pile

TASK = """\
name: r
params: {day: mon}
retry: {attempts: 2}
steps:
  - Command:
      name: a
      command: ["echo", "{day}", "{today:%Y%m%d}"]
      env: {X: "{day}"}
      cwd: /tmp
      precondition: ["test", "-d", "/tmp"]
      timeout: 30
  - ParamIterator:
      name: it
      params: {x: [1, 2]}
      to_group: G
  - Command:
      name: m
      Group: G
      command: "echo {x}"
  - Dummy:
      name: z
      depends: [a]
      trigger_rule: all_done
      retry: {attempts: 3, delay: 2}
"""


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(TASK)
    return path


def _render(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["render", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_plan_level_by_level_with_policies_params_and_the_group(
    task: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _render(capsys, str(task), "-p", "day=tue", "--at", "2026-01-02")
    assert (code, err) == (0, "")
    assert out == (
        "task r at 2026-01-02T00:00:00+00:00 (dry run: nothing runs)\n"
        'params {"day": "tue"}\n'
        "level 1:\n"
        "  a (Command)  [retry 2 tries; timeout 30s]\n"
        '    argv: ["echo", "tue", "20260102"]\n'
        '    env: {"X": "tue"}\n'
        "    cwd: /tmp\n"
        '    precondition: ["test", "-d", "/tmp"]\n'
        "level 2:\n"
        "  it (ParamIterator) after a  [retry 2 tries]\n"
        '    params: {"params": {"x": [1, 2]}}\n'
        "  z (Dummy) after a  [retry 3 tries, fixed 2s; when all_done]\n"
        '    params: {"message": null, "sleep": 0.0, "fail": false}\n'
        "level 3:\n"
        "  group G (once per item of its parent):\n"
        "    m (Command) after it  [retry 2 tries]\n"
        "      command: echo <item.x>\n"
    )


def test_json_is_the_plan_itself(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _render(capsys, str(task), "--json", "--at", "2026-01-02T03:04:05")
    assert code == 0
    plan = json.loads(out)
    assert plan["at"] == "2026-01-02T03:04:05+00:00"
    assert plan["levels"] == [["a"], ["it", "z"], ["group:G"]]
    assert plan["groups"] == {"G": ["m"]}
    assert (
        format_plan(plan).splitlines()[2:]
        == _render(capsys, str(task), "--at", "2026-01-02")[1].splitlines()[2:]
    )


def test_at_is_read_in_the_tasks_zone_and_secrets_show_as_stars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntimezone: Europe/Berlin\nsecrets: [TOKEN]\nsteps:\n"
        '  - Command: {command: ["curl", "-H", "{TOKEN}", "{today}"]}\n'
    )
    code, out, _ = _render(capsys, str(path), "-p", "TOKEN=abc123", "--at", "2026-01-02")
    assert code == 0 and "abc123" not in out
    assert out.splitlines()[:2] == [
        "task s at 2026-01-02T00:00:00+01:00 (dry run: nothing runs)",
        'params {"TOKEN": "***"}',
    ]
    assert '    argv: ["curl", "-H", "***", "2026-01-02"]' in out.splitlines()
    code, out, _ = _render(capsys, str(path), "-p", "TOKEN=abc123", "--json")
    assert code == 0 and "abc123" not in out


def test_a_param_without_equals_is_a_usage_error(
    task: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _render(capsys, str(task), "-p", "nokey") == (
        2,
        "",
        "flowtaskd: bad param 'nokey': expected KEY=VALUE\n",
    )
    assert _render(capsys, str(task), "-p", "=v")[0] == 2


def test_a_value_may_hold_equals_signs(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _render(capsys, str(task), "-p", "day=a=b", "--json")
    assert code == 0 and json.loads(out)["params"] == {"day": "a=b"}


def test_an_unreadable_at_is_one_line(task: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _render(capsys, str(task), "--at", "nonsense")
    assert (code, out) == (1, "")
    assert err == "flowtaskd: 'nonsense' is not a date (2026-01-31) or an ISO 8601 time\n"


def test_an_invalid_file_is_one_line_per_problem_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("name: b\nsteps:\n  - Dummy: {mesage: x}\n  - Dummy: {bad: 1}\n")
    code, out, err = _render(capsys, str(path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"flowtaskd: {path}:3: steps[0].Dummy.mesage: unknown key (did you mean `message`?)",
        f"flowtaskd: {path}:4: steps[1].Dummy.bad: unknown key",
    ]
    code, _, err = _render(capsys, str(tmp_path / "absent.yaml"))
    assert code == 1 and err.startswith("flowtaskd: ") and len(err.splitlines()) == 1


def test_an_unresolved_placeholder_shows_in_the_plan_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "u.yaml"
    path.write_text('name: u\nsteps:\n  - Command: {command: ["echo", "{nope}"]}\n')
    code, out, err = _render(capsys, str(path), "--at", "2026-01-02")
    assert code == 1
    assert "    error: Command_1.command[1]: unknown placeholder {nope}\n" in out
    assert err == "flowtaskd: Command_1.command[1]: unknown placeholder {nope}\n"


def test_attempts_of_takes_the_steps_retry_else_the_tasks(task: Path, tmp_path: Path) -> None:
    assert attempts_of(load_pile(task)) == {"a": 2, "it": 2, "m": 2, "z": 3}
    plain = tmp_path / "p.yaml"
    plain.write_text("name: p\nsteps:\n  - Dummy: {}\n  - Dummy: {retry: {attempts: 4}}\n")
    assert attempts_of(load_pile(plain)) == {"Dummy_1": 1, "Dummy_2": 4}
