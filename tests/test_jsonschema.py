"""The JSON Schema of task files: Draft 2020-12, self-contained, accepting every example
and rejecting what validation rejects; the committed copy is current.

The ``jsonschema`` package is not a dependency, so documents are checked with a small
validator for exactly the keywords the schema uses (a test fails if it starts using
another one).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowtaskd.components.registry import registry
from flowtaskd.core.jsonschema import task_schema
from flowtaskd.core.loader import load_document
from tests.test_schema import FULL, task

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "flowtaskd" / "task.schema.json"
EXAMPLES = sorted(p for p in (REPO / "config" / "tasks").iterdir() if p.is_file())
SCHEMA = task_schema(registry())

_ANNOTATIONS = {"$schema", "$id", "title", "description", "default"}
_CHECKED = {
    "$ref",
    "$defs",
    "type",
    "enum",
    "properties",
    "additionalProperties",
    "required",
    "propertyNames",
    "items",
    "minItems",
    "minProperties",
    "maxProperties",
    "anyOf",
    "oneOf",
    "if",
    "then",
    "else",
    "pattern",
    "minLength",
    "minimum",
    "maximum",
}
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def errors(value: Any, schema: dict[str, Any], at: str = "") -> Iterator[str]:
    """Why ``value`` does not match ``schema`` (nothing if it does)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        yield from errors(value, SCHEMA["$defs"][name], at)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            yield f"{at}: not {schema['type']}"
            return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{at}: {value!r} not in {schema['enum']}"
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{at}: {value!r} does not match {schema['pattern']}"
        if len(value) < schema.get("minLength", 0):
            yield f"{at}: too short"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        yield f"{at}: {value} out of range"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield f"{at}: too few items"
        for i, item in enumerate(value):
            if "items" in schema:
                yield from errors(item, schema["items"], f"{at}[{i}]")
    if isinstance(value, dict):
        if not schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", 1e9):
            yield f"{at}: {len(value)} keys"
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                yield f"{at}: {key} required"
        for key, item in value.items():
            if "propertyNames" in schema:
                yield from errors(key, schema["propertyNames"], f"{at}.{key} (name)")
            if key in props:
                yield from errors(item, props[key], f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                yield f"{at}.{key}: not allowed"
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from errors(item, schema["additionalProperties"], f"{at}.{key}")
    if "if" in schema:
        branch = "else" if list(errors(value, schema["if"], at)) else "then"
        yield from errors(value, schema.get(branch, {}), at)
    if "anyOf" in schema and not any(not list(errors(value, s, at)) for s in schema["anyOf"]):
        yield f"{at}: matches none of anyOf"
    if "oneOf" in schema:
        matches = sum(not list(errors(value, s, at)) for s in schema["oneOf"])
        if matches != 1:
            yield f"{at}: matches {matches} of oneOf"


def keywords(node: Any, names_below: bool = False) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if not names_below:
                yield key
            yield from keywords(value, key in ("properties", "$defs") and not names_below)
    elif isinstance(node, list):
        for item in node:
            yield from keywords(item)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_it_is_draft_2020_12_and_self_contained() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["type"] == "object" and SCHEMA["required"] == ["name", "steps"]
    assert set(keywords(SCHEMA)) <= _ANNOTATIONS | _CHECKED
    targets = set(refs(SCHEMA))
    assert targets and all(r.startswith("#/$defs/") for r in targets)
    assert {r.removeprefix("#/$defs/") for r in targets} <= set(SCHEMA["$defs"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_matches(path: Path) -> None:
    assert list(errors(load_document(path).data, SCHEMA)) == []


def test_every_extension_key_matches() -> None:
    assert list(errors(FULL, SCHEMA)) == []
    assert list(errors(task({"Dummy": None}, schedule="@daily", events=None), SCHEMA)) == []


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"steps": [{"Dummy": {}}]}, ": name required"),
        (task(), ": too few items"),
        (task({"Command": {"comand": ["ls"]}}), ".steps[0].Command.comand: not allowed"),
        (task({"Comand": {"command": ["ls"]}}), ".steps[0].Comand: not allowed"),
        (task({"Command": None}), ".steps[0].Command: not object"),
        (task({"Dummy": {}, "Command": {}}), ".steps[0]: 2 keys"),
        (task({}), ".steps[0]: 0 keys"),
        (task({"Dummy": {"trigger_rule": "sometimes"}}), ".trigger_rule: 'sometimes' not in"),
        (task({"Dummy": {"name": "a b"}}), ".steps[0].Dummy.name: matches none of anyOf"),
        (task({"Dummy": {}}, overlap="never"), ".overlap: 'never' not in"),
        (task({"Dummy": {}}, max_active_runs=0), ".max_active_runs: 0 out of range"),
        (task({"Dummy": {}}, extra=1), ".extra: not allowed"),
        (task({"Dummy": {}}, events={"dne": []}), ".events.dne (name): 'dne' not in"),
    ],
)
def test_what_validation_rejects_the_schema_rejects(doc: dict[str, Any], why: str) -> None:
    found = list(errors(doc, SCHEMA))
    assert any(why in e for e in found), found


def test_the_committed_copy_is_current() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "flowtaskd", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == SCHEMA
    assert COMMITTED.read_text() == run.stdout, (
        "flowtaskd/task.schema.json is stale: regenerate it with "
        "`flowtaskd schema > flowtaskd/task.schema.json` and commit it"
    )
