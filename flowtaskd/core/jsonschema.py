"""The JSON Schema (Draft 2020-12) of the task file format, for editors and linters.

Built from the same pydantic models that validate task files: the header, one model per
component (its parameters plus the step options) and the ``events:`` actions, so it can
not drift from the validator. What a schema cannot say (unknown ``depends``, cycles, cron
syntax, YAML 1.1 traps) is left to ``flowtaskd validate``. A copy is committed as
``flowtaskd/task.schema.json`` and shipped in the package (``flowtaskd schema --path``);
regenerate it with ``flowtaskd schema > flowtaskd/task.schema.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from flowtaskd.core.catalog import Catalog
from flowtaskd.core.eventblock import EVENT_ACTION_MODELS, EVENT_NAMES
from flowtaskd.core.schema import TaskHeader, step_model

__all__ = ["SCHEMA_ID", "task_schema"]

SCHEMA_ID = "https://json.schemastore.org/flowtaskd-task.json"
"""Where the schema is published (SchemaStore; see ``schemastore/``). Editors that know
the catalog pick it up by file name; ``flowtaskd schema --path`` gives the local copy."""
_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_DESCRIPTION = (
    "A flowtaskd task (the flowtask format, extended): a `name` and a list of `steps`, each "
    "a mapping with one key, the component. `flowtaskd validate` also checks what a schema "
    "cannot: `depends` naming real steps, cycles, groups, cron syntax, time zones."
)


def _one_of_keys(what: str, choices: list[tuple[str, dict[str, Any], bool]]) -> dict[str, Any]:
    """A mapping with exactly one key, one of ``choices`` (name, ``$ref``, nullable).

    Written as ``properties`` + ``additionalProperties: false`` + ``min/maxProperties: 1``
    rather than a ``oneOf`` of single-key objects, so a validator's best error names the
    key: a misspelt ``Comand`` is "Additional properties are not allowed ('Comand' was
    unexpected)" in check-jsonschema, ajv and taplo alike, and an error inside a
    component points into that component. ``null`` is allowed only for components whose
    parameters are all optional (``Dummy:`` runs; ``Command:`` with no value does not).
    """
    return {
        "type": "object",
        "description": f"One key, the {what}: " + ", ".join(name for name, _, _ in choices),
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {name: _or_null(ref) if nullable else ref for name, ref, nullable in choices},
        "additionalProperties": False,
    }


def _or_null(ref: dict[str, Any]) -> dict[str, Any]:
    # if/then/else, not anyOf [ref, null]: validators report the errors of `then` as they
    # are (the misspelt option's name) instead of "not valid under any of the given schemas"
    return {"if": {"type": "object"}, "then": ref, "else": {"type": "null"}}


def _nullable(defs: dict[str, Any], ref: dict[str, Any]) -> bool:
    """True when the model ``ref`` points to has no required key (so ``Name:`` is enough)."""
    return not defs[ref["$ref"].rsplit("/", 1)[1]].get("required")


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
        "items": _one_of_keys(
            "component",
            [
                (name, ref, _nullable(defs, ref))
                for name, comp in components
                for ref in [refs[(step_model(comp), "validation")]]
            ],
        ),
    }
    props["events"] = {
        "description": props["events"].get("description", ""),
        "type": ["object", "null"],
        "propertyNames": {"enum": [*EVENT_NAMES, "publish"]},
        "additionalProperties": {
            "type": ["array", "boolean"],
            "items": _one_of_keys(
                "action",
                [
                    (name, ref, _nullable(defs, ref))
                    for name, model in actions
                    for ref in [refs[(model, "validation")]]
                ],
            ),
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
