"""The OpenAPI 3.1 description of ``/api/v1``, generated from the request and reply models.

The models here are the bodies the API takes and the shapes it returns; their JSON Schemas
(pydantic's, which are JSON Schema 2020-12, as OpenAPI 3.1 uses) become
``components.schemas``. Built once, on the first request for it.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel, Field

from flowtaskd.daemon.web.routes import PASS_THROUGH, RUN_STATUSES

__all__ = ["spec"]


class Error(BaseModel):
    error: str = Field(description="What went wrong, for a person.")
    detail: Any = Field(default=None, description="The field or object concerned, if any.")


class TriggerBody(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict, description="Run params.")
    wait: bool = Field(default=False, description="Reply when the run has ended.")


class Triggered(BaseModel):
    run_id: str
    task: str | None = None
    status: str | None = Field(default=None, description="With wait: the final status.")
    error: str | None = None
    duration: float | None = None
    stats: dict[str, Any] | None = None


class RunRow(BaseModel):
    run_id: str
    task: str
    trigger: str
    status: str
    source: str | None = None
    params: dict[str, Any] = {}
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    error: str | None = None
    log_dir: str | None = None
    inbox_file: str | None = None
    schedule_id: str | None = None


class RunPage(BaseModel):
    runs: list[RunRow]
    total: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null at the end.")


class RunDetail(BaseModel):
    run: RunRow
    steps: dict[str, dict[str, Any]] = Field(description="Step id -> status, tries, stats.")
    live: bool = Field(description="The run is still going.")


class TaskSummary(BaseModel):
    name: str
    file: str
    steps: int
    schedules: list[str]
    schedule_words: list[str]
    description: str | None = None
    next_fire: str | None = None
    paused: bool = False
    recent: list[dict[str, str]] = Field(description="The newest 20 runs: run_id, status.")


class InvalidFile(BaseModel):
    file: str
    problems: list[dict[str, Any]]
    lines: list[str] = Field(description="Each problem as FILE:LINE: key: message.")


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    invalid: list[InvalidFile]


class TaskDetail(TaskSummary):
    steps: list[dict[str, Any]]  # type: ignore[assignment]
    params: dict[str, Any]
    secrets: list[str]
    next_fires: list[str]
    overlap: str
    max_active_runs: int
    timezone: str
    problems: list[str]
    runs: list[dict[str, Any]] = Field(description="The newest 25 runs, with step states.")


_MODELS: tuple[type[BaseModel], ...] = (
    Error, TriggerBody, Triggered, RunRow, RunPage, RunDetail, TaskSummary, InvalidFile,
    TaskList, TaskDetail,
)  # fmt: skip


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str | None, description: str = "OK") -> dict[str, Any]:
    schema = _ref(name) if name else {"type": "object"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _p(name: str, where: str, kind: str, what: str, **extra: Any) -> dict[str, Any]:
    schema = {"type": kind, **extra}
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": what,
    }


_ERRORS = {
    "400": _json("Error", "Bad request: names the field"),
    "401": _json("Error", "No or bad token"),
    "403": _json("Error", "Missing CSRF token (browser sessions)"),
    "404": _json("Error", "No such task, run or step"),
    "429": _json("Error", "Too many failed logins"),
}


def _op(op_id: str, summary: str, ok: dict[str, Any], *params: dict[str, Any], **more: Any) -> Any:
    return {
        "operationId": op_id,
        "summary": summary,
        "parameters": list(params),
        "responses": {**ok, **_ERRORS},
        **more,
    }


def _version() -> str:
    try:
        return version("flowtaskd")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown"


@functools.cache
def spec() -> dict[str, Any]:
    name = _p("name", "path", "string", "A loaded task's name.")
    run = _p("run_id", "path", "string", "A run id, or a unique prefix of one.")
    body = {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}
    paths: dict[str, Any] = {
        "/status": {"get": _op("status", "What `flowtaskd status` says.", {"200": _json(None)})},
        "/tasks": {
            "get": _op("tasks", "Loaded tasks and invalid files.", {"200": _json("TaskList")})
        },
        "/tasks/{name}": {
            "get": _op(
                "task",
                "A task: definition, schedules, next fires, paused, problems, runs.",
                {"200": _json("TaskDetail")},
                name,
            )
        },
        "/tasks/{name}/runs": {
            "post": _op(
                "trigger",
                "Trigger a run with params; with wait, reply when it has ended.",
                {
                    "202": _json("Triggered", "Queued"),
                    "200": _json("Triggered", "Ended (wait)"),
                    "409": _json("Error", "Not started: a run is already going (overlap)"),
                },
                name,
                _p("wait", "query", "boolean", "Reply when the run has ended."),
                requestBody={"content": {"application/json": {"schema": _ref("TriggerBody")}}},
            )
        },
        "/runs": {
            "get": _op(
                "runs",
                "Runs, newest first, a page at a time.",
                {"200": _json("RunPage")},
                _p("task", "query", "string", "Only this task's runs."),
                _p(
                    "status", "query", "string", "Only runs in this state.", enum=list(RUN_STATUSES)
                ),
                _p("trigger", "query", "string", "schedule, inbox, manual, catchup, ..."),
                _p("since", "query", "string", "Started at or after (epoch seconds or ISO 8601)."),
                _p("limit", "query", "integer", "Page size (1-500, default 50)."),
                _p("offset", "query", "integer", "Skip this many (from next_offset)."),
            )
        },
        "/runs/{run_id}": {
            "get": _op("run", "A run: steps, attempts, stats.", {"200": _json("RunDetail")}, run)
        },
        "/runs/{run_id}/steps/{step}/log": {
            "get": _op(
                "log",
                "A step's output (text/plain); with follow, streamed until the attempt ends.",
                {"200": {"description": "The log", "content": {"text/plain": {}}}},
                run,
                _p("step", "path", "string", "The step id (group items: step[i])."),
                _p("attempt", "query", "integer", "Default: the last attempt."),
                _p(
                    "stream",
                    "query",
                    "string",
                    "stdout (default) or stderr.",
                    enum=["stdout", "stderr"],
                ),
                _p("follow", "query", "boolean", "Keep streaming while the attempt runs."),
            )
        },
        "/runs/{run_id}/cancel": {
            "post": _op(
                "cancel",
                "Cancel a running or queued run.",
                {"200": _json(None), "409": _json("Error", "The run has already ended")},
                run,
            )
        },
        "/reload": {
            "post": _op("reload", "Re-read the config and the task folders.", {"200": _json(None)})
        },
        "/events": {
            "get": _op(
                "events",
                "Server-Sent Events; reconnect with Last-Event-ID to resume within the backlog"
                " (a `reset` event means some were lost).",
                {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}},
                _p("events", "query", "string", "Comma-separated event names (default all)."),
                _p("task", "query", "string", "Only this task's events."),
                _p("Last-Event-ID", "header", "string", "Resume after this event id."),
            )
        },
        "/openapi.json": {"get": _op("openapi", "This document.", {"200": _json(None)})},
    }
    for method, path, cmd, _field in PASS_THROUGH:
        key = path.split("{")[1].split("}")[0]
        param = run if key == "run_id" else name
        paths.setdefault(path, {})[method.lower()] = _op(
            cmd,
            f"The control request `{cmd}`; the body holds its other fields"
            " (501 where this flowtaskd does not have it).",
            {
                "200": _json(None),
                "409": _json("Error", "Refused"),
                "501": _json("Error", "Not available"),
            },
            param,
            requestBody=body,
        )
    schemas = {
        m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}")
        for m in _MODELS
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flowtaskd HTTP API",
            "version": _version(),
            "description": "Every request needs `Authorization: Bearer <token>` (or a browser"
            " session cookie plus an X-CSRF-Token header for POSTs).",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "flowtaskd_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
