"""What the API's routes and its OpenAPI description share (no imports of either)."""

from __future__ import annotations

__all__ = ["PASS_THROUGH", "RUN_STATUSES"]

RUN_STATUSES = ("pending", "running", "done", "failed", "cancelled", "interrupted")

PASS_THROUGH: tuple[tuple[str, str, str, str], ...] = (
    # (method, path under /api/v1, control request, the path parameter's request field)
    ("POST", "/runs/{run_id}/retry", "retry", "run_id"),
    ("POST", "/tasks/{name}/pause", "pause", "task"),
    ("POST", "/tasks/{name}/unpause", "unpause", "task"),
    ("POST", "/tasks/{name}/backfill", "backfill", "task"),
)
"""Routes whose JSON body goes to the control request as its fields, unchanged: adding an
operation of the control socket to the API is one row here."""
