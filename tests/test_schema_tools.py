"""The task schema in the tools users run: check-jsonschema, ajv-cli, taplo (TOML) and
yaml-language-server name the misspelt key; the schema ships in the package and the
SchemaStore entry points at its $id. The npm tools live in .tools/ (tests/npm_tools.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.core.jsonschema import SCHEMA_ID
from tests.npm_tools import npm_tool

REPO = Path(__file__).resolve().parents[1]
MISSPELT_COMPONENT = "name: t\nsteps:\n  - Comand:\n      command: [ls]\n"
MISSPELT_OPTION = "name: t\nsteps:\n  - Command:\n      command: [ls]\n      retires: 2\n"
TOML_MISSPELT_COMPONENT = 'name = "t"\n[[steps]]\n[steps.Comand]\ncommand = "ls"\n'
TOML_MISSPELT_OPTION = 'name = "t"\n[[steps]]\n[steps.Command]\ncommand = "ls"\nretires = 2\n'


@functools.cache
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


def _tool(name: str) -> str:
    found = npm_tool(name)
    if isinstance(found, str):
        pytest.skip(found)
    return str(found)


@pytest.mark.parametrize(
    ("name", "text", "where", "key"),
    [
        ("task.yaml", MISSPELT_COMPONENT, "/steps/0", "Comand"),
        ("task.yaml", MISSPELT_OPTION, "/steps/0/Command", "retires"),
        (
            "task.json",
            '{"name": "t", "steps": [{"Comand": {"command": "ls"}}]}',
            "/steps/0",
            "Comand",
        ),
    ],
)
def test_ajv_names_the_misspelt_key(
    tmp_path: Path, name: str, text: str, where: str, key: str
) -> None:
    """ajv (its default: the first error only) compiles the schema in strict mode (an
    ECMA-262 regex in every ``pattern``) and names the key, for YAML and JSON files."""
    ajv = _tool("ajv")
    doc = tmp_path / name
    doc.write_text(text)
    argv = [ajv, "validate", "--spec=draft2020", "--errors=json", "-s", str(_schema_path())]
    run = subprocess.run(
        [*argv, "-d", str(doc)], check=False, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{doc} invalid" in run.stderr
    errors = json.loads(run.stderr[run.stderr.index("[") :])
    assert [(e["instancePath"], e["params"]) for e in errors] == [
        (where, {"additionalProperty": key})
    ]


def test_ajv_accepts_a_valid_task_with_its_schema_key(tmp_path: Path) -> None:
    """JSON's ``$schema`` key (how a JSON file names its schema) is valid for the schema
    and for the daemon alike."""
    ajv = _tool("ajv")
    doc = tmp_path / "task.json"
    body = {"$schema": SCHEMA_ID, "name": "t", "steps": [{"Dummy": {}}]}
    doc.write_text(json.dumps(body))
    argv = [ajv, "validate", "--spec=draft2020", "-s", str(_schema_path()), "-d", str(doc)]
    run = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    check = [sys.executable, "-m", "flowtaskd", "validate", str(doc)]
    ours = subprocess.run(check, check=False, capture_output=True, text=True, timeout=60)
    assert ours.returncode == 0, ours.stdout + ours.stderr


@pytest.mark.parametrize("how", ["option", "directive"])
def test_taplo_names_the_misspelt_key(tmp_path: Path, how: str) -> None:
    """taplo checks TOML task files with the schema given by ``--schema`` or by each file's
    ``#:schema`` directive (what the README documents), and points at the key's line; a
    valid file checked in the same run has no error."""
    taplo = _tool("taplo")
    schema = _schema_path()
    cases = {
        "component.toml": (TOML_MISSPELT_COMPONENT, "Comand", 3),
        "option.toml": (TOML_MISSPELT_OPTION, "retires", 5),
        "valid.toml": ('name = "t"\n[[steps]]\n[steps.Dummy]\n', None, 0),
    }
    for name, (text, _, _) in cases.items():
        (tmp_path / name).write_text(f"#:schema {schema}\n{text}" if how == "directive" else text)
    files = [str(tmp_path / name) for name in cases]
    argv = [taplo, "check", *files]
    if how == "option":
        argv[2:2] = ["--schema", schema.as_uri()]
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "error"}
    run = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    offset = 1 if how == "directive" else 0
    for name, (_, key, line) in cases.items():
        path = tmp_path / name
        if key is None:
            assert str(path) not in run.stderr, run.stderr
            continue
        message = f"error: Additional properties are not allowed ('{key}' was unexpected)"
        assert message in run.stderr, run.stderr
        assert f"{path}:{line + offset}:" in run.stderr, run.stderr


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
    argv = [_tool("yaml-language-server"), "--stdio"]
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
