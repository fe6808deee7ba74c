"""complete_now: a read lease proves that nobody holds a file open for writing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowtaskd.daemon.intake.complete import complete_now

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux leases")


def test_a_closed_file_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x")
    st = complete_now(path)
    assert st is not None and st.st_size == 1 and st.st_ino == path.stat().st_ino


def test_a_file_open_for_writing_here_is_not(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    with path.open("ab", buffering=0) as f:
        f.write(b"x")
        assert complete_now(path) is None
    assert complete_now(path) is not None


def test_a_file_open_for_writing_in_another_process_is_not(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(path)!r}, 'a'); print('open', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert complete_now(path) is None
    finally:
        holder.communicate("\n", timeout=10)
    assert complete_now(path) is not None


def test_a_reader_does_not_count(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("x")
    with path.open("rb"):
        assert complete_now(path) is not None


def test_what_is_not_a_regular_file_is_never_complete(tmp_path: Path) -> None:
    (tmp_path / "target.yaml").write_text("x")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "target.yaml")
    (tmp_path / "folder.yaml").mkdir()
    os.mkfifo(tmp_path / "pipe.yaml")
    for name in ("link.yaml", "folder.yaml", "pipe.yaml", "missing.yaml"):
        assert complete_now(tmp_path / name) is None, name
