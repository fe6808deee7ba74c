"""Files and waiting, iterators and branching, through real task runs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowtaskd.components.branching import ConditionError, evaluate
from flowtaskd.components.registry import registry
from flowtaskd.components.sensors import seconds_until
from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.core.schema import validate_definition
from flowtaskd.errors import TaskParseError
from flowtaskd.tasks import Task
from tests.conftest import wait_for


async def run(steps: list[dict[str, Any]], tmp_path: Path, **header: Any) -> Any:
    kw = header.pop("_kw", {})
    task = {"name": "flow", "steps": steps, **header}
    async with Task(task=task, log_dir=tmp_path / "logs", **kw) as t:
        return await t.run()


def out(stats: Any, sid: str) -> Any:
    return stats.steps[sid].output


# -- files and waiting ------------------------------------------------------------------


async def test_file_exists_checks_and_sets_variables(tmp_path: Path) -> None:
    (tmp_path / "orders_1.csv").write_text("x")
    stats = await run(
        [
            {"FileExists": {"directory": str(tmp_path), "pattern": "orders_*.csv"}},
            {
                "PrintMessage": {
                    "message": "got {FileExists_1_FILENAME} in {FileExists_1_DIRECTORY}"
                }
            },
            {"FileExists": {"directory": str(tmp_path), "filename": "nope.csv", "depends": []}},
        ],
        tmp_path,
    )
    assert stats.steps["FileExists_1"].status is StepStatus.DONE
    assert out(stats, "PrintMessage_2") == f"got orders_1.csv in {tmp_path}"
    assert stats.steps["FileExists_3"].status is StepStatus.FAILED
    assert "no file at" in stats.steps["FileExists_3"].error


async def test_file_exists_sensor_waits_for_the_file(tmp_path: Path) -> None:
    task = {
        "name": "sensor",
        "steps": [
            {"FileExists": {"filename": str(tmp_path / "ready.flag"), "poke_interval": 0.05}}
        ],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        running = asyncio.ensure_future(t.run())
        await wait_for(
            lambda: "FileExists_1" in t.stats.steps and t.stats.steps["FileExists_1"].attempts
        )
        assert not running.done()
        (tmp_path / "ready.flag").write_text("")
        stats = await asyncio.wait_for(running, 10)
    assert stats.status is TaskStatus.DONE
    assert out(stats, "FileExists_1") == str(tmp_path / "ready.flag")


async def test_file_exists_sensor_gives_up(tmp_path: Path) -> None:
    stats = await run(
        [{"FileExists": {"filename": str(tmp_path / "x"), "poke_interval": 0.02, "max_wait": 0.1}}],
        tmp_path,
    )
    s = stats.steps["FileExists_1"]
    assert s.status is StepStatus.TIMED_OUT and "after 0.1s" in s.error


async def test_file_rename(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "taken.txt").write_text("T")
    stats = await run(
        [
            {
                "FileRename": {
                    "directory": str(tmp_path),
                    "source": "a.txt",
                    "destination": "b-{today:%Y}.txt",
                }
            },
            {
                "FileRename": {
                    "directory": str(tmp_path),
                    "source": "taken.txt",
                    "destination": "b-{today:%Y}.txt",
                }
            },
            {
                "FileRename": {
                    "directory": str(tmp_path),
                    "source": "gone.txt",
                    "destination": "c",
                    "ignore_missing": True,
                    "depends": [],
                }
            },
        ],
        tmp_path,
    )
    year = datetime.now().year
    assert (tmp_path / f"b-{year}.txt").read_text() == "A" and not (tmp_path / "a.txt").exists()
    assert "destination exists" in stats.steps["FileRename_2"].error
    assert (tmp_path / "taken.txt").read_text() == "T"
    assert stats.steps["FileRename_3"].status is StepStatus.DONE


async def test_file_read_and_open(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"n": 1}')
    (tmp_path / "b.json").write_text('{"n": 2}')
    (tmp_path / "big.txt").write_text("z" * 5000)
    stats = await run(
        [
            {"FileRead": {"directory": str(tmp_path), "filename": "a.json"}},
            {"FileRead": {"directory": str(tmp_path), "filename": "a.json", "is_json": True}},
            {"FileOpen": {"directory": str(tmp_path), "pattern": "*.json", "is_json": True}},
            {"FileRead": {"filename": str(tmp_path / "big.txt"), "max_size": 4096}},
        ],
        tmp_path,
        _kw={},
    )
    assert out(stats, "FileRead_1") == '{"n": 1}'
    assert json.loads(out(stats, "FileRead_2")) == {"n": 1}
    assert json.loads(out(stats, "FileOpen_3")) == {
        str(tmp_path / "a.json"): {"n": 1},
        str(tmp_path / "b.json"): {"n": 2},
    }
    assert "larger than max_size" in stats.steps["FileRead_4"].error


async def test_wait_and_its_timeout(tmp_path: Path) -> None:
    stats = await run(
        [{"Wait": {"wait": "50ms"}}, {"Wait": {"wait": "1h", "timeout": 0.1}}], tmp_path
    )
    assert stats.steps["Wait_1"].status is StepStatus.DONE
    assert stats.steps["Wait_2"].status is StepStatus.TIMED_OUT


def test_seconds_until_a_time_of_day_in_a_zone() -> None:
    zone = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 7, 23, 30, tzinfo=zone)  # the night before DST starts
    assert seconds_until("23:45", now) == 15 * 60
    # 01:30 tomorrow: 2 hours of wall clock, and 2 hours of real time
    assert seconds_until("01:30", now) == 2 * 3600
    # 03:30 on the DST morning: 4 hours on the wall clock, 3 of real time (02:00 is skipped)
    assert seconds_until("03:30", now) == 3 * 3600
    utc = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert seconds_until("12:00", utc) == 86400  # now is not "until": the next one


def test_wait_needs_one_of_wait_or_until() -> None:
    with pytest.raises(TaskParseError) as err:
        validate_definition(
            {"name": "w", "steps": [{"Wait": {}}, {"Wait": {"until": "25:00"}}]}, catalog=registry()
        )
    assert "steps[0].Wait" in str(err.value) and "steps[1].Wait.until" in str(err.value)


# -- iterators --------------------------------------------------------------------------


def touch(folder: Path, file: str, **opts: Any) -> dict[str, Any]:
    return {"Command": {"command": ["touch", f"{folder}/{file}"], **opts}}


async def test_date_list_feeds_a_group(tmp_path: Path) -> None:
    stats = await run(
        [
            {
                "DateList": {
                    "range": {"start": "28-02-2024", "end": "02-03-2024", "format": "%d-%m-%Y"},
                    "format": "%Y%m%d",
                    "vars": {"label": "d{{date}}"},
                    "to_group": "days",
                }
            },
            touch(tmp_path, "{label}-{index}", Group="days"),
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE
    assert json.loads(out(stats, "DateList_1")) == ["20240228", "20240229", "20240301", "20240302"]
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("d"))
    assert names == ["d20240228-0", "d20240229-1", "d20240301-2", "d20240302-3"]


async def test_date_list_monthly(tmp_path: Path) -> None:
    stats = await run(
        [{"DateList": {"range": {"start": "2024-01-31", "end": "2024-05-01"}, "monthly": True}}],
        tmp_path,
    )
    assert json.loads(out(stats, "DateList_1")) == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]


async def test_param_iterator_and_loop(tmp_path: Path) -> None:
    stats = await run(
        [
            {"ParamIterator": {"params": {"formid": [2552, 2567]}, "to_group": "forms"}},
            touch(tmp_path, "form-{formid}", Group="forms"),
            {"Loop": {"generator": "days_of_week", "to_group": "dow", "depends": []}},
            touch(tmp_path, "dow-{value}", Group="dow"),
            {"PrintMessage": {"message": '["x", {"id": 7}]', "depends": [], "name": "emit"}},
            {"Loop": {"iterate": True, "depends": "emit", "to_group": "emitted"}},
            touch(tmp_path, "in-{index}-{item}", Group="emitted"),
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, stats.to_dict()
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "form-2552",
        "form-2567",
        "dow-Monday",
        "dow-Sunday",
        "in-0-x",
        'in-1-{"id": 7}',
    } <= names


# -- branching --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition,data,expected",
    [
        ("$.status == ok", '{"status": "ok"}', True),
        ("$.status == 'ok'", '{"status": "bad"}', False),
        ("$.count >= 10", '{"count": 9}', False),  # upstream split `>=` on `>`; we do not
        ("$.count >= 10", '{"count": 10}', True),
        ("$.count > 9", '{"count": 10}', True),  # numbers compare as numbers ("10" < "9")
        ("$.items[1].id != 3", '{"items": [{"id": 1}, {"id": 2}]}', True),
        ("$.items.0.id == 1", '{"items": [{"id": 1}]}', True),
        ("$.flag == true", '{"flag": true}', True),
        ("$.missing == null", "{}", True),
        ("ERROR", "all good", False),
        ("ERROR", "an ERROR happened", True),
        ("$ == eu", "eu", True),
    ],
)
def test_conditions(condition: str, data: str, expected: bool) -> None:
    assert evaluate(condition, data) is expected


def test_bad_conditions() -> None:
    with pytest.raises(ConditionError):
        evaluate("status is ok", '{"status": "ok"}')
    with pytest.raises(ConditionError):
        evaluate("$.a.b == 1", "plain text")


async def test_if_runs_one_branch_and_skips_the_other(tmp_path: Path) -> None:
    stats = await run(
        [
            {"RunShell": {"command": "echo '{\"rows\": 12}'", "name": "count"}},
            {
                "IF": {
                    "condition": "$.rows > 10",
                    "true_component": "big",
                    "false_component": "small",
                }
            },
            touch(tmp_path, "big", name="big", depends="IF_2"),
            touch(tmp_path, "small", name="small", depends="IF_2"),
            touch(tmp_path, "after-small", name="after_small", depends="small"),
            touch(
                tmp_path,
                "either",
                name="either",
                depends=["big", "small"],
                trigger_rule="none_failed",
            ),
        ],
        tmp_path,
    )
    st = stats.steps
    assert stats.status is TaskStatus.DONE
    assert json.loads(st["IF_2"].output) == {"result": True, "chosen": "big"}
    assert st["big"].status is StepStatus.DONE
    assert st["small"].status is StepStatus.SKIPPED and st["small"].reason == "not chosen by IF_2"
    assert st["after_small"].status is StepStatus.SKIPPED
    assert st["either"].status is StepStatus.DONE
    assert {p.name for p in tmp_path.iterdir()} >= {"big", "either"}
    assert not (tmp_path / "small").exists()


async def test_switch_on_a_param_with_default(tmp_path: Path) -> None:
    steps = [
        {
            "Switch": {
                "value": "{region}",
                "cases": [
                    {"condition": "eu", "component": "eu"},
                    {"condition": "us", "component": "us"},
                ],
                "default": "other",
            }
        },
        touch(tmp_path, "eu", name="eu", depends="Switch_1"),
        touch(tmp_path, "us", name="us", depends="Switch_1"),
        touch(tmp_path, "other", name="other", depends="Switch_1"),
    ]
    stats = await run(steps, tmp_path, params={"region": "us-east"})
    assert [s for s in ("eu", "us", "other") if stats.steps[s].status is StepStatus.DONE] == ["us"]
    stats = await run(steps, tmp_path, params={"region": "apac"})
    assert stats.steps["other"].status is StepStatus.DONE
    assert stats.steps["eu"].reason == "not chosen by Switch_1"


async def test_set_variables_for_later_steps(tmp_path: Path) -> None:
    stats = await run(
        [
            {"SetVariables": {"vars": {"who": "ops-{task}", "n": 3}}},
            {"PrintMessage": {"message": "{who} {n} {SetVariables_1_who}"}},
        ],
        tmp_path,
    )
    assert out(stats, "PrintMessage_2") == "ops-flow 3 ops-flow"


async def test_user_func_is_python_with_args(tmp_path: Path) -> None:
    stats = await run(
        [{"UserFunc": {"function": "tests.dask_funcs:add", "args": {"a": 2, "b": 40}}}], tmp_path
    )
    assert out(stats, "UserFunc_1") == "42"
    stats = await run(
        [{"UserFunc": {"function": "tests.dask_funcs:add", "args": {"a": 1, "b": 1}}}],
        tmp_path,
        _kw={"python_allow": ("ok.jobs",)},
    )
    assert "not in the allowed Python modules" in stats.steps["UserFunc_1"].error


def test_if_names_two_different_steps() -> None:
    with pytest.raises(TaskParseError) as err:
        validate_definition(
            {
                "name": "x",
                "steps": [
                    {"IF": {"condition": "a", "true_component": "s", "false_component": "s"}}
                ],
            },
            catalog=registry(),
        )
    assert "name the same step" in str(err.value)


BRANCHES = """\
name: x
steps:
  - Dummy:
      name: first
  - IF:
      condition: "$.rows > 10"
      true_component: big
      false_component: smal
  - Dummy:
      name: big
      depends: [IF_2]
  - Dummy:
      name: small
      depends: [IF_2]
  - Switch:
      value: "{region}"
      depends: [first]
      cases:
        - condition: eu
          component: big
        - condition: us
          component: Switch_5
      default: nope
