"""The task schema in the tools users run: check-jsonschema and yaml-language-server name the
misspelt key; the schema ships in the package and the SchemaStore entry points at its $id."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.jsonschema import SCHEMA_ID

REPO = Path(__file__).resolve().parents[1]
MISSPELT_COMPONENT = "name: t\nsteps:\n  - Comand:\n      command: [ls]\n"
MISSPELT_OPTION = "name: t\nsteps:\n  - Command:\n      command: [ls]\n      retires: 2\n"


def _schema_path() -> Path:
    run = subprocess.run(
        [sys.executable, "-m", "flowtaskd", "schema", "--path"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(run.stdout.strip())


def test_schema_path_is_the_packaged_copy() -> None:
    path = _schema_path()
    assert path.is_file() and path.name == "task.schema.json"
    doc = json.loads(path.read_text())
    assert doc["$id"] == SCHEMA_ID


def test_the_schemastore_entry_matches_the_schema() -> None:
    entry = json.loads((REPO / "schemastore" / "catalog-entry.json").read_text())
    assert entry["url"] == SCHEMA_ID
    assert any("tasks" in pattern for pattern in entry["fileMatch"])
    assert (REPO / "schemastore" / "PULL_REQUEST.md").read_text().count(SCHEMA_ID) >= 1


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        (MISSPELT_COMPONENT, "$.steps[0]", "'Comand' was unexpected"),
        (MISSPELT_OPTION, "$.steps[0].Command", "'retires' was unexpected"),
    ],
)
def test_check_jsonschema_names_the_misspelt_key(
    tmp_path: Path, text: str, where: str, key: str
) -> None:
    tool = shutil.which("check-jsonschema", path=os.path.dirname(sys.executable))
    if tool is None:
        pytest.skip("check-jsonschema (the test extra) is not installed")
    doc = tmp_path / "task.yaml"
    doc.write_text(text)
    run = subprocess.run(
        [tool, "--schemafile", str(_schema_path()), str(doc)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    lines = [line.strip() for line in run.stdout.splitlines() if "::" in line]
    assert lines[0] == f"{doc}::{where}: Additional properties are not allowed ({key})"


def _yaml_language_server() -> list[str] | None:
    local = REPO / ".tools" / "node_modules" / ".bin" / "yaml-language-server"
    found = str(local) if local.exists() else shutil.which("yaml-language-server")
    return [found, "--stdio"] if found else None


class _Lsp:
    """A minimal LSP client over the server's stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> int:
        self.next_id += 1
        await self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    async def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while (line := await self.proc.stdout.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return dict(json.loads(await self.proc.stdout.readexactly(length)))


@pytest.mark.parametrize(("text", "key"), [(MISSPELT_COMPONENT, "Comand")])
async def test_yaml_language_server_names_the_misspelt_key(
    tmp_path: Path, text: str, key: str
) -> None:
    argv = _yaml_language_server()
    if argv is None:
        pytest.skip("yaml-language-server (npm; .ci/run installs it into .tools/)")
    doc = tmp_path / "task.yaml"
    source = f"# yaml-language-server: $schema={_schema_path().as_uri()}\n{text}"
    doc.write_text(source)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lsp = _Lsp(proc)
    settings = {"yaml": {"validate": True, "schemaStore": {"enable": False}}}
    try:
        async with asyncio.timeout(60):
            init = await lsp.request(
                "initialize",
                {"processId": os.getpid(), "rootUri": tmp_path.as_uri(), "capabilities": {}},
            )
            while (await lsp.receive()).get("id") != init:
                pass
            await lsp.send({"method": "initialized", "params": {}})
            await lsp.send(
                {"method": "workspace/didChangeConfiguration", "params": {"settings": settings}}
            )
            item = {"uri": doc.as_uri(), "languageId": "yaml", "version": 1, "text": source}
            await lsp.send({"method": "textDocument/didOpen", "params": {"textDocument": item}})
            while True:
                msg = await lsp.receive()
                if msg.get("method") == "workspace/configuration":  # the server asks back
                    items = msg["params"]["items"]
                    await lsp.send({"id": msg["id"], "result": [settings["yaml"]] * len(items)})
                elif msg.get("method") == "textDocument/publishDiagnostics" and (
                    msg["params"]["uri"] == doc.as_uri() and msg["params"]["diagnostics"]
                ):
                    diagnostics = msg["params"]["diagnostics"]
                    break
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    messages = [d["message"] for d in diagnostics]
    assert any(key in m for m in messages), messages
    first = next(d for d in diagnostics if key in d["message"])
    assert first["range"]["start"]["line"] == 3  # the modeline, name, steps, then the key
