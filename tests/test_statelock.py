"""One daemon per state dir: the second one is told which pid holds it; the lock goes with
its holder, so a crash leaves none behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowtaskd.daemon.statelock import StateLock
from flowtaskd.errors import DaemonError


def test_a_second_lock_names_the_holder(tmp_path: Path) -> None:
    first = StateLock(tmp_path / "state")
    first.acquire()
    try:
        assert (tmp_path / "state" / "flowtaskd.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(DaemonError, match=f"pid {os.getpid()}"):
            StateLock(tmp_path / "state").acquire()
    finally:
        first.release()
    again = StateLock(tmp_path / "state")
    again.acquire()  # released: free again
    again.release()


def test_a_dead_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; "
        "from flowtaskd.daemon.statelock import StateLock; "
        f"StateLock(Path({str(tmp_path)!r})).acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    lock = StateLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead process's flock
    lock.release()


def test_an_unusable_state_dir_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DaemonError, match="cannot use state dir"):
        StateLock(blocker / "state").acquire()
