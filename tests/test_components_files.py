"""``flowtaskd.components.files``: ``FileList``, ``FileCopy``, ``FileMove`` and ``FileDelete``
on real folders, in flowtaskd's short form (``path``) and upstream's (``directory``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.components.base import Component
from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.files import (
    FileCopyComponent,
    FileDeleteComponent,
    FileListComponent,
    FileMoveComponent,
)
from flowtaskd.core.rules import StepStatus


async def run(comp: type[Component], raw: dict[str, Any], cwd: Path | None = None) -> StepOutcome:
    params = comp.Params.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", f"{comp.name}_1", comp.name, params, cwd=str(cwd) if cwd else None)
    return await comp(params).run(ctx)


def put(folder: Path, name: str, text: str = "x", mtime: int | None = None) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    put(folder, "b.csv", "bb", mtime=1_000)  # oldest
    put(folder, "a.csv", "aaaa", mtime=3_000)  # newest, largest
    put(folder, "c.txt", "c", mtime=2_000)
    put(folder, ".hidden", mtime=500)
    (folder / "sub").mkdir()
    return folder


def files(out: StepOutcome) -> list[str]:
    return [Path(i["file"]).name for i in out.items or []]


# -- FileList ------------------------------------------------------------------------------


async def test_file_list_path_form_lists_every_visible_file_by_name(inbox: Path) -> None:
    out = await run(FileListComponent, {"path": str(inbox)})
    assert out.status is StepStatus.DONE and out.event is None
    assert files(out) == ["a.csv", "b.csv", "c.txt"]
    assert out.output == "\n".join(str(inbox / n) for n in ("a.csv", "b.csv", "c.txt"))


async def test_file_list_items_describe_each_file(inbox: Path) -> None:
    out = await run(FileListComponent, {"path": str(inbox), "pattern": "*.csv"})
    assert out.items is not None
    assert out.items[0] == {
        "file": str(inbox / "a.csv"),
        "filename": str(inbox / "a.csv"),
        "directory": str(inbox),
        "name": "a.csv",
        "stem": "a",
        "suffix": ".csv",
        "folder": str(inbox),
        "size": 4,
        "mtime": 3_000.0,
        "index": 0,
    }
    assert out.items[1]["index"] == 1


async def test_file_list_upstream_form_is_in_modification_order(inbox: Path) -> None:
    out = await run(FileListComponent, {"directory": str(inbox), "pattern": "*"})
    assert files(out) == ["b.csv", "c.txt", "a.csv"]


@pytest.mark.parametrize(
    "opts,expected",
    [
        ({"sort": "size"}, ["c.txt", "b.csv", "a.csv"]),
        ({"sort": "size", "reverse": True}, ["a.csv", "b.csv", "c.txt"]),
        ({"sort": "mtime", "limit": 2}, ["b.csv", "c.txt"]),
        ({"sort": "name", "reverse": True, "limit": 1}, ["c.txt"]),
        ({"filename": ["c.txt", "gone.csv", "a.*"]}, ["a.csv", "c.txt"]),
        ({"file": {"pattern": "*.txt"}}, ["c.txt"]),
    ],
)
async def test_file_list_selects_sorts_and_limits(
    inbox: Path, opts: dict[str, Any], expected: list[str]
) -> None:
    out = await run(FileListComponent, {"path": str(inbox), **opts})
    assert files(out) == expected


async def test_file_list_may_list_folders_and_recurse(inbox: Path) -> None:
    put(inbox, "sub/deep.csv")
    out = await run(FileListComponent, {"path": str(inbox), "files_only": False})
    assert files(out) == ["a.csv", "b.csv", "c.txt", "sub"]
    out = await run(FileListComponent, {"path": str(inbox), "pattern": "**/*.csv"})
    assert files(out) == ["a.csv", "b.csv", "deep.csv"]


async def test_file_list_folder_is_relative_to_the_cwd(inbox: Path) -> None:
    out = await run(FileListComponent, {"path": "in", "pattern": "*.txt"}, cwd=inbox.parent)
    assert files(out) == ["c.txt"]


async def test_file_list_of_no_folder_fails(tmp_path: Path) -> None:
    out = await run(FileListComponent, {"path": str(tmp_path / "nope")})
    assert out.status is StepStatus.FAILED and out.error == f"not a folder: {tmp_path / 'nope'}"
    put(tmp_path, "file")
    out = await run(FileListComponent, {"directory": str(tmp_path / "file")})
    assert out.status is StepStatus.FAILED and out.error == f"not a folder: {tmp_path / 'file'}"


async def test_finding_nothing_is_done_in_flowtaskds_form_and_fails_in_upstreams(
    inbox: Path,
) -> None:
    out = await run(FileListComponent, {"path": str(inbox), "pattern": "*.xml"})
    assert out.status is StepStatus.DONE and out.items == [] and out.event is None
    out = await run(FileListComponent, {"directory": str(inbox), "pattern": "*.xml"})
    assert out.status is StepStatus.FAILED and out.event == "file_not_found"
    assert out.error == f"FileList: no files found in {inbox}"
    out = await run(
        FileListComponent, {"directory": str(inbox), "pattern": "*.xml", "iterate": True}
    )
    assert out.status is StepStatus.DONE and out.items == [] and out.event == "data_not_found"


def test_file_list_names_its_folder_once() -> None:
    for raw in ({}, {"path": "a", "directory": "b"}):
        with pytest.raises(ValidationError, match="give the folder as `directory`"):
            FileListComponent.Params.model_validate(raw)
    with pytest.raises(ValidationError, match="sort"):
        FileListComponent.Params.model_validate({"path": "a", "sort": "age"})
    with pytest.raises(ValidationError, match="limit"):
        FileListComponent.Params.model_validate({"path": "a", "limit": 0})


# -- FileCopy / FileMove ---------------------------------------------------------------------


async def test_copy_into_an_existing_folder_keeps_the_name_and_the_source(tmp_path: Path) -> None:
    src = put(tmp_path, "a.csv", "data", mtime=1_000)
    (tmp_path / "out").mkdir()
    out = await run(FileCopyComponent, {"source": str(src), "destination": str(tmp_path / "out")})
    assert out.status is StepStatus.DONE and out.output == str(tmp_path / "out" / "a.csv")
    assert (tmp_path / "out" / "a.csv").read_text() == "data" and src.exists()
    assert (tmp_path / "out" / "a.csv").stat().st_mtime == 1_000  # copied with its metadata


async def test_copy_to_a_folder_with_a_slash_creates_it_and_to_a_path_names_it(
    tmp_path: Path,
) -> None:
    put(tmp_path, "a.csv", "data")
    out = await run(FileCopyComponent, {"source": "a.csv", "destination": "new/deep/"}, tmp_path)
    assert out.ok and (tmp_path / "new" / "deep" / "a.csv").read_text() == "data"
    out = await run(FileCopyComponent, {"source": "a.csv", "destination": "x/b.csv"}, tmp_path)
    assert out.ok and (tmp_path / "x" / "b.csv").read_text() == "data"


async def test_copy_of_a_missing_file_fails_with_file_not_found(tmp_path: Path) -> None:
    out = await run(FileCopyComponent, {"source": "gone.csv", "destination": "d/"}, tmp_path)
    assert out.status is StepStatus.FAILED and out.event == "file_not_found"
    assert out.error == f"no such file: {tmp_path / 'gone.csv'}"
    assert not (tmp_path / "d").exists()


async def test_copy_that_may_not_overwrite_fails_before_writing(tmp_path: Path) -> None:
    put(tmp_path, "a.csv", "new")
    put(tmp_path, "b.csv", "new")
    put(tmp_path, "d/b.csv", "old")
    raw = {"source": {"directory": str(tmp_path), "filename": "*.csv"}, "destination": "d/"}
    out = await run(FileCopyComponent, {**raw, "overwrite": False}, tmp_path)
    assert (
        out.status is StepStatus.FAILED
        and out.error == f"destination exists: {tmp_path / 'd/b.csv'}"
    )
    assert not (tmp_path / "d" / "a.csv").exists()  # nothing copied, not even the first
    out = await run(FileCopyComponent, raw, tmp_path)
    assert out.ok and (tmp_path / "d" / "b.csv").read_text() == "new"


async def test_upstream_source_is_a_folder_and_a_glob(tmp_path: Path) -> None:
    put(tmp_path, "in/s1.csv")
    put(tmp_path, "in/s2.csv")
    put(tmp_path, "in/other.txt")
    raw = {
        "source": {"directory": "in", "filename": "s*.csv"},
        "destination": {"directory": "out"},
    }
    out = await run(FileCopyComponent, raw, tmp_path)
    assert out.ok and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s1.csv", "s2.csv"]
    out = await run(
        FileCopyComponent, {**raw, "source": {"directory": "in", "filename": "z*"}}, tmp_path
    )
    assert out.status is StepStatus.FAILED and out.event == "data_not_found"
    assert out.error == f"nothing to copy: no file matches {tmp_path / 'in'}/z*"


async def test_upstream_destination_filename_renames_one_file(tmp_path: Path) -> None:
    put(tmp_path, "in/s1.csv", "one")
    put(tmp_path, "in/s2.csv", "two")
    dest = {"directory": "out", "filename": "today.csv"}
    one = {"directory": "in", "filename": "s1.csv"}
    out = await run(FileCopyComponent, {"source": one, "destination": dest}, tmp_path)
    assert out.ok and (tmp_path / "out" / "today.csv").read_text() == "one"
    out = await run(
        FileCopyComponent, {"source": one, "destination": {**dest, "rename": False}}, tmp_path
    )
    assert out.ok and (tmp_path / "out" / "s1.csv").exists()  # rename: false keeps the name
    many = {"directory": "in", "filename": "s*.csv"}
    out = await run(FileCopyComponent, {"source": many, "destination": dest}, tmp_path)
    assert out.status is StepStatus.FAILED and out.event is None
    assert (
        out.error
        == f"destination.filename renames one file, but {tmp_path / 'in'}/s*.csv matches 2"
    )


async def test_copy_of_a_folder_copies_its_tree(tmp_path: Path) -> None:
    put(tmp_path, "tree/a/b.txt", "b")
    out = await run(FileCopyComponent, {"source": "tree", "destination": "copy"}, tmp_path)
    assert out.ok and (tmp_path / "copy" / "a" / "b.txt").read_text() == "b"


async def test_copy_without_create_destination_is_a_data_error(tmp_path: Path) -> None:
    put(tmp_path, "a.csv")
    raw = {"source": "a.csv", "destination": "no/such/b.csv", "create_destination": False}
    out = await run(FileCopyComponent, raw, tmp_path)
    assert out.status is StepStatus.FAILED and out.event == "data_error"
    assert out.error is not None and out.error.startswith("cannot copy: [Errno 2]")


async def test_remove_source_move_and_file_move_move(tmp_path: Path) -> None:
    for comp, extra in (
        (FileCopyComponent, {"remove_source": True}),
        (FileCopyComponent, {"move": True}),
        (FileMoveComponent, {}),
    ):
        src = put(tmp_path, "a.csv", comp.name)
        out = await run(comp, {"source": "a.csv", "destination": "moved/", **extra}, tmp_path)
        assert out.ok and not src.exists(), (comp.name, extra)
        assert (tmp_path / "moved" / "a.csv").read_text() == comp.name


async def test_a_failed_move_says_move(tmp_path: Path) -> None:
    put(tmp_path, "a.csv")
    raw = {"source": "a.csv", "destination": "no/b.csv", "create_destination": False}
    out = await run(FileMoveComponent, raw, tmp_path)
    assert out.error is not None and out.error.startswith("cannot move: ")
    assert (tmp_path / "a.csv").exists()


# -- FileDelete ----------------------------------------------------------------------------


async def test_delete_a_file_a_glob_or_a_folder(tmp_path: Path) -> None:
    put(tmp_path, "a.log")
    put(tmp_path, "b.log")
    put(tmp_path, "keep.txt")
    put(tmp_path, "tree/x/y")
    out = await run(FileDeleteComponent, {"path": "*.log"}, tmp_path)
    assert out.ok and out.output == f"{tmp_path / 'a.log'}\n{tmp_path / 'b.log'}"
    out = await run(FileDeleteComponent, {"path": "tree"}, tmp_path)
    assert out.ok and not (tmp_path / "tree").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


async def test_delete_of_a_link_to_a_folder_removes_only_the_link(tmp_path: Path) -> None:
    put(tmp_path, "real/f")
    os.symlink(tmp_path / "real", tmp_path / "link")
    out = await run(FileDeleteComponent, {"path": str(tmp_path / "link")})
    assert out.ok and not (tmp_path / "link").exists()
    assert (tmp_path / "real" / "f").exists()


async def test_delete_of_nothing_fails_unless_missing_ok(tmp_path: Path) -> None:
    out = await run(FileDeleteComponent, {"path": "gone*.csv"}, tmp_path)
    assert out.status is StepStatus.FAILED and out.event == "file_not_found"
    assert out.error == f"nothing to delete at {tmp_path / 'gone*.csv'}"
    out = await run(FileDeleteComponent, {"path": "gone.csv", "missing_ok": True}, tmp_path)
    assert out.ok and out.output == ""


async def test_delete_upstream_selection_and_every_file_without_one(inbox: Path) -> None:
    out = await run(FileDeleteComponent, {"directory": str(inbox), "pattern": "*.csv"})
    assert out.ok and sorted(p.name for p in inbox.iterdir()) == [".hidden", "c.txt", "sub"]
    out = await run(FileDeleteComponent, {"directory": str(inbox), "filename": "nope.csv"})
    assert out.ok and out.output == ""  # upstream's folder form: missing is fine by default
    out = await run(FileDeleteComponent, {"directory": str(inbox)})
    assert out.ok and sorted(p.name for p in inbox.iterdir()) == [".hidden", "sub"]


@pytest.mark.xfail(
    strict=True,
    reason="BUG: in the `directory` form FileDelete computes missing_ok but never uses it, so "
    "`missing_ok: false` does not fail when nothing matches",
)
async def test_delete_upstream_selection_of_nothing_with_missing_ok_false_fails(
    inbox: Path,
) -> None:
    raw = {"directory": str(inbox), "filename": "nope.csv", "missing_ok": False}
    out = await run(FileDeleteComponent, raw)
    assert out.status is StepStatus.FAILED and out.event == "file_not_found"


async def test_delete_in_no_folder_fails(tmp_path: Path) -> None:
    out = await run(FileDeleteComponent, {"directory": str(tmp_path / "nope")})
    assert out.status is StepStatus.FAILED and out.error == f"not a folder: {tmp_path / 'nope'}"


async def test_delete_that_the_os_refuses_is_a_data_error() -> None:
    out = await run(FileDeleteComponent, {"path": "/proc/self/status"})  # even root may not
    assert out.status is StepStatus.FAILED and out.event == "data_error"
    assert out.error is not None and out.error.startswith("cannot delete: [Errno 1]")


def test_file_delete_names_one_target() -> None:
    for raw in ({}, {"path": "a", "directory": "b"}):
        with pytest.raises(ValidationError, match="give `directory`"):
            FileDeleteComponent.Params.model_validate(raw)
