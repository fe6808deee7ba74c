"""RunSSH, DownloadFromSFTP, UploadToSFTP against a real OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.rules import StepStatus, TaskStatus
from flowtaskd.tasks import Task
from tests.conftest import pid_alive, wait_for
from tests.servers import need_binary, need_module
from tests.sshd import Sshd, sshd_server

need_module("asyncssh", "pip install -e '.[net]'")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with sshd_server(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def conn(s: Sshd, **extra: Any) -> dict[str, Any]:
    creds = {"username": s.user, "client_keys": [str(s.key)], "known_hosts": str(s.known_hosts)}
    return {"host": "127.0.0.1", "port": s.port, "credentials": creds, **extra}


async def run(steps: list[dict[str, Any]], tmp_path: Path) -> Any:
    async with Task(task={"name": "ssh", "steps": steps}, log_dir=tmp_path / "logs") as t:
        return await t.run()


async def test_run_ssh_commands_in_order(sshd: Sshd, tmp_path: Path) -> None:
    stats = await run(
        [{"RunSSH": {**conn(sshd), "commands": ["echo one", "echo two; echo err >&2"]}}], tmp_path
    )
    s = stats.steps["RunSSH_1"]
    assert s.status is StepStatus.DONE, s.error
    assert s.output == "one\ntwo\n" and s.exit_code == 0


async def test_run_ssh_stops_at_the_first_failure(sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    stats = await run(
        [
            {
                "RunSSH": {
                    **conn(sshd),
                    "commands": ["echo a", "echo broken >&2; exit 3", f"touch {marker}"],
                }
            }
        ],
        tmp_path,
    )
    s = stats.steps["RunSSH_1"]
    assert s.status is StepStatus.FAILED and s.exit_code == 3
    assert s.error == "commands[1] exited 3: broken"
    assert not marker.exists()


async def test_run_ssh_timeout_kills_the_remote_command(sshd: Sshd, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    task = {
        "name": "t",
        "steps": [
            {
                "RunSSH": {
                    **conn(sshd),
                    "command": f"echo $$ > {pidfile}; exec sleep 60",
                    "pty": True,
                    "timeout": 3,
                }
            }
        ],
    }
    async with Task(task=task, log_dir=tmp_path / "logs") as t:
        stats = await t.run()
    assert stats.steps["RunSSH_1"].status is StepStatus.TIMED_OUT
    pid = int(pidfile.read_text())
    await wait_for(lambda: not pid_alive(pid), timeout=10)


async def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    (tmp_path / "empty_known_hosts").write_text("")
    c = conn(sshd)
    c["credentials"]["known_hosts"] = str(tmp_path / "empty_known_hosts")
    stats = await run([{"RunSSH": {**c, "command": "true"}}], tmp_path)
    s = stats.steps["RunSSH_1"]
    assert s.status is StepStatus.FAILED and "HostKeyNotVerifiable" in s.error


async def test_literal_password_is_refused_before_connecting(tmp_path: Path) -> None:
    params = {
        "host": "127.0.0.1",
        "port": 1,
        "credentials": {"username": "u", "password": "pw-in-clear"},
        "command": "true",
    }
    stats = await run([{"RunSSH": params}], tmp_path)
    s = stats.steps["RunSSH_1"]
    assert "allow_plaintext_credentials" in s.error and "pw-in-clear" not in s.error


async def test_download_pattern_remove_and_no_overwrite(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in ("a.csv", "b.csv", "c.txt"):
        (remote / name).write_text(name * 1000)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "b.csv").write_text("mine")
    step = {
        **conn(sshd),
        "source": {"directory": str(remote), "filename": "*.csv"},
        "directory": str(tmp_path / "local"),
        "overwrite": False,
        "remove": True,
    }
    stats = await run([{"DownloadFromSFTP": step}], tmp_path)
    s = stats.steps["DownloadFromSFTP_1"]
    assert s.status is StepStatus.DONE, s.error
    assert json.loads(s.output) == [str(tmp_path / "local" / "a.csv")]
    assert (tmp_path / "local" / "a.csv").read_text() == "a.csv" * 1000
    assert (tmp_path / "local" / "b.csv").read_text() == "mine"
    assert sorted(os.listdir(remote)) == ["b.csv", "c.txt"]  # a.csv removed once saved
    assert not list((tmp_path / "local").glob("*.part"))


async def test_download_resumes_a_part_file(sshd: Sshd, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    local = tmp_path / "local"
    local.mkdir()
    (local / "big.bin.part").write_bytes(data[: 1 << 20])
    step = {
        **conn(sshd),
        "filename": str(tmp_path / "big.bin"),
        "directory": str(local),
        "resume": True,
    }
    stats = await run([{"DownloadFromSFTP": step}], tmp_path)
    assert stats.status is TaskStatus.DONE, stats.steps["DownloadFromSFTP_1"].error
    assert (local / "big.bin").read_bytes() == data
    assert not (local / "big.bin.part").exists()


async def test_download_nothing_matches(sshd: Sshd, tmp_path: Path) -> None:
    step = {
        **conn(sshd),
        "file": {"pattern": f"{tmp_path}/*.nope"},
        "directory": str(tmp_path / "l"),
    }
    stats = await run([{"DownloadFromSFTP": step}], tmp_path)
    assert "no remote file matches" in stats.steps["DownloadFromSFTP_1"].error


async def test_cancel_removes_the_part(sshd: Sshd, tmp_path: Path) -> None:
    big = tmp_path / "huge.bin"
    with open(big, "wb") as fh:
        fh.truncate(2 << 30)  # sparse: 2 GiB to read, nothing on disk
    local = tmp_path / "local"
    step = {**conn(sshd), "filename": str(big), "directory": str(local)}
    async with Task(
        task={"name": "c", "steps": [{"DownloadFromSFTP": step}]}, log_dir=tmp_path / "logs"
    ) as t:
        running = asyncio.ensure_future(t.run())
        await wait_for((local / "huge.bin.part").exists, timeout=20)
        t.cancel()
        stats = await running
    assert stats.status is TaskStatus.CANCELLED
    assert list(local.iterdir()) == []


async def test_upload_then_overwrite(sshd: Sshd, tmp_path: Path) -> None:
    src = tmp_path / "out"
    src.mkdir()
    (src / "r1.csv").write_text("1")
    (src / "r2.csv").write_text("2")
    (src / "skip.txt").write_text("x")
    dest = tmp_path / "remote_in"
    dest.mkdir()
    (dest / "r2.csv").write_text("old")
    step = {
        **conn(sshd),
        "source": {"directory": str(src), "filename": "*.csv"},
        "destination": {"directory": str(dest)},
    }
    stats = await run([{"UploadToSFTP": step}], tmp_path)
    s = stats.steps["UploadToSFTP_1"]
    assert s.status is StepStatus.DONE, s.error
    assert json.loads(s.output) == [str(dest / "r1.csv"), str(dest / "r2.csv")]
    assert sorted(os.listdir(dest)) == ["r1.csv", "r2.csv"]
    assert (dest / "r2.csv").read_text() == "2"
    stats = await run(
        [
            {
                "UploadToSFTP": {
                    **step,
                    "overwrite": False,
                    "source": None,
                    "file": {"pattern": str(src / "r*.csv")},
                }
            }
        ],
        tmp_path,
    )
    assert json.loads(stats.steps["UploadToSFTP_1"].output) == []


# -- Rsync (the system rsync over the same sshd) -----------------------------------------


def rsync_creds(s: Sshd) -> dict[str, Any]:
    return {"username": s.user, "client_keys": [str(s.key)], "known_hosts": str(s.known_hosts)}


async def test_rsync_push_and_pull(sshd: Sshd, tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.log").write_text("b")
    (src / "skip.tmp").write_text("x")
    pushed, pulled = tmp_path / "pushed", tmp_path / "pulled"
    remote = {"server": "127.0.0.1", "port": sshd.port}
    stats = await run(
        [
            {
                "Rsync": {
                    "source": {"directory": f"{src}/"},
                    "destination": {"directory": str(pushed), **remote},
                    "exclude": ["*.tmp"],
                    "credentials": rsync_creds(sshd),
                }
            },
            {
                "Rsync": {
                    "source": {"directory": f"{pushed}/", **remote},
                    "destination": {"directory": str(pulled)},
                    "credentials": rsync_creds(sshd),
                }
            },
        ],
        tmp_path,
    )
    assert stats.status is TaskStatus.DONE, {k: v.error for k, v in stats.steps.items()}
    assert sorted(str(p.relative_to(pulled)) for p in pulled.rglob("*") if p.is_file()) == [
        "a.txt",
        "sub/b.log",
    ]


async def test_rsync_refuses_an_unknown_host_key(sshd: Sshd, tmp_path: Path) -> None:
    need_binary("rsync", "apt-get install rsync")
    (tmp_path / "kh").write_text("")
    (tmp_path / "src").mkdir()
    creds = {**rsync_creds(sshd), "known_hosts": str(tmp_path / "kh")}
    step = {
        "source": {"directory": f"{tmp_path}/src/"},
        "destination": {"directory": str(tmp_path / "d"), "server": "127.0.0.1", "port": sshd.port},
        "credentials": creds,
    }
    stats = await run([{"Rsync": step}], tmp_path)
    s = stats.steps["Rsync_1"]
    assert s.status is StepStatus.FAILED and "No ED25519 host key is known" in s.error
    assert not (tmp_path / "d").exists()


def test_rsync_argv_never_needs_a_shell() -> None:
    from flowtaskd.components.rsync import RsyncParams, rsync_argv  # noqa: PLC0415

    p = RsyncParams.model_validate(
        {
            "source": {"directory": "/a b/; rm -rf ~"},
            "destination": {"directory": "/x", "server": "h", "user": "u", "port": 2222},
            "credentials": {"client_keys": ["/k ey"]},
        }
    )
    argv = rsync_argv(p)
    assert argv[-3:] == ["--", "/a b/; rm -rf ~", "u@h:/x"]
    assert argv[argv.index("-e") + 1].endswith("-i '/k ey' -o IdentitiesOnly=yes")


def sftp_config(s: Sshd, directory: Path, **extra: Any) -> dict[str, Any]:
    """upstream's ``sftp_config``: the credentials flat beside host and folder."""
    return {
        "host": "127.0.0.1",
        "port": s.port,
        "directory": str(directory),
        "username": s.user,
        "client_keys": [str(s.key)],
        "known_hosts": str(s.known_hosts),
        **extra,
    }


