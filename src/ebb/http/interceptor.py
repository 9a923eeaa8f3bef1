"""The interceptor: an asyncio reverse proxy in front of HTTPScaledObjects' replicas.

Per route it counts requests in flight (held ones included, as the add-on's counting middleware does) and
the request rate; while no replica is ready it holds requests (up to conditionWait, then a 504 or the
failover) and tells its listeners at once, so the route's scaling loop wakes without waiting for a poll.
Bodies stream both ways; nothing is buffered whole. Hop-by-hop headers are dropped; X-Forwarded-For,
-Proto and -Host are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict
from yarl import URL

from ebb.http.pool import Replica
from ebb.http.rate import RequestRate
from ebb.http.routing import RoutingTable
from ebb.http.stats import RouteStats
from ebb.http.upstream import UpstreamPool

log = logging.getLogger("ebb.http")


class _BadInputWithoutTraceback(logging.Filter):
    """A malformed request is the client's problem: one line about it, not a traceback in ebb's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.exc_info = None
            record.exc_text = None
            record.msg = "bad request from a client: %s"
            record.args = (str(exc.message).splitlines()[0] if exc.message else type(exc).__name__,)
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


server_log = logging.getLogger("ebb.http.server")
server_log.addFilter(_BadInputWithoutTraceback())

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: The add-on's KEDA_HTTP_RESPONSE_HEADER_TIMEOUT default.
DEFAULT_RESPONSE_HEADER_TIMEOUT = 300.0
#: How long a request waits for a ready replica when its HTTPScaledObject does not say (see docs/http.md).
DEFAULT_CONDITION_WAIT = 30.0
#: Requests held per route at most while it has no ready replica; more get a 503.
DEFAULT_MAX_HELD = 10_000
#: Limits on a request's head (aiohttp's parser refuses longer lines or fields with a 400).
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
CHUNK = 64 * 1024
#: Response bodies of known length up to this size are sent with the headers in one write.
SMALL_BODY = 64 * 1024

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass
class Route:
    """One HTTPScaledObject's traffic: where it goes, what it measures, who wants to know."""

    ref: str
    target: str
    pool: UpstreamPool | None
    condition_wait: float | None = DEFAULT_CONDITION_WAIT
    response_header: float | None = DEFAULT_RESPONSE_HEADER_TIMEOUT
    failover: str | None = None
    rate: RequestRate | None = None
    #: Why the route cannot serve (its ProcessGroup is missing); requests get a 503 with this.
    broken: str | None = None
    in_flight: int = 0
    held: int = 0
    requests: int = 0
    cold_starts: int = 0
    listeners: list[Callable[[], None]] = field(default_factory=list)
    #: InterceptorRoute only: the whole request's deadline (timeouts.request), a static answer while no
    #: replica is ready (coldStart.placeholder), and sub-routes answered without counting (staticRoutes).
    request_timeout: float | None = None
    placeholder: Callable[[web.BaseRequest], web.StreamResponse] | None = None
    static: Callable[[web.BaseRequest], StaticAnswer | None] | None = None
    #: A placeholder was served and no replica was ready since: the route's scaler reports demand.
    placeholder_pending: bool = False
    #: What the route's traffic did, for /metrics, the dashboard and cold-start Events (ebb.http.stats).
    stats: RouteStats = field(default_factory=RouteStats)

    def notify(self) -> None:
        for listener in self.listeners:
            listener()


@dataclass(frozen=True)
class StaticAnswer:
    """A static route's answer: `always`, or only while no replica is ready (else the request is forwarded)."""

    respond: Callable[[web.BaseRequest], web.StreamResponse]
    always: bool


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers={"X-Ebb-Interceptor": "1"})


