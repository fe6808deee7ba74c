"""Operating runs: one function per operation, for every door (CLI, control socket, HTTP).

Each operation is a plain function over the history store (and, where it needs a running
daemon, over the parts it touches): :func:`describe_run` (``show``), :func:`read_logs`
(``logs``), :func:`plan_retry` / :func:`submit_retry` (``retry``), :func:`set_pause`
(``pause`` / ``unpause``), :func:`backfill_times` and :class:`Backfills` (``backfill``),
:func:`next_times` / :func:`task_next` (``next``). The control socket's request handler
(:mod:`flowtaskd.daemon.control.oncall`) and the CLI call them; they raise :class:`OpError`
with a one-line message for anything a user got wrong.
"""

from flowtaskd.daemon.ops.backfill import Backfill, Backfills, backfill_times, parse_moment
from flowtaskd.daemon.ops.common import OpError, find_run
from flowtaskd.daemon.ops.logs import read_logs
from flowtaskd.daemon.ops.pause import pause_target, set_pause
from flowtaskd.daemon.ops.retry import RetryPlan, plan_retry, submit_retry
from flowtaskd.daemon.ops.schedules import next_times, parse_every, task_next
from flowtaskd.daemon.ops.show import describe_run

__all__ = [
    "Backfill",
    "Backfills",
    "OpError",
    "RetryPlan",
    "backfill_times",
    "describe_run",
    "find_run",
    "next_times",
    "parse_every",
    "parse_moment",
    "pause_target",
    "plan_retry",
    "read_logs",
    "set_pause",
    "submit_retry",
    "task_next",
]