async def test_file_list_over_sftp_feeds_a_download_per_file(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    (remote / "sub").mkdir(parents=True)
    for name, size in (("b.csv", 30), ("a.csv", 20), ("c.txt", 10), (".hidden.csv", 5)):
        (remote / name).write_text("x" * size)
    (remote / "sub" / "d.csv").write_text("d")
    local = tmp_path / "local"
    steps = [
        {
            "FileList": {
                "sftp_config": sftp_config(sshd, remote),
                "pattern": "*.csv",
                "sort": "size",
                "reverse": True,
                "to_group": "files",
            }
        },
        {"DownloadFromSFTP": {**conn(sshd), "filename": "{file}", "directory": str(local)}},
    ]
    steps[1]["DownloadFromSFTP"]["Group"] = "files"
    stats = await run(steps, tmp_path)
    s = stats.steps["FileList_1"]
    assert stats.status is TaskStatus.DONE, [x.error for x in stats.steps.values()]
    assert s.output == f"{remote}/b.csv\n{remote}/a.csv"  # by size, largest first
    assert sorted(os.listdir(local)) == ["a.csv", "b.csv"]
    assert (local / "b.csv").read_text() == "x" * 30


async def test_file_list_over_sftp_items(sshd: Sshd, tmp_path: Path) -> None:
    from flowtaskd.components.context import StepContext  # noqa: PLC0415
    from flowtaskd.components.files import FileListComponent  # noqa: PLC0415

    remote = tmp_path / "remote"
    (remote / "in").mkdir(parents=True)
    (remote / "in" / "x.csv").write_text("12345")
    (remote / "y.csv").write_text("1")
    params = {"sftp_config": sftp_config(sshd, remote), "pattern": "*", "files_only": False}
    ctx = StepContext(task="t", run_id="r", step_id="s", component="FileList", params=params)
    out = await FileListComponent().run(ctx)
    assert out.status is StepStatus.DONE, out.error
    assert [(i["name"], i["index"]) for i in out.items or []] == [("in", 0), ("y.csv", 1)]
    params["files_only"] = True
    params["pattern"] = "*/*.csv"
    out = await FileListComponent().run(ctx)
    (item,) = out.items or []
    assert {k: item[k] for k in ("file", "name", "stem", "suffix", "folder", "size", "host")} == {
        "file": f"{remote}/in/x.csv",
        "name": "x.csv",
        "stem": "x",
        "suffix": ".csv",
        "folder": f"{remote}/in",
        "size": 5,
        "host": "127.0.0.1",
    }
    assert isinstance(item["mtime"], int)
    assert (item["filename"], item["directory"]) == (f"{remote}/in/x.csv", str(remote))


async def test_file_list_over_sftp_upstream_order_and_nothing_found(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    for n, name in enumerate(["c.csv", "a.csv", "b.csv"]):  # c oldest, b newest
        (remote / name).write_text(name)
        os.utime(remote / name, (1_700_000_000 + n * 60, 1_700_000_000 + n * 60))
    config = sftp_config(sshd, remote)
    stats = await run(
        [{"FileList": {"sftp_config": config, "file": {"pattern": "*.csv"}}}], tmp_path
    )
    s = stats.steps["FileList_1"]
    assert s.status is StepStatus.DONE, s.error
    assert s.output == "\n".join(f"{remote}/{n}" for n in ["c.csv", "a.csv", "b.csv"])
    stats = await run([{"FileList": {"sftp_config": config, "pattern": "*.txt"}}], tmp_path)
    s = stats.steps["FileList_1"]
    assert s.status is StepStatus.FAILED, s.output
    assert s.error == f"FileList: no files found in {remote} on 127.0.0.1"


async def test_file_list_over_sftp_failures(sshd: Sshd, tmp_path: Path) -> None:
    wrong_hosts = tmp_path / "known_hosts"
    wrong_hosts.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {'A' * 68}\n")
    cases = [
        (sftp_config(sshd, tmp_path / "nope"), "no remote folder"),
        (sftp_config(sshd, tmp_path, known_hosts=str(wrong_hosts)), "listing"),
        (
            {**sftp_config(sshd, tmp_path), "client_keys": None, "password": "pw-in-clear"},
            "allow_plaintext_credentials",
        ),
    ]
    for config, error in cases:
        stats = await run([{"FileList": {"sftp_config": config}}], tmp_path)
        s = stats.steps["FileList_1"]
        assert s.status is StepStatus.FAILED and error in (s.error or ""), s.error
        assert "pw-in-clear" not in (s.error or "")


def test_file_list_wants_a_local_or_a_remote_folder() -> None:
    from flowtaskd.components.registry import registry  # noqa: PLC0415
    from flowtaskd.core.schema import validate_definition  # noqa: PLC0415
    from flowtaskd.errors import TaskParseError  # noqa: PLC0415

    remote = {"host": "h", "directory": "/d", "username": "u", "hostt": 1}
    for params, message in [
        ({}, "give the folder as `directory` (upstream) or `path`, once, or a remote one as"),
        ({"path": "/x", "sftp_config": {"host": "h", "directory": "/d"}}, "not both"),
        ({"sftp_config": remote}, "steps[0].FileList.sftp_config.hostt: unknown key"),
    ]:
        with pytest.raises(TaskParseError) as err:
            validate_definition({"name": "x", "steps": [{"FileList": params}]}, catalog=registry())
        assert message in str(err.value)
