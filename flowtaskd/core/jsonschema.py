"""The JSON Schema (Draft 2020-12) of the task file format, for editors and linters.

Built from the same pydantic models that validate task files: the header, one model per
component (its parameters plus the step options) and the ``events:`` actions, so it can
not drift from the validator. What a schema cannot say (unknown ``depends``, cycles, cron
syntax, YAML 1.1 traps) is left to ``flowtaskd validate``. A copy is committed as
``flowtaskd/task.schema.json``; regenerate it with
``flowtaskd schema > flowtaskd/task.schema.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from flowtaskd.core.catalog import Catalog
from flowtaskd.core.eventblock import EVENT_ACTION_MODELS, EVENT_NAMES
from flowtaskd.core.schema import TaskHeader, step_model

__all__ = ["SCHEMA_ID", "task_schema"]

SCHEMA_ID = "https://flowtaskd.invalid/schema/task.schema.json"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_DESCRIPTION = (
    "A flowtaskd task (the flowtask format, extended): a `name` and a list of `steps`, each "
    "a mapping with one key, the component. `flowtaskd validate` also checks what a schema "
    "cannot: `depends` naming real steps, cycles, groups, cron syntax, time zones."
)


def _one_key(key: str, ref: dict[str, Any], nullable: bool) -> dict[str, Any]:
    value = {"anyOf": [ref, {"type": "null"}]} if nullable else ref
    return {
        "type": "object",
        "title": key,
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


def task_schema(catalog: Catalog) -> dict[str, Any]:
    """The schema of a task file for the components of ``catalog`` (plugins included)."""
    components = sorted(catalog.items())
    actions = sorted(EVENT_ACTION_MODELS.items())
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(TaskHeader, "validation")]
    models += [(step_model(comp), "validation") for _, comp in components]
    models += [(model, "validation") for model in dict.fromkeys(m for _, m in actions)]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top["$defs"]
    root = defs.pop(refs[(TaskHeader, "validation")]["$ref"].rsplit("/", 1)[1])
    props = root["properties"]
    props["steps"] = {
        "type": "array",
        "minItems": 1,
        "description": props["steps"].get("description", ""),
        "items": {
            "oneOf": [
                _one_key(name, refs[(step_model(comp), "validation")], nullable=True)
                for name, comp in components
            ]
        },
    }
    props["events"] = {
        "description": props["events"].get("description", ""),
        "type": ["object", "null"],
        "propertyNames": {"enum": [*EVENT_NAMES, "publish"]},
        "additionalProperties": {
            "type": ["array", "boolean"],
            "items": {
                "oneOf": [
                    _one_key(name, refs[(model, "validation")], nullable=True)
                    for name, model in actions
                ]
            },
        },
    }
    return {
        "$schema": _DRAFT,
        "$id": SCHEMA_ID,
        **root,
        "title": "flowtaskd task file",
        "description": _DESCRIPTION,
        "$defs": dict(sorted(defs.items())),
    }
