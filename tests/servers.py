"""Real servers on 127.0.0.1 for the component tests, started and stopped by the tests.

Each fixture skips with the reason when its server software is missing, except under CI
(``CI=true``), where a missing server is a failure: ``.ci/run`` installs them all.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

import pytest

__all__ = ["free_port", "need", "need_binary", "need_module"]


def need(reason: str) -> NoReturn:
    """Skip for ``reason``, or fail under CI, where every server must be there."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must provide this: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, install: str) -> None:
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec(name) is None:
        need(f"{name} is not installed ({install})")


def need_binary(path: str, install: str) -> str:
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if not found:
        need(f"{path} is not installed ({install})")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