"""


def test_branch_targets_are_checked_at_load(tmp_path: Path) -> None:
    """A misspelt, missing, self or earlier branch target is a load-time error naming
    file, line and key, not a branch that silently never skips."""
    from flowtaskd.tasks.pile import load_task  # noqa: PLC0415

    path = tmp_path / "branches.yaml"
    path.write_text(BRANCHES)
    with pytest.raises(TaskParseError) as err:
        load_task(path)
    got = [(p.line, p.path, p.message, p.hint) for p in err.value.problems]
    assert got == [
        (
            8,
            "steps[1].IF.false_component",
            "names unknown step `smal`",
            "nearest known ids: `small`",
        ),
        (
            20,
            "steps[4].Switch.cases[0].component",
            "names step `big`, which does not run after `Switch_5`",
            "add `depends: [Switch_5]` to `big`",
        ),
        (
            22,
            "steps[4].Switch.cases[1].component",
            "`Switch_5` is this step itself",
            "name a step that depends on it",
        ),
        (
            23,
            "steps[4].Switch.default",
            "names unknown step `nope`",
            "nearest known ids: `first`, `IF_2`, `big`",
        ),
    ]
    assert all(p.file == str(path) for p in err.value.problems)
    assert f"{path}:8: steps[1].IF.false_component: names unknown step `smal`" in str(err.value)


def test_a_branch_target_may_run_later_through_other_steps() -> None:
    from flowtaskd.tasks.pile import check_syntax  # noqa: PLC0415

    check_syntax(
        {
            "name": "x",
            "steps": [
                {"IF": {"condition": "a", "true_component": "late", "false_component": "b"}},
                {"Dummy": {"name": "b"}},
                {"Dummy": {"name": "late"}},
            ],
        }
    )
