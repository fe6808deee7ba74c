"""flowtaskd.daemon.control.sockfile: binding the control socket file, removing only ours."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from flowtaskd.daemon.control.sockfile import bind_socket, unlink_socket
from flowtaskd.errors import DaemonError


def test_bind_creates_parents_with_mode(tmp_path: Path) -> None:
    path = tmp_path / "run" / "sub" / "control.sock"
    sock, inode = bind_socket(path, 0o660)
    try:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_ino == inode
    finally:
        sock.close()


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(os.fspath(path))
    old.close()  # a crashed daemon's file: nobody listens
    sock, inode = bind_socket(path, 0o600)
    try:
        sock.listen()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(os.fspath(path))
        assert os.lstat(path).st_ino == inode
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    finally:
        sock.close()


def test_a_live_socket_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(os.fspath(path))
    live.listen()
    try:
        with pytest.raises(DaemonError) as exc:
            bind_socket(path, 0o600)
        assert str(exc.value) == f"another process is serving the control socket {path}"
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # left alone
    finally:
        live.close()


def test_a_regular_file_is_an_error_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("mine")
    with pytest.raises(DaemonError) as exc:
        bind_socket(path, 0o600)
    assert str(exc.value) == (
        f"{path} exists and is not a socket: move it away or set control.socket"
    )
    assert path.read_text() == "mine"


def test_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DaemonError, match=r"^cannot create the control socket .*: "):
        bind_socket(blocker / "control.sock", 0o600)


def test_unlink_removes_only_our_file(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    sock, inode = bind_socket(path, 0o600)
    sock.close()
    unlink_socket(path, inode + 1)  # a later daemon's file: kept
    assert path.exists()
    unlink_socket(path, inode)
    assert not path.exists()
    unlink_socket(path, inode)  # gone already: no error
