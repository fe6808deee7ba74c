"""``flowtaskd.components.rsync``: the rsync command line, and real runs of the system
``rsync``: a local copy, a push over a throwaway sshd, and why SSH failed."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.rsync import RsyncComponent, RsyncParams, rsync_argv
from flowtaskd.core.rules import StepStatus
from tests.servers import free_port, need_binary
from tests.sshd import Sshd, sshd_server


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def params(**raw: Any) -> RsyncParams:
    return RsyncParams.model_validate(raw)


async def run(raw: dict[str, Any], tmp_path: Path, **kw: Any) -> StepOutcome:
    p = RsyncParams.model_validate(raw).model_dump()
    ctx = StepContext("t", "r1", "Rsync_1", "Rsync", p, log_dir=tmp_path, **kw)
    return await RsyncComponent(p).run(ctx)


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


# -- rsync_argv ----------------------------------------------------------------------------


def test_a_local_copy_needs_no_ssh() -> None:
    argv = rsync_argv(params(source={"directory": "/a/"}, destination={"directory": "/b"}))
    assert argv == ["rsync", "-azrv", "--", "/a/", "/b"]


def test_a_push_runs_ssh_in_batch_mode_checking_the_host_key() -> None:
    p = params(
        source={"directory": "/a/"},
        destination={"directory": "/srv/in", "server": "backup", "port": 2222},
        credentials={"user": "ops", "client_keys": ["/k1", "/k2"], "known_hosts": "/kh"},
        flags="rt",
        delete=True,
        exclude=["*.tmp", "cache/"],
    )
    argv = rsync_argv(p, rsync="/usr/bin/rsync", ssh="/usr/bin/ssh")
    e = argv[argv.index("-e") + 1]
    assert shlex.split(e) == [
        "/usr/bin/ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-p",
        "2222",
        "-o",
        "UserKnownHostsFile=/kh",
        "-i",
        "/k1",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        "/k2",
        "-o",
        "IdentitiesOnly=yes",
    ]
    assert argv[:2] == ["/usr/bin/rsync", "-rt"]
    assert argv[4:] == [
        "--delete",
        "--exclude=*.tmp",
        "--exclude=cache/",
        "--",
        "/a/",
        "ops@backup:/srv/in",
    ]


def test_a_pull_names_the_source_and_a_sides_user_wins() -> None:
    p = params(
        source={"directory": "/data/", "server": "h", "user": "reader"},
        destination={"directory": "/local"},
        credentials={"username": "ops"},
    )
    argv = rsync_argv(p)
    assert argv[-3:] == ["--", "reader@h:/data/", "/local"]
    assert "-p" not in shlex.split(argv[argv.index("-e") + 1])
    p = params(source={"directory": "/d/", "server": "h"}, destination={"directory": "/l"})
    assert rsync_argv(p)[-2] == "h:/d/"  # no user: ssh's own default


def test_rsync_params() -> None:
    with pytest.raises(
        ValidationError, match="only one of source and destination can name a server"
    ):
        params(
            source={"directory": "/a", "server": "x"},
            destination={"directory": "/b", "server": "y"},
        )
    with pytest.raises(ValidationError, match="flags"):
        params(source={"directory": "/a"}, destination={"directory": "/b"}, flags="a -e sh")
    with pytest.raises(ValidationError, match="port"):
        params(
            source={"directory": "/a", "server": "x", "port": 0}, destination={"directory": "/b"}
        )


# -- running rsync -------------------------------------------------------------------------


async def test_a_local_copy_with_excludes_and_delete(tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    (src / "x.tmp").write_text("x")
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    raw = {
        "source": {"directory": f"{src}/"},
        "destination": {"directory": str(dst)},
        "exclude": ["*.tmp"],
        "delete": True,
    }
    out = await run(raw, tmp_path)
    assert out.status is StepStatus.DONE, out.error
    assert tree(dst) == {"a.txt": "a", "sub/b.txt": "b"}
    assert out.output is not None and "sub/b.txt" in out.output  # -v lists what it sent


async def test_a_push_over_ssh(sshd: Sshd, tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    src = tmp_path / "src"
    src.mkdir()
    (src / "r.csv").write_text("1,2")
    raw = {
        "source": {"directory": f"{src}/"},
        "destination": {
            "directory": str(tmp_path / "remote"),
            "server": "127.0.0.1",
            "port": sshd.port,
        },
        "credentials": {
            "username": sshd.user,
            "client_keys": [str(sshd.key)],
            "known_hosts": str(sshd.known_hosts),
        },
    }
    out = await run(raw, tmp_path)
    assert out.status is StepStatus.DONE, out.error
    assert tree(tmp_path / "remote") == {"r.csv": "1,2"}


async def test_when_ssh_fails_the_error_says_why(tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    (tmp_path / "src").mkdir()
    port = free_port()  # nothing listens there
    raw = {
        "source": {"directory": f"{tmp_path}/src/"},
        "destination": {"directory": "/x", "server": "127.0.0.1", "port": port},
        "credentials": {"known_hosts": str(tmp_path / "kh")},
    }
    out = await run(raw, tmp_path)
    assert out.status is StepStatus.FAILED and out.exit_code == 255
    assert (
        out.error
        == f"exit code 255 (ssh): ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    )


async def test_an_rsync_failure_keeps_rsyncs_own_error(tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    raw = {
        "source": {"directory": str(tmp_path / "nope") + "/"},
        "destination": {"directory": str(tmp_path / "d")},
    }
    out = await run(raw, tmp_path)
    assert out.status is StepStatus.FAILED and out.exit_code == 23
    assert out.error is not None and out.error.startswith("exit code 23: rsync error: some files")


async def test_without_rsync_the_step_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    out = await run({"source": {"directory": "/a/"}, "destination": {"directory": "/b"}}, tmp_path)
    assert out.status is StepStatus.FAILED and out.error == "rsync is not installed on this host"


async def test_a_timeout_stops_rsync(tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    # ssh waits for a server that accepts and never answers: rsync hangs until the timeout
    import socket  # noqa: PLC0415

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        raw = {
            "source": {"directory": f"{tmp_path}/"},
            "destination": {
                "directory": "/x",
                "server": "127.0.0.1",
                "port": silent.getsockname()[1],
            },
        }
        out = await run(raw, tmp_path, timeout=0.5, kill_grace=0.5)
    assert out.status is StepStatus.TIMED_OUT and out.error == "timed out"
