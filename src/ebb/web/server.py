"""The one aiohttp app of `ebb run` / `ebb dashboard`: /metrics, the history JSON API and the dashboard page.

The operator mounts the same routes on its own app (`metrics_routes`, `api_routes`, `dashboard_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from ebb.observe.api import api_routes
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import metrics_routes

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


@dataclass
class Served:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(app: web.Application, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Served:
    """Start serving `app`; port 0 picks a free port (the chosen one is in the result)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    actual = port
    sockets = getattr(server, "sockets", None)
    if sockets:
        actual = sockets[0].getsockname()[1]
    return Served(runner, host, actual)
