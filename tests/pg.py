"""A throwaway PostgreSQL (Debian's postgresql package) on 127.0.0.1 for the SQL tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port, need

__all__ = ["postgres_server"]

PASSWORD = "pg-pw-31415"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        need(f"{name} is not installed (apt-get install postgresql)")
    return found[-1]


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """Yields a SQLAlchemy URL without the password (it is PASSWORD, scram-checked)."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    data, sock = tmp / "data", tmp / "sock"
    prefix: list[str] = []
    tmp.mkdir(parents=True, exist_ok=True)
    sock.mkdir()
    (tmp / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:  # postgres refuses to run as root: use its own account
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            need("no `postgres` user to run the server as (apt-get install postgresql)")
        for path in (tmp, sock, tmp / "pw"):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
    port = free_port()
    run = lambda argv: subprocess.run(prefix + argv, check=True, capture_output=True)  # noqa: E731
    run(
        [
            initdb,
            "-D",
            str(data),
            "-U",
            "flow",
            "-A",
            "scram-sha-256",
            f"--pwfile={tmp / 'pw'}",
            "-E",
            "UTF8",
        ]
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    run([pg_ctl, "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"])
    try:
        yield f"postgresql+psycopg://flow@127.0.0.1:{port}/postgres"
    finally:
        run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
