"""The HTTP API and the web dashboard (imported only when ``web`` is enabled)."""

from flowtaskd.daemon.web.server import WebServer

__all__ = ["WebServer"]
