"""``flowtaskd.components.sensors``: ``FileExists`` (a check and a sensor), ``FileRename``,
``FileRead`` / ``FileOpen``, ``Wait`` and ``PrintMessage``, on real files."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from flowtaskd.components.base import Component
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.sensors import (
    FileExistsComponent,
    FileOpenComponent,
    FileReadComponent,
    FileRenameComponent,
    PrintMessageComponent,
    WaitComponent,
    seconds_until,
)
from flowtaskd.core.rules import StepStatus


async def run(comp: type[Component], raw: dict[str, Any], **kw: Any) -> StepOutcome:
    params = comp.Params.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", kw.pop("step_id", f"{comp.name}_1"), comp.name, params, **kw)
    return await comp(params).run(ctx)


def put(folder: Path, name: str, text: str = "x", mtime: int | None = None) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# -- FileExists ----------------------------------------------------------------------------


async def test_file_exists_sets_the_first_files_variables(tmp_path: Path) -> None:
    put(tmp_path, "orders_2.csv", mtime=2_000)
    put(tmp_path, "orders_1.csv", mtime=1_000)
    put(tmp_path, "orders_dir.csv/inner")  # a folder never counts
    raw = {"directory": str(tmp_path), "pattern": "orders_*.csv"}
    out = await run(FileExistsComponent, raw, step_id="FE")
    assert out.status is StepStatus.DONE
    assert out.output == f"{tmp_path / 'orders_1.csv'}\n{tmp_path / 'orders_2.csv'}"  # oldest first
    assert out.variables == {
        "FE_FILEPATH": str(tmp_path / "orders_1.csv"),
        "FE_FILENAME": "orders_1.csv",
        "FE_DIRECTORY": str(tmp_path),
    }


async def test_file_exists_first_or_last_file(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", mtime=2_000)
    put(tmp_path, "b.csv", mtime=1_000)
    raw: dict[str, Any] = {"directory": str(tmp_path), "file": {"pattern": "*.csv"}}
    out = await run(FileExistsComponent, {**raw, "first_file": True})
    assert out.output == str(tmp_path / "b.csv")
    out = await run(FileExistsComponent, {**raw, "last_file": True}, step_id="S")
    assert out.output == str(tmp_path / "a.csv") and (out.variables or {})["S_FILENAME"] == "a.csv"


async def test_file_exists_of_a_plain_name_relative_to_the_cwd(tmp_path: Path) -> None:
    put(tmp_path, "in/ready.flag")
    out = await run(FileExistsComponent, {"filename": "in/ready.flag"}, cwd=str(tmp_path))
    assert out.ok and out.output == str(tmp_path / "in" / "ready.flag")
    out = await run(FileExistsComponent, {"filename": "in"}, cwd=str(tmp_path))  # a folder
    assert out.status is StepStatus.FAILED and out.error == "no file at in"


async def test_file_exists_check_fails_at_once(tmp_path: Path) -> None:
    out = await run(FileExistsComponent, {"directory": str(tmp_path), "filename": "x.csv"})
    assert out.status is StepStatus.FAILED and out.error == f"no file at {tmp_path / 'x.csv'}"


async def test_the_sensor_gives_up_after_max_wait_or_the_step_timeout(tmp_path: Path) -> None:
    raw = {"directory": str(tmp_path), "filename": "x", "poke_interval": 0.02}
    out = await run(FileExistsComponent, {**raw, "max_wait": 0.1}, timeout=60.0)
    assert out.status is StepStatus.TIMED_OUT
    assert out.error == f"no file at {tmp_path / 'x'} after 0.1s"
    out = await run(FileExistsComponent, raw, timeout=0.1)
    assert out.status is StepStatus.TIMED_OUT and out.error is not None
    assert out.error.endswith("after 0.1s")


async def test_the_sensor_finds_a_file_that_comes_later(tmp_path: Path) -> None:
    import asyncio  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    loop.call_later(0.05, put, tmp_path, "late.csv")
    raw = {"directory": str(tmp_path), "pattern": "late*", "poke_interval": 0.01}
    out = await run(FileExistsComponent, raw, timeout=10.0)
    assert out.ok and out.output == str(tmp_path / "late.csv")


def test_file_select_names_the_file() -> None:
    with pytest.raises(ValidationError, match="name the file: `filename`, `pattern`"):
        FileExistsComponent.Params.model_validate({"directory": "/d"})


# -- FileRename ----------------------------------------------------------------------------


async def test_rename_in_a_directory_and_into_a_new_folder(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", "A")
    raw = {"directory": str(tmp_path), "source": "a.csv", "destination": "done/b.csv"}
    out = await run(FileRenameComponent, raw)
    assert out.ok and json.loads(out.output or "") == {
        str(tmp_path / "a.csv"): str(tmp_path / "done" / "b.csv")
    }
    assert (tmp_path / "done" / "b.csv").read_text() == "A" and not (tmp_path / "a.csv").exists()


async def test_rename_never_replaces_an_existing_file(tmp_path: Path) -> None:
    put(tmp_path, "a", "A")
    put(tmp_path, "b", "B")
    out = await run(FileRenameComponent, {"source": "a", "destination": "b"}, cwd=str(tmp_path))
    assert out.status is StepStatus.FAILED
    assert out.error == f"cannot rename: destination exists: {tmp_path / 'b'}"
    assert (tmp_path / "a").read_text() == "A" and (tmp_path / "b").read_text() == "B"


async def test_rename_of_a_missing_file_and_of_a_glob(tmp_path: Path) -> None:
    out = await run(FileRenameComponent, {"source": "gone", "destination": "x"}, cwd=str(tmp_path))
    assert out.status is StepStatus.FAILED and out.error == f"no such file: {tmp_path / 'gone'}"
    raw = {"source": "gone", "destination": "x", "ignore_missing": True}
    out = await run(FileRenameComponent, raw, cwd=str(tmp_path))
    assert out.ok and out.output == "{}"
    put(tmp_path, "a*")
    out = await run(FileRenameComponent, {"source": "a*", "destination": "b"}, cwd=str(tmp_path))
    assert out.status is StepStatus.FAILED and out.error == "FileRename takes no wildcards"


# -- FileRead / FileOpen ---------------------------------------------------------------------


async def test_file_read_joins_the_matches_oldest_first(tmp_path: Path) -> None:
    put(tmp_path, "p2.txt", "two\n", mtime=2_000)
    put(tmp_path, "p1.txt", "one\n", mtime=1_000)
    out = await run(FileReadComponent, {"directory": str(tmp_path), "pattern": "p*.txt"})
    assert out.ok and out.output == "one\ntwo\n"


async def test_file_read_json_one_file_or_a_list(tmp_path: Path) -> None:
    put(tmp_path, "a.json", '{"n": 1}', mtime=1_000)
    put(tmp_path, "b.json", "[2]", mtime=2_000)
    out = await run(
        FileReadComponent, {"directory": str(tmp_path), "filename": "a.json", "is_json": True}
    )
    assert json.loads(out.output or "") == {"n": 1}
    out = await run(
        FileReadComponent, {"directory": str(tmp_path), "pattern": "*.json", "is_json": True}
    )
    assert json.loads(out.output or "") == [{"n": 1}, [2]]


async def test_file_open_maps_each_file_to_its_content(tmp_path: Path) -> None:
    put(tmp_path, "a.json", '{"n": 1}', mtime=1_000)
    put(tmp_path, "b.json", "[2]", mtime=2_000)
    raw = {"directory": str(tmp_path), "pattern": "*.json"}
    out = await run(FileOpenComponent, raw)
    assert json.loads(out.output or "") == {
        str(tmp_path / "a.json"): '{"n": 1}',
        str(tmp_path / "b.json"): "[2]",
    }
    out = await run(FileOpenComponent, {**raw, "is_json": True})
    assert json.loads(out.output or "") == {
        str(tmp_path / "a.json"): {"n": 1},
        str(tmp_path / "b.json"): [2],
    }


async def test_file_read_has_a_size_cap_over_all_the_files(tmp_path: Path) -> None:
    put(tmp_path, "a", "12345", mtime=1_000)
    put(tmp_path, "b", "678", mtime=2_000)
    raw = {"directory": str(tmp_path), "pattern": "*"}
    out = await run(FileReadComponent, {**raw, "max_size": 8})
    assert out.ok and out.output == "12345678"  # exactly the cap is fine
    out = await run(FileReadComponent, {**raw, "max_size": 7})
    assert out.status is StepStatus.FAILED
    assert (
        out.error
        == f"cannot read: {tmp_path / 'b'} makes the content larger than max_size (7 bytes)"
    )


@pytest.mark.parametrize(
    "content,opts,why",
    [
        (b"\xff\xfe", {}, "cannot read: 'utf-8' codec can't decode"),
        (b"x", {"encoding": "no-such-codec"}, "cannot read: unknown encoding: no-such-codec"),
        (b"{oops", {"is_json": True}, "cannot read: Expecting property name"),
    ],
)
async def test_file_read_that_cannot_decode_fails(
    tmp_path: Path, content: bytes, opts: dict[str, Any], why: str
) -> None:
    (tmp_path / "f").write_bytes(content)
    out = await run(FileReadComponent, {"filename": str(tmp_path / "f"), **opts})
    assert out.status is StepStatus.FAILED and out.error is not None
    assert out.error.startswith(why)


async def test_file_read_of_nothing_fails(tmp_path: Path) -> None:
    out = await run(FileOpenComponent, {"directory": str(tmp_path), "pattern": "*.csv"})
    assert out.status is StepStatus.FAILED and out.error == f"no file at {tmp_path}/*.csv"


# -- Wait ----------------------------------------------------------------------------------


def test_seconds_until_when_the_clocks_go_back() -> None:
    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 10, 24, 23, 0, tzinfo=zone)  # the night summer time ends
    assert seconds_until("04:00", now) == 6 * 3600  # 5 wall-clock hours, 6 real ones
    assert seconds_until("22:59:30", now) == 24 * 3600 + 3600 - 30


async def test_wait_a_duration() -> None:
    out = await run(WaitComponent, {"wait": "20ms"}, timeout=5.0)
    assert out.ok and out.output == "0.02"
    out = await run(WaitComponent, {"wait": 0})
    assert out.ok and out.output == "0"


async def test_wait_longer_than_the_timeout_times_out() -> None:
    out = await run(WaitComponent, {"wait": "1h"}, timeout=0.05)
    assert out.status is StepStatus.TIMED_OUT and out.error == "timed out after 0.05s"


async def test_wait_until_a_time_of_day_in_the_tasks_zone() -> None:
    zone = "Pacific/Kiritimati"  # this minute has begun there, so the next one is a day away
    now = datetime.now(ZoneInfo(zone))
    until = f"{now.hour:02d}:{now.minute:02d}"
    out = await run(WaitComponent, {"until": until}, timeout=0.05, timezone=zone)
    assert out.status is StepStatus.TIMED_OUT


def test_wait_until_is_a_time_of_day() -> None:
    for bad in ("24:00", "7:60", "noon"):
        with pytest.raises(ValidationError, match="until"):
            WaitComponent.Params.model_validate({"until": bad})
    assert WaitComponent.Params.model_validate({"until": "7:05:09"})


# -- PrintMessage --------------------------------------------------------------------------


async def test_print_message_logs_at_its_level_and_masks_secrets() -> None:
    with capture_logs() as logs:
        out = await run(
            PrintMessageComponent,
            {"message": "token tok-77 in use", "level": "WARN"},
            secrets=("tok-77",),
        )
    assert out.ok and out.output == "token *** in use"
    assert logs == [
        {
            "event": "print_message",
            "message": "token *** in use",
            "task": "t",
            "step": "PrintMessage_1",
            "log_level": "warning",
        }
    ]


@pytest.mark.parametrize("level", ["debug", "Info", "warning", "ERROR", "critical"])
async def test_print_message_levels(level: str) -> None:
    with capture_logs() as logs:
        await run(PrintMessageComponent, {"message": "m", "level": level})
    assert [e["log_level"] for e in logs] == [level.lower()]


def test_print_message_refuses_an_unknown_level() -> None:
    with pytest.raises(ValidationError, match="level"):
        PrintMessageComponent.Params.model_validate({"level": "loud"})
