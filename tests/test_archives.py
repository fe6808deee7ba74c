"""Uncompress, Unzip, UnGzip on real archives: formats, escaping members, bombs, cleanup."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.tasks import Task


async def run(component: str, params: dict[str, Any], tmp_path: Path) -> Any:
    task = {"name": "unpack", "steps": [{component: params}]}
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    return stats.steps[f"{component}_1"]


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


async def test_unzip_into_destination(tmp_path: Path) -> None:
    zpath = make_zip(tmp_path / "in.zip", {"a.txt": b"A", "sub/b.csv": b"B,1\n"})
    out = tmp_path / "out"
    s = await run(
        "Unzip",
        {
            "source": {"directory": str(tmp_path), "filename": "*.zip"},
            "destination": {"directory": str(out)},
        },
        tmp_path,
    )
    assert s.status is StepStatus.DONE, s.error
    assert sorted(json.loads(s.output)) == [str(out / "a.txt"), str(out / "sub/b.csv")]
    assert (out / "sub/b.csv").read_bytes() == b"B,1\n"
    assert listing(out) == ["a.txt", "sub/b.csv"]  # no staging folder left
    assert zpath.exists()


@pytest.mark.parametrize(
    "suffix,mode", [(".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".tar", "w")]
)
async def test_tarballs(tmp_path: Path, suffix: str, mode: str) -> None:
    make_tar(tmp_path / f"t{suffix}", {"d/x.txt": b"x" * 100}, mode)
    s = await run(
        "UnGzip",
        {
            "filename": f"t{suffix}",
            "directory": str(tmp_path),
            "extract": {"directory": str(tmp_path / "o")},
            "delete_source": True,
        },
        tmp_path,
    )
    assert s.status is StepStatus.DONE, s.error
    assert (tmp_path / "o/d/x.txt").read_bytes() == b"x" * 100
    assert not (tmp_path / f"t{suffix}").exists()


@pytest.mark.parametrize(
    "suffix,opener", [(".gz", gzip.open), (".bz2", bz2.open), (".xz", lzma.open)]
)
async def test_single_streams(tmp_path: Path, suffix: str, opener: Any) -> None:
    with opener(tmp_path / f"data.csv{suffix}", "wb") as fh:
        fh.write(b"a,b\n1,2\n")
    s = await run("Uncompress", {"filename": str(tmp_path / f"data.csv{suffix}")}, tmp_path)
    assert s.status is StepStatus.DONE, s.error
    assert (tmp_path / "data.csv").read_bytes() == b"a,b\n1,2\n"


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
async def test_escaping_members_are_refused(tmp_path: Path, name: str) -> None:
    make_zip(tmp_path / "bad.zip", {"ok.txt": b"ok", name: b"evil"})
    out = tmp_path / "deep" / "out"
    s = await run(
        "Unzip",
        {"filename": str(tmp_path / "bad.zip"), "destination": {"directory": str(out)}},
        tmp_path,
    )
    assert s.status is StepStatus.FAILED
    assert "outside the destination" in s.error
    assert not list(tmp_path.rglob("evil.txt"))
    assert list(out.iterdir()) == []  # ok.txt was not left behind either


async def test_tar_links_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    s = await run(
        "Uncompress",
        {"filename": str(path), "destination": {"directory": str(tmp_path / "o")}},
        tmp_path,
    )
    assert s.status is StepStatus.FAILED and "link" in s.error
    assert not (tmp_path / "o" / "link").exists()


async def test_bomb_by_ratio_and_by_size(tmp_path: Path) -> None:
    make_zip(tmp_path / "bomb.zip", {"zeros": b"\0" * (20 << 20)})
    s = await run(
        "Unzip",
        {"filename": str(tmp_path / "bomb.zip"), "destination": {"directory": str(tmp_path / "o")}},
        tmp_path,
    )
    assert s.status is StepStatus.FAILED and "max_ratio" in s.error
    assert list((tmp_path / "o").iterdir()) == []
    s = await run(
        "Unzip",
        {
            "filename": str(tmp_path / "bomb.zip"),
            "destination": {"directory": str(tmp_path / "o")},
            "max_ratio": 1e9,
            "max_size": 1 << 20,
        },
        tmp_path,
    )
    assert s.status is StepStatus.FAILED and "max_size" in s.error
    s = await run(
        "Unzip",
        {
            "filename": str(tmp_path / "bomb.zip"),
            "destination": {"directory": str(tmp_path / "o")},
            "max_ratio": 1e9,
        },
        tmp_path,
    )
    assert s.status is StepStatus.DONE
    assert (tmp_path / "o" / "zeros").stat().st_size == 20 << 20


async def test_wrong_format_and_missing(tmp_path: Path) -> None:
    make_tar(tmp_path / "t.tar.gz", {"a": b"a"})
    s = await run("Unzip", {"filename": str(tmp_path / "t.tar.gz")}, tmp_path)
    assert s.status is StepStatus.FAILED and "not one of .zip" in s.error
    s = await run("Uncompress", {"filename": str(tmp_path / "nope.zip")}, tmp_path)
    assert s.status is StepStatus.FAILED and "no such archive" in s.error
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    s = await run("Uncompress", {"filename": str(tmp_path / "junk.zip")}, tmp_path)
    assert s.status is StepStatus.FAILED


async def test_timeout_removes_what_was_written(tmp_path: Path) -> None:
    big = tmp_path / "big.tar.gz"  # small on disk, 640 MB unpacked: takes seconds
    with tarfile.open(big, "w:gz", compresslevel=1) as tf:
        zeros = b"\0" * (16 << 20)
        for i in range(40):
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(zeros)
            tf.addfile(info, io.BytesIO(zeros))
    out = tmp_path / "o"
    params = {"filename": str(big), "destination": {"directory": str(out)}, "max_ratio": 1e9}
    task = {"name": "t", "steps": [{"Uncompress": {**params, "timeout": 0.3}}]}
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    assert stats.steps["Uncompress_1"].status is StepStatus.TIMED_OUT
    assert stats.status is TaskStatus.FAILED
    assert list(out.iterdir()) == []
