"""The Dask executor: step attempts run on the workers of a ``distributed`` cluster.

Behind the same :class:`~flowtaskd.components.context.Executor` seam as the local executor,
:class:`DaskExecutor` sends each attempt of a *remote* component (``Command``, ``RunShell``,
``Python``: they need only their parameters) to a Dask worker, where
:func:`~flowtaskd.execution.dask_worker.run_on_worker` runs it exactly as the local executor
would, and gives back the same :class:`StepOutcome` (plus ``worker``). Every other component
runs here, in this process.

Either it connects to an existing scheduler (``address``) or, with ``local``, starts its own
``LocalCluster`` of worker processes on 127.0.0.1. What the rest of the daemon can rely on:

- One submission is one run: each attempt gets a unique Dask key, ``pure=False`` and no
  retries; a worker dying mid-step fails the attempt ("worker died mid-step"), and the worker
  side refuses a second start of the same key in case the scheduler re-runs it anyway.
- Cancelling the awaiting task stops the step's process group on the worker (through a
  cancel flag the worker watches), cancels the Dask future and re-raises.
- An unreachable scheduler is a failed outcome naming the address (``on_unreachable="fail"``)
  or a wait, with backoff, until it is back (``"wait"``; the executor then also starts
  without it). The client is re-made when it gives up reconnecting by itself.

Timeouts are enforced on the worker (the process runner kills the group; ``Python`` steps
use ``asyncio.timeout``). A step asking for ``resources`` that no worker offers waits for one
for ever, unless ``resource_timeout`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any

import dask
import distributed
from distributed import KilledWorker

from flowtaskd.components.context import StepContext, StepOutcome
from flowtaskd.components.registry import get_component
from flowtaskd.components.runtime import mask_outcome
from flowtaskd.core.rules import StepStatus
from flowtaskd.errors import ExecutionError
from flowtaskd.execution.dask_worker import cancel_flag, run_on_worker, started_flag
from flowtaskd.execution.local import run_component

__all__ = ["LOCAL_CLUSTER_OPTIONS", "DaskExecutor"]

LOCAL_CLUSTER_OPTIONS = frozenset({"n_workers", "threads_per_worker", "memory_limit", "resources"})
_MAX_BACKOFF = 5.0
_CANCEL_FLAG_TTL = 60.0  # a cancelled step cannot start this long after its future was cancelled
# distributed is only partly annotated: its client-side classes are used as Any here
_Client: Any = distributed.Client
_Event: Any = distributed.Event
_LocalCluster: Any = distributed.LocalCluster


class DaskExecutor:
    """Runs remote-capable steps on a Dask cluster; the rest in this process.

    ``address`` is a scheduler (``tcp://host:8786``); ``local`` (e.g. ``{"n_workers": 2}``)
    starts a private ``LocalCluster`` instead. ``connect_timeout`` bounds every connection
    attempt. ``resource_timeout`` (seconds, default: wait forever) fails a step that asks
    for ``resources`` no connected worker offers. ``local_components`` names components that
    always run here even though they could run remotely.
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        local: Mapping[str, Any] | None = None,
        on_unreachable: str = "fail",
        connect_timeout: float = 10.0,
        local_components: frozenset[str] = frozenset(),
        resource_timeout: float | None = None,
    ) -> None:
        if (address is None) == (local is None):
            raise ExecutionError("the dask executor needs either a scheduler address or local")
        if on_unreachable not in ("fail", "wait"):
            raise ExecutionError(f"on_unreachable must be 'fail' or 'wait', not {on_unreachable!r}")
        unknown = set(local or {}) - LOCAL_CLUSTER_OPTIONS
        if unknown:
            raise ExecutionError(
                f"unknown dask local option(s) {', '.join(sorted(unknown))}; "
                f"expected {', '.join(sorted(LOCAL_CLUSTER_OPTIONS))}"
            )
        self.address = address
        self.local = dict(local) if local is not None else None
        self.on_unreachable = on_unreachable
        self.connect_timeout = connect_timeout
        self.local_components = local_components
        self.resource_timeout = resource_timeout
        self._cluster: Any = None
        self._client: Any = None
        self._reconnecting: asyncio.Lock | None = None
        self._attempts = 0  # connection attempts made so far
        self._last_error: str | None = None  # how the last one failed
        self._unclaimed_cancels: dict[str, float] = {}  # cancel flag -> when raised
        self._closed = False

    @property
    def scheduler_address(self) -> str:
        if self._cluster is not None:
            return str(self._cluster.scheduler_address)
        return self.address or "<not started>"

    @property
    def unreachable(self) -> str | None:
        """Why the scheduler cannot be reached now, or None while connected (or not tried)."""
        client = self._client
        if client is not None and client.status == "running":
            return None
        return self._last_error

    async def start(self) -> None:
        """Connect to the scheduler (or start the local cluster), within ``connect_timeout``.

        An unreachable scheduler raises :class:`ExecutionError` with ``on_unreachable="fail"``;
        with ``"wait"`` the executor starts anyway (see :attr:`unreachable`) and steps wait.
        A local cluster that cannot start always raises.
        """
        self._reconnecting = asyncio.Lock()
        if self.local is not None:
            self._cluster = await self._start_local_cluster(self.local)
        self._attempts += 1
        self._last_error = await self._connect()
        if self._last_error is not None and (self.on_unreachable == "fail" or self.local):
            error = self._last_error
            await self.aclose()
            raise ExecutionError(error)

    async def run(self, ctx: StepContext) -> StepOutcome:
        cls = get_component(ctx.component)
        if cls is None or not cls.remote or ctx.component in self.local_components:
            return await run_component(ctx)
        client = await self._ready_client()
        if isinstance(client, str):
            return mask_outcome(StepOutcome(StepStatus.FAILED, error=client), ctx.secrets)
        if ctx.resources and self.resource_timeout is not None:
            missing = await self._wait_for_resources(client, dict(ctx.resources))
            if missing is not None:
                return mask_outcome(StepOutcome(StepStatus.FAILED, error=missing), ctx.secrets)
        outcome = await self._submit_and_wait(client, ctx)
        return mask_outcome(outcome, ctx.secrets)

    async def aclose(self) -> None:
        """Close the client, then the cluster if this executor started it."""
        self._closed = True
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        if client is not None:
            if client.status == "running":
                await self._sweep_cancels(client, older_than=0.0)
            await client.close()
        if cluster is not None:
            await cluster.close()

    # -- one attempt --------------------------------------------------------------------------

    async def _submit_and_wait(self, client: Any, ctx: StepContext) -> StepOutcome:
        key = f"flowtaskd-{ctx.key}-{uuid.uuid4().hex[:12]}"
        try:
            future = client.submit(
                run_on_worker,
                ctx.shippable(),
                key,
                key=key,
                pure=False,
                retries=0,
                resources=dict(ctx.resources) if ctx.resources else None,
            )
        except Exception as exc:  # a parameter that cannot be pickled, a client closing
            return StepOutcome(StepStatus.FAILED, error=f"dask: cannot submit the step: {exc}")
        try:
            outcome = await future
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # we were cancelled: stop it remotely
                await _shielded(self._cancel_remote(client, future, key, ctx.kill_grace + 2.0))
                raise
            return StepOutcome(StepStatus.FAILED, error=self._cancelled_error(exc))
        except KilledWorker as exc:
            lost = getattr(exc.last_worker, "address", exc.last_worker)
            outcome = StepOutcome(StepStatus.FAILED, error=f"worker died mid-step ({lost} lost)")
        except Exception as exc:  # the worker function itself could not run (import, pickling)
            outcome = StepOutcome(StepStatus.FAILED, error=f"dask: {type(exc).__name__}: {exc}")
        await _quietly(_clear(client, started_flag(key)), self.connect_timeout)
        if self._unclaimed_cancels:
            await self._sweep_cancels(client)
        if not isinstance(outcome, StepOutcome):
            return StepOutcome(StepStatus.FAILED, error=f"dask: unexpected result {outcome!r}")
        return outcome

    def _cancelled_error(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", "unknown")
        if reason == "scheduler-connection-lost":
            return (
                f"dask scheduler at {self.scheduler_address} unreachable: connection lost while "
                "the step ran (it may still be running on its worker)"
            )
        return f"worker died mid-step (cancelled: {reason})"

    async def _cancel_remote(self, client: Any, future: Any, key: str, grace: float) -> None:
        """Raise the cancel flag, cancel the future, and wait for the worker to stop the step.

        The worker lowers the flag once the step's process group is gone (or when it refuses
        to start a cancelled attempt); we wait for that up to ``grace``. If the attempt has not
        started, there is nothing to wait for. A flag nobody lowered is lowered by us later
        (:meth:`_sweep_cancels`): not at once, so a worker just starting the attempt sees it.
        """
        name = cancel_flag(key)
        try:
            async with asyncio.timeout(grace):
                await _Event(name, client=client).set()
                await client.cancel([future])
                while await _Event(name, client=client).is_set():
                    if not await _Event(started_flag(key), client=client).is_set():
                        break  # never started: client.cancel keeps it from starting
                    await asyncio.sleep(0.05)
                else:
                    return  # the worker has stopped the step and lowered the flag
        except (OSError, TimeoutError):
            pass  # the scheduler is gone, or the worker did not answer in time
        self._unclaimed_cancels[name] = time.monotonic()

    async def _sweep_cancels(self, client: Any, older_than: float = _CANCEL_FLAG_TTL) -> None:
        """Lower cancel flags no worker lowered, once no worker can still start their step."""
        now = time.monotonic()
        stale = [n for n, t in self._unclaimed_cancels.items() if now - t >= older_than]
        for name in stale:
            del self._unclaimed_cancels[name]
        if stale:
            clears = (_clear(client, name) for name in stale)
            await _quietly(asyncio.gather(*clears), self.connect_timeout)

    async def _wait_for_resources(self, client: Any, wanted: dict[str, float]) -> str | None:
        """None once some worker offers ``wanted``; an error after ``resource_timeout``."""
        assert self.resource_timeout is not None
        deadline = time.monotonic() + self.resource_timeout
        delay = 0.1
        while True:
            with contextlib.suppress(OSError):
                info = await client.scheduler.identity(n_workers=-1)
                for worker in info.get("workers", {}).values():
                    have = worker.get("resources") or {}
                    if all(have.get(k, 0) >= v for k, v in wanted.items()):
                        return None
            if time.monotonic() >= deadline:
                return (
                    f"no dask worker at {self.scheduler_address} offers resources {wanted} "
                    f"(waited {self.resource_timeout:g}s)"
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    # -- connection ---------------------------------------------------------------------------

    async def _start_local_cluster(self, options: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {"n_workers": 2, "threads_per_worker": 1, **options}
        try:
            # a worker dying mid-step must fail the step, not re-run it elsewhere
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                return await _LocalCluster(
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # no fixed port: 8787 may be taken
                    asynchronous=True,
                    silence_logs=False,
                    **kwargs,
                )
        except Exception as exc:
            raise ExecutionError(f"cannot start a local dask cluster: {exc}") from exc

    async def _ready_client(self) -> Any:
        """A connected client, or (``fail``) why there is none; ``wait`` waits with backoff."""
        delay = 0.1
        while True:
            client = self._client
            if client is not None and client.status == "running":
                return client
            if self._closed:
                return "the dask executor is closed"
            error = await self._reconnect()
            if error is None:
                continue
            if self.on_unreachable == "fail":
                return error
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)

    async def _reconnect(self) -> str | None:
        """One connection attempt at a time; steps that queued behind one share its answer."""
        if self._reconnecting is None:
            return "the dask executor is not started"
        seen = self._attempts
        async with self._reconnecting:
            client = self._client
            if client is not None and client.status == "running":
                return None
            if self._attempts != seen and self._last_error is not None:
                return self._last_error  # an outage is not met with a queue of attempts
            self._attempts += 1
            self._last_error = await self._attempt(client)
            return self._last_error

    async def _attempt(self, client: Any) -> str | None:
        if client is not None and client.status in ("connecting", "newly-created"):
            # the client is reconnecting by itself; give it up to connect_timeout (distributed
            # has no event for a status change, so look at it every 50 ms)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.connect_timeout):
                    while client.status not in ("running", "closed"):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            if client.status == "running":
                return None
            if client.status != "closed":
                return self._unreachable("the client is still reconnecting")
        return await self._connect()

    async def _connect(self) -> str | None:
        """Make a fresh client; None on success, else why not."""
        old, self._client = self._client, None
        if old is not None:
            await _quietly(old.close())
        target: Any = self._cluster if self._cluster is not None else self.address
        client = _Client(
            target,
            asynchronous=True,
            timeout=self.connect_timeout,
            set_as_default=False,
            name="flowtaskd",
        )
        try:
            async with asyncio.timeout(self.connect_timeout + 1.0):
                await client
        except (OSError, TimeoutError) as exc:
            await _quietly(client.close())
            return self._unreachable(str(exc) or type(exc).__name__)
        self._client = client
        return None

    def _unreachable(self, why: str) -> str:
        return f"dask scheduler at {self.scheduler_address} unreachable: {why}"


async def _clear(client: Any, name: str) -> None:
    await _Event(name, client=client).clear()


async def _quietly(awaitable: Awaitable[Any], limit: float = 10.0) -> None:
    """Best-effort housekeeping with the scheduler; a lost connection is not an error here."""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(limit):
            await awaitable


async def _shielded(awaitable: Awaitable[None]) -> None:
    """Run ``awaitable`` to the end even if we are cancelled again meanwhile."""
    task = asyncio.ensure_future(awaitable)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    task.result()
