"""The trust check against real files: owners, modes, folders, links (tests run as root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowtaskd.daemon.intake.trust import untrusted_reason

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")


@pytest.fixture
def task(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir(mode=0o755)
    path = folder / "job.yaml"
    path.write_text("steps: []\n")
    path.chmod(0o644)
    return path


def test_own_file_is_trusted(task: Path) -> None:
    assert untrusted_reason(task) is None


def test_group_writable(task: Path) -> None:
    task.chmod(0o664)
    assert untrusted_reason(task) == "is group-writable (mode 0664)"


def test_world_writable(task: Path) -> None:
    task.chmod(0o666)
    assert untrusted_reason(task) == "is world-writable (mode 0666)"


def test_owned_by_someone_else(task: Path) -> None:
    os.chown(task, 1234, 1234)
    assert untrusted_reason(task) == ("is owned by uid 1234, not the daemon's user (uid 0) or root")


def test_daemon_user_or_root_may_own_it(task: Path) -> None:
    os.chown(task, 1000, 1000)
    assert untrusted_reason(task, uid=1000) is None
    os.chown(task, 0, 0)
    assert untrusted_reason(task, uid=1000) is None
    os.chown(task, 2000, 2000)
    assert untrusted_reason(task, uid=1000) == (
        "is owned by uid 2000, not the daemon's user (uid 1000) or root"
    )


def test_world_writable_folder_without_sticky_bit(task: Path) -> None:
    task.parent.chmod(0o777)
    assert untrusted_reason(task) == (
        f"its folder {task.parent} is world-writable without the sticky bit (mode 0777)"
    )
    task.parent.chmod(0o1777)  # /tmp-style: others cannot replace our file
    assert untrusted_reason(task) is None


def test_folder_argument_checks_another_folder(task: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    inbox.chmod(0o777)
    assert untrusted_reason(task) is None
    assert untrusted_reason(task, folder=inbox) is not None
    assert "world-writable without the sticky bit" in str(untrusted_reason(task, folder=inbox))


def test_given_stat_is_used(task: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("x")
    other.chmod(0o666)
    assert untrusted_reason(task, other.stat()) == "is world-writable (mode 0666)"


def test_missing_file(tmp_path: Path) -> None:
    reason = untrusted_reason(tmp_path / "gone.yaml")
    assert reason == "cannot be checked: No such file or directory"


def test_symbolic_links(task: Path) -> None:
    link = task.parent / "link.yaml"
    link.symlink_to(task)
    assert untrusted_reason(link) is None
    os.chown(task, 1234, 1234)  # the target decides the content
    assert untrusted_reason(link) == "is owned by uid 1234, not the daemon's user (uid 0) or root"
    os.chown(task, 0, 0)
    os.lchown(link, 1234, 1234)  # and whoever owns the link decides where it points
    assert untrusted_reason(link) == (
        "is a symbolic link owned by uid 1234, not the daemon's user (uid 0) or root"
    )
