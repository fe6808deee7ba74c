"""A throwaway OpenSSH server on 127.0.0.1 for the SSH, SFTP and rsync tests."""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, need_binary

__all__ = ["Sshd", "sshd_server"]


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    key: Path  # the client's private key
    known_hosts: Path  # trusts this server's throwaway host key
    root: Path


@contextlib.contextmanager
def sshd_server(tmp: Path) -> Iterator[Sshd]:
    sshd = need_binary("/usr/sbin/sshd", "apt-get install openssh-server")
    keygen = need_binary("ssh-keygen", "apt-get install openssh-client")
    tmp.mkdir(parents=True, exist_ok=True)
    host_key, client_key = tmp / "host_key", tmp / "id_ed25519"
    for key in (host_key, client_key):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    host_pub = Path(f"{host_key}.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n"
        "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = tmp / "sshd.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=err)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("sshd did not start listening")
            time.sleep(0.02)
        yield Sshd(port, getpass.getuser(), client_key, tmp / "known_hosts", tmp)
    finally:
        proc.terminate()
        proc.wait(10)
