"""The one aiohttp app of `ebb run` / `ebb dashboard`: /metrics, the history JSON API and the dashboard page.

The operator mounts the same routes on its own app (`metrics_routes`, `api_routes`, `dashboard_routes`).
"""

from __future__ import annotations

import logging
import ssl
from typing import Self

from aiohttp import web
from prometheus_client import CollectorRegistry

from ebb.observe.api import api_routes
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import metrics_routes

log = logging.getLogger(__name__)

#: Loopback by default: the dashboard and the API show object names and metric values to whoever connects.
DEFAULT_HOST = "127.0.0.1"
#: One port for metrics, API and dashboard (KEDA's operator uses 8080 for metrics; 9022 is free of common uses).
DEFAULT_PORT = 9022


def build_app(
    registry: CollectorRegistry | None = None,
    history: HistoryStore | None = None,
    dashboard: bool = False,
) -> web.Application:
    """An app with /metrics (if `registry`), /api/* (if `history`) and / (if `dashboard` and `history`)."""
    app = web.Application()
    if registry is not None:
        app.add_routes(metrics_routes(registry))
    if history is not None:
        app.add_routes(api_routes(history))
        if dashboard:
            from ebb.web.dashboard import dashboard_routes

            app.add_routes(dashboard_routes())
    return app


class AppServer:
    """An aiohttp application served on host:port, over TLS with `ssl_context`; port 0 picks a free port, and
    `port` holds the bound one once started. Subclasses build the app (`make_app`) and may hook `started` and
    `stopping`."""

    #: What the log line says is listening.
    label = "HTTP server"

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def started(self) -> None:
        """Called once the socket is bound."""

    async def stopping(self) -> None:
        """Called before the connections close."""

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "::1" if self.host == "::" else self.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve (a second call does nothing)."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.make_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = [a for a in runner.addresses if isinstance(a, tuple) and len(a) >= 2]
        if bound:
            self.port = int(bound[0][1])
        await self.started()
        # What the sockets are bound to (0.0.0.0: every IPv4 address), not `url`, which is where to connect.
        scheme = "https" if self.ssl_context is not None else "http"
        where = ", ".join(f"{scheme}://{_host_port(str(a[0]), int(a[1]))}" for a in bound) or self.url
        log.info("%s listening on %s", self.label, where)

    async def stop(self) -> None:
        """Stop serving and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.stopping()
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Served(AppServer):
    label = "ebb"

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        super().__init__(host, port)
        self._app = app

    def make_app(self) -> web.Application:
        return self._app


async def serve(app: web.Application, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> AppServer:
    """Start serving `app`; port 0 picks a free port (the chosen one is in the result's `port`)."""
    server = _Served(app, host, port)
    await server.start()
    return server