def _forward_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    connection_listed = {
        token.strip().lower() for value in request.headers.getall("Connection", ()) for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_listed:
            continue
        if lower in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"):
            continue
        out.add(name, value)
    previous = request.headers.get("X-Forwarded-For")
    peer = request.remote or ""
    out["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
    out["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
    out["X-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", request.host)
    return out


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    connection_listed = {
        token.strip().lower() for value in upstream.headers.getall("Connection", ()) for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in connection_listed:
            continue
        out.add(name, value)
    return out


class Interceptor:
    """Serves the routes on one address until stopped; `stop()` drains in-flight requests first."""

    def __init__(
        self,
        table: RoutingTable[Route],
        routes: Sequence[Route],
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        max_held: int = DEFAULT_MAX_HELD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.routes = list(routes)
        self.host = host
        self.port = port
        self.max_held = max_held
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._server: web.Server | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def bound_port(self) -> int:
        assert self._listener is not None
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=30.0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=5.0, sock_read=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._server = web.Server(
            self.handle,
            handler_cancellation=True,
            max_line_size=MAX_LINE_SIZE,
            max_field_size=MAX_FIELD_SIZE,
            access_log=None,
            logger=server_log,
        )
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._server, self.host, self.port, reuse_address=True)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; let requests in flight finish (up to `grace` seconds); close connections."""
        if self._listener is not None:
            self._listener.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._idle.wait()
            await self._server.shutdown(1.0)
        if self._listener is not None:
            await self._listener.wait_closed()
        if self._session is not None:
            await self._session.close()

    # --- requests -----------------------------------------------------------------------------------

    def _route_for(self, request: web.BaseRequest) -> Route | None:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        return self.table.route(request.host, request.path, headers)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._route_for(request)
        if route is None:
            return _text(404, f"no HTTPScaledObject routes host {request.host!r} path {request.path!r}")
        if route.broken is not None:
            return _text(503, f"{route.ref}: {route.broken}")
        answer = route.static(request) if route.static is not None else None
        if answer is None:
            route.in_flight += 1
            route.requests += 1
            route.stats.request_started()
            if route.rate is not None:
                route.rate.record(self.clock())
        self._in_flight += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(route.request_timeout):
                if answer is not None:  # a static route: not counted, never a reason to scale
                    return await self._serve_static(request, route, answer)
                return await self._serve(request, route)
        except TimeoutError:
            if getattr(request.writer, "output_size", 0) and request.transport is not None:
                request.transport.abort()  # headers are out: cutting the connection is all that is left
            route.stats.timeout()
            return _text(504, f"{route.ref}: no response within the request timeout ({route.request_timeout:g}s)")
        finally:
            if answer is None:
                route.in_flight -= 1
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _serve_static(self, request: web.BaseRequest, route: Route, answer: StaticAnswer) -> web.StreamResponse:
        if not answer.always and route.pool is not None:
            replica = route.pool.pick()
            if replica is not None:
                try:
                    return await self._proxy(request, route, replica.url, replica)
                except _Refused:
                    route.pool.refused(replica)
                finally:
                    replica.release()
        return answer.respond(request)

    async def _serve(self, request: web.BaseRequest, route: Route) -> web.StreamResponse:
        assert route.pool is not None
        while True:
            replica = route.pool.pick()
            if replica is None and route.placeholder is not None:
                # Counted (the add-on's placeholder sits inside its counting middleware) and a reason to scale.
                route.placeholder_pending = True
                route.notify()
                return route.placeholder(request)
            if replica is None:
                if route.held >= self.max_held:
                    route.stats.rejected_full()
                    return _text(503, f"{route.ref}: too many requests waiting for a replica ({self.max_held})")
                route.held += 1
                if route.held == 1:
                    route.cold_starts += 1
                route.notify()
                try:
                    with route.stats.holding() as hold:
                        replica = hold.done(await route.pool.wait(within=route.condition_wait))
                finally:
                    route.held -= 1
                if replica is None:
                    if route.failover is not None:
                        return await self._proxy(request, route, route.failover, None)
                    wait = route.condition_wait
                    route.stats.timeout()
                    return _text(
                        504,
                        f"{route.ref}: no replica of {route.target} became ready within {wait:g}s",
                    )
            try:
                return await self._proxy(request, route, replica.url, replica)
            except _Refused:
                route.pool.refused(replica)
                continue  # nothing was sent: another replica (or a wait) is safe for any method
            finally:
                replica.release()

    async def _proxy(
        self, request: web.BaseRequest, route: Route, base_url: str, replica: Replica | None
    ) -> web.StreamResponse:
        assert self._session is not None
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        headers = _forward_headers(request)
        try:
            async with asyncio.timeout(route.response_header):
                upstream = await self._session.request(
                    request.method,
                    URL(base_url + request.raw_path, encoded=True),
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    compress=None,
                    chunked=None,
                )
        except aiohttp.ClientConnectorError as exc:
            if replica is not None and not _body_started(request):
                raise _Refused from exc
            route.stats.upstream_error()
            return _text(502, f"{route.ref}: cannot connect to {route.target}: {exc.strerror or exc}")
        except TimeoutError:
            route.stats.timeout()
            return _text(504, f"{route.ref}: {route.target} sent no response headers within {route.response_header:g}s")
        except aiohttp.ClientError as exc:
            route.stats.upstream_error()
            return _text(502, f"{route.ref}: {route.target} failed: {type(exc).__name__}: {exc}")
        headers_out = _response_headers(upstream)
        length = upstream.content_length
        if request.method != "HEAD" and length is not None and length <= SMALL_BODY:
            # A small body of known size goes out with the headers in one write: on loopback the syscalls,
            # not the copying, are what a proxied request costs.
            try:
                payload = await upstream.read()
            except (aiohttp.ClientError, ConnectionError) as exc:
                upstream.release()
                route.stats.upstream_error()
                return _text(502, f"{route.ref}: {route.target} failed mid-response: {type(exc).__name__}")
            finally:
                upstream.release()
            headers_out.popall("Content-Length", None)
            return web.Response(status=upstream.status, reason=upstream.reason, headers=headers_out, body=payload)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers_out)
        try:
            if length is not None and request.method != "HEAD":
                response.content_length = length
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
            return response
        except (aiohttp.ClientError, ConnectionError) as exc:
            # Headers are out: the only honest signal left is to cut the connection.
            log.info("%s: upstream failed mid-response: %s", route.ref, exc)
            if isinstance(exc, aiohttp.ClientError):  # not the client's own disconnect
                route.stats.upstream_error()
            if request.transport is not None:
                request.transport.abort()
            return response
        finally:
            upstream.release()


class _Refused(Exception):
    """The replica refused the connection before anything was sent."""


def _body_started(request: web.BaseRequest) -> bool:
    content = request.content
    return bool(getattr(content, "total_bytes", 0))


def header_map(headers: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out
