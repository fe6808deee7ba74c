"""A real daemon with its web API on a free loopback port, and an httpx client for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_harness import DaemonProcess, event, short_root

__all__ = ["WebDaemon", "web_daemon"]


class WebDaemon:
    def __init__(self, proc: DaemonProcess) -> None:
        self.proc = proc
        line = proc.wait_log(event("web_listening"), 20)
        self.base = str(line["url"])
        self.port = int(line["port"])
        self.token = (proc.state / "web-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=20
        )

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, f"/api/v1{path}", **kw)

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def web_daemon(tasks: dict[str, str], **web: Any) -> Iterator[WebDaemon]:
    """A daemon with ``tasks`` (file name -> text) and ``web`` settings (listen: port 0)."""
    with short_root() as root:
        proc = DaemonProcess(Path(root), web={"listen": "127.0.0.1:0", **web})
        for name, text in tasks.items():
            proc.put_task(name, text)
        try:
            proc.start()
            wd = WebDaemon(proc)
            try:
                yield wd
            finally:
                wd.close()
                proc.stop()
        finally:
            proc.close()
