"""The one aiohttp app of `ebb run` / `ebb dashboard`: /metrics, the history JSON API and the dashboard page.

The operator mounts the same routes on its own app (`metrics_routes`, `api_routes`, `dashboard_routes`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Self

from aiohttp import web
from prometheus_client import CollectorRegistry

from ebb.observe.api import api_routes
from ebb.observe.cost import Pricing
from ebb.observe.forecasts import ForecastLog
from ebb.observe.history import HistoryStore
from ebb.observe.http_routes import RouteInfo, routes_api
from ebb.observe.metrics import metrics_routes

log = logging.getLogger(__name__)

#: Loopback by default: the dashboard and the API show object names and metric values to whoever connects.
DEFAULT_HOST = "127.0.0.1"
#: One port for metrics, API and dashboard (KEDA's operator uses 8080 for metrics; 9022 is free of common uses).
DEFAULT_PORT = 9022


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a Host header, without port and IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header[1:]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a local server answers to: what it binds, the loopback names, and `extra`.

    A wildcard bind (0.0.0.0, ::) also answers to this machine's host names.
    """
    names = {"localhost", "127.0.0.1", "::1", bound.strip("[]").lower()}
    if bound in ("", "0.0.0.0", "::"):
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
    names.update(_host_name(name) for name in extra)
    names.discard("")
    return frozenset(names)


def host_check(allowed: frozenset[str], wildcard: bool) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware refusing requests whose Host is not one of `allowed`: the defence against DNS rebinding.

    A rebinding page reaches the server under the attacker's domain name, which the Host header carries. An IP
    address in Host can't be rebound, so a wildcard bind (reached through any of the machine's addresses)
    accepts any IP literal.
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        name = _host_name(request.headers.get("Host", ""))
        if name not in allowed and not (wildcard and _is_ip(name)):
            return web.Response(status=421, text=f"unknown Host {name!r}: this server answers to {sorted(allowed)}\n")
        return await handler(request)

    return middleware


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def build_app(
    registry: CollectorRegistry | None = None,
    history: HistoryStore | None = None,
    dashboard: bool = False,
    pricing: Pricing | None = None,
    forecasts: ForecastLog | None = None,
    routes: Callable[[], Iterable[RouteInfo]] | None = None,
) -> web.Application:
    """An app with /metrics (if `registry`), /api/* (if `history`; costs at `pricing`), /api/routes (if `routes`,
    the HTTP interceptor's) and / (if `dashboard` and `history`)."""
    app = web.Application()
    if registry is not None:
        app.add_routes(metrics_routes(registry))
    if routes is not None:
        app.add_routes(routes_api(routes))
    if history is not None:
        app.add_routes(api_routes(history, pricing=pricing, forecasts=forecasts))
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
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        return is_loopback(self.host)

    @property
    def bound_url(self) -> str:
        """The address as bound (`http://0.0.0.0:9022` for every interface), for announcements."""
        scheme = "https" if self.ssl_context is not None else "http"
        host = self.host or "0.0.0.0"
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}"

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


async def serve(
    app: web.Application, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, hosts: Iterable[str] = ()
) -> AppServer:
    """Start serving `app`; port 0 picks a free port (the chosen one is in the result's `port`).

    Requests must name the server in `Host`: its address, a loopback name, or one of `hosts`.
    """
    app.middlewares.append(host_check(allowed_hosts(host, hosts), wildcard=host in ("", "0.0.0.0", "::")))
    server = _Served(app, host, port)
    await server.start()
    return server
