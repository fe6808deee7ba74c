"""The JSON Schema (Draft 2020-12) of the task file format, for editors and linters."""

from __future__ import annotations

from typing import Any

from flowtaskd.components.registry import registry
from flowtaskd.tasks.schema import EVENT_ACTION_MODELS, TaskHeader, step_model

__all__ = ["SCHEMA_ID", "task_schema"]

SCHEMA_ID = "https://flowtaskd.invalid/schema/task.schema.json"


def task_schema() -> dict[str, Any]:
    """The schema of a task file; components come from the registry (plugins included)."""
    defs: dict[str, Any] = {}

    def collect(schema: dict[str, Any]) -> dict[str, Any]:
        defs.update(schema.pop("$defs", {}))
        return schema

    root = collect(TaskHeader.model_json_schema(ref_template="#/$defs/{model}"))
    step_refs = []
    for name, comp in sorted(registry().items()):
        model = step_model(comp)
        defs[model.__name__] = collect(model.model_json_schema(ref_template="#/$defs/{model}"))
        step_refs.append(
            {
                "type": "object",
                "title": name,
                "properties": {name: {"$ref": f"#/$defs/{model.__name__}"}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    action_refs = []
    for name, model in sorted(EVENT_ACTION_MODELS.items()):
        defs[f"{name}Action"] = collect(model.model_json_schema(ref_template="#/$defs/{model}"))
        action_refs.append(
            {
                "type": "object",
                "properties": {name: {"$ref": f"#/$defs/{name}Action"}},
                "required": [name],
                "additionalProperties": False,
            }
        )
    props = root["properties"]
    props["steps"] = {
        "type": "array",
        "minItems": 1,
        "description": props["steps"].get("description", ""),
        "items": {"oneOf": step_refs},
    }
    props["events"] = {
        "description": props["events"].get("description", ""),
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"oneOf": action_refs}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "flowtaskd task file",
        **root,
        "$defs": dict(sorted(defs.items())),
    }
