"""DownloadFromFTP and UploadToFTP against a real FTP/FTPS server (pyftpdlib) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.tasks import Task
from tests.conftest import wait_for
from tests.servers import need_binary, need_module

need_module("pyftpdlib", "pip install -e '.[test]'")

with warnings.catch_warnings():  # pyftpdlib imports asyncore, deprecated in 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

PW = "ftp-pw-2718"


def _serve(root: Path, handler_cls: type[FTPHandler], **attrs: Any) -> Iterator[int]:
    auth = DummyAuthorizer()
    auth.add_user("ann", PW, str(root), perm="elradfmwMT")
    handler = type(
        "H",
        (handler_cls,),
        {"authorizer": auth, "banner": "test", "auth_failed_timeout": 0.01, **attrs},
    )
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.address[1]
    finally:
        server.close_all()
        thread.join(10)


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "ftproot"
    (root / "out").mkdir(parents=True)
    (root / "in").mkdir()
    return root


@pytest.fixture
def ftp(ftp_root: Path) -> Iterator[int]:
    yield from _serve(ftp_root, FTPHandler)


@pytest.fixture
def ftps(ftp_root: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    openssl = need_binary("openssl", "apt-get install openssl")
    pem = tmp_path / "ftps.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(pem),
            "-out",
            str(pem),
        ],
        check=True,
        capture_output=True,
    )
    for port in _serve(
        ftp_root,
        TLS_FTPHandler,
        certfile=str(pem),
        tls_control_required=True,
        tls_data_required=True,
    ):
        yield port, pem


def conn(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "credentials": {"user": "ann", "password": "{ftp_pw}"},
        **extra,
    }


async def run(steps: list[dict[str, Any]], tmp_path: Path) -> Any:
    task = {"name": "ftp", "secrets": ["ftp_pw"], "params": {"ftp_pw": PW}, "steps": steps}
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        return await t.run()


async def test_download_glob_and_regex(ftp: int, ftp_root: Path, tmp_path: Path) -> None:
    for name in ("a_2024.csv", "b_2025.csv", "notes.txt"):
        (ftp_root / "out" / name).write_text(name)
    local = tmp_path / "local"
    stats = await run(
        [
            {
                "DownloadFromFTP": {
                    **conn(ftp),
                    "source": {"directory": "/out", "filename": "*.csv"},
                    "download": {"directory": str(local)},
                }
            },
            {
                "DownloadFromFTP": {
                    **conn(ftp),
                    "file": {"directory": "/out", "pattern": r"_2025\.csv$"},
                    "directory": str(tmp_path / "l2"),
                    "remove": True,
                }
            },
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, {k: v.error for k, v in stats.steps.items()}
    assert sorted(os.listdir(local)) == ["a_2024.csv", "b_2025.csv"]
    assert json.loads(stats.steps["DownloadFromFTP_2"].output) == [
        str(tmp_path / "l2" / "b_2025.csv")
    ]
    assert not (ftp_root / "out" / "b_2025.csv").exists()


async def test_download_resumes_a_part(ftp: int, ftp_root: Path, tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    (ftp_root / "out" / "big.bin").write_bytes(data)
    local = tmp_path / "local"
    local.mkdir()
    (local / "big.bin.part").write_bytes(data[:700_000])
    stats = await run(
        [
            {
                "DownloadFromFTP": {
                    **conn(ftp),
                    "source": {"directory": "/out", "filename": "big.bin"},
                    "directory": str(local),
                    "resume": True,
                }
            }
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, stats.steps["DownloadFromFTP_1"].error
    assert (local / "big.bin").read_bytes() == data
    assert os.listdir(local) == ["big.bin"]


async def test_upload_through_part_names(ftp: int, ftp_root: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "r1.csv").write_text("one")
    (src / "r2.csv").write_text("two")
    stats = await run(
        [
            {
                "UploadToFTP": {
                    **conn(ftp),
                    "source": {"directory": str(src), "filename": "*.csv"},
                    "destination": {"directory": "/in"},
                }
            }
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, stats.steps["UploadToFTP_1"].error
    assert sorted(os.listdir(ftp_root / "in")) == ["r1.csv", "r2.csv"]
    assert (ftp_root / "in" / "r2.csv").read_text() == "two"


async def test_ftps_with_a_private_ca(
    ftps: tuple[int, Path], ftp_root: Path, tmp_path: Path
) -> None:
    port, pem = ftps
    (ftp_root / "out" / "secure.txt").write_text("tls")
    stats = await run(
        [
            {
                "DownloadFromFTP": {
                    **conn(port, use_tls=True, cafile=str(pem)),
                    "source": {"directory": "/out", "filename": "secure.txt"},
                    "directory": str(tmp_path / "l"),
                }
            }
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, stats.steps["DownloadFromFTP_1"].error
    assert (tmp_path / "l" / "secure.txt").read_text() == "tls"
    stats = await run(
        [
            {
                "DownloadFromFTP": {
                    **conn(port, use_tls=True),
                    "source": {"directory": "/out", "filename": "secure.txt"},
                    "directory": str(tmp_path / "l3"),
                }
            }
        ],
        tmp_path,
    )
    assert "CERTIFICATE_VERIFY_FAILED" in stats.steps["DownloadFromFTP_1"].error


async def test_wrong_password_and_literal_password(ftp: int, tmp_path: Path) -> None:
    bad = {"host": "127.0.0.1", "port": ftp, "credentials": {"user": "ann", "password": "{ftp_pw}"}}
    task = {
        "name": "f",
        "secrets": ["ftp_pw"],
        "params": {"ftp_pw": "not-it-99"},
        "steps": [
            {"DownloadFromFTP": {**bad, "source": {"filename": "x"}, "directory": str(tmp_path)}}
        ],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    error = stats.steps["DownloadFromFTP_1"].error
    assert "530" in error and "not-it-99" not in error
    lit = {**bad, "credentials": {"user": "ann", "password": PW}}
    task = {
        "name": "f",
        "steps": [
            {"DownloadFromFTP": {**lit, "source": {"filename": "x"}, "directory": str(tmp_path)}}
        ],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    assert "allow_plaintext_credentials" in stats.steps["DownloadFromFTP_1"].error


async def test_cancel_stops_the_transfer_and_removes_the_part(
    ftp: int, ftp_root: Path, tmp_path: Path
) -> None:
    with open(ftp_root / "out" / "huge.bin", "wb") as fh:
        fh.truncate(4 << 30)  # sparse
    local = tmp_path / "local"
    step = {
        **conn(ftp),
        "source": {"directory": "/out", "filename": "huge.bin"},
        "directory": str(local),
    }
    task = {
        "name": "c",
        "secrets": ["ftp_pw"],
        "params": {"ftp_pw": PW},
        "steps": [{"DownloadFromFTP": step}],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        running = asyncio.ensure_future(t.run())
        await wait_for((local / "huge.bin.part").exists, timeout=20)
        t.cancel()
        stats = await asyncio.wait_for(running, 20)
    assert stats.status is TaskStatus.CANCELLED
    assert stats.steps["DownloadFromFTP_1"].status is StepStatus.CANCELLED
    assert list(local.iterdir()) == []
