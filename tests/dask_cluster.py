"""A real Dask cluster for tests: ``local_cluster()`` yields a scheduler address.

The cluster is a ``LocalCluster`` of worker *processes* on 127.0.0.1 (each behind a nanny that
restarts it if it dies), run on its own event loop in a background thread, so any test, sync
or async and in any event loop, can connect its own client to the address. The scheduler is
started with ``allowed-failures: 0`` unless told otherwise, as the Dask executor's own
local cluster is.

Worker processes are spawned with this process's ``sys.path``, so modules of the ``tests``
package (``tests.dask_funcs``) can be imported there.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import dask
from distributed import LocalCluster

__all__ = ["local_cluster"]


@contextlib.contextmanager
def local_cluster(
    n_workers: int = 2, threads_per_worker: int = 2, allowed_failures: int = 0, **kwargs: Any
) -> Iterator[str]:
    """Start a local cluster of ``n_workers`` worker processes; yield its scheduler address.

    ``allowed_failures`` is how often the scheduler re-runs a task whose worker died (Dask's
    default is 3; flowtaskd's own local cluster uses 0).
    """
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # no fixed port: 8787 may be taken
            silence_logs=logging.ERROR,
            **kwargs,
        )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()
