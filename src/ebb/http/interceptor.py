"""The interceptor: an asyncio reverse proxy in front of HTTPScaledObjects' replicas.

Per route it counts requests in flight (held ones included, as the add-on's counting middleware does) and
the request rate; while no replica is ready it holds requests (up to conditionWait, then a 504 or the
failover) and tells its listeners at once, so the route's scaling loop wakes without waiting for a poll.
Bodies stream both ways; nothing is buffered whole. Hop-by-hop headers are dropped; X-Forwarded-For,
-Proto and -Host are set.

The transport is asyncio Protocols with httptools (llhttp) on both sides, no aiohttp: the client side is
`_ClientConnection` below, the upstream side is ebb.http.client (keep-alive pools per replica). Served under
uvloop by `ebb run` and `ebb interceptor` (ebb.http.eventloop). docs/http.md has the limits; docs/performance.md
the measurements behind the choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote

import httptools
from aiohttp import web
from multidict import CIMultiDict

from ebb.http.client import (
    DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS,
)
from ebb.http.client import (
    HIGH_WATER,
    Connection,
    ResponseHead,
    UpstreamClient,
    UpstreamError,
    parse_base_url,
)
from ebb.http.pool import Replica
from ebb.http.rate import RequestRate
from ebb.http.routing import RoutingTable
from ebb.http.stats import RouteStats
from ebb.http.upstream import UpstreamPool

log = logging.getLogger("ebb.http")


#: One line per malformed request, at debug level: a client's problem, never a traceback in ebb's output.
server_log = logging.getLogger("ebb.http.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: The add-on's KEDA_HTTP_RESPONSE_HEADER_TIMEOUT default.
DEFAULT_RESPONSE_HEADER_TIMEOUT = 300.0
#: How long a request waits for a ready replica when its HTTPScaledObject does not say (see docs/http.md).
DEFAULT_CONDITION_WAIT = 30.0
#: Requests held per route at most while it has no ready replica; more get a 503.
DEFAULT_MAX_HELD = 10_000
#: Limits on a request's head: a longer request target gets a 414; a longer header field, more than
#: MAX_HEADERS fields or more than MAX_HEAD_SIZE bytes of them a 431; a head not read within HEAD_TIMEOUT a 408.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128
MAX_HEAD_SIZE = 64 * 1024
HEAD_TIMEOUT = 10.0
#: An idle keep-alive client connection is closed after this long.
KEEPALIVE_TIMEOUT = 75.0
#: Pending connections the listening socket queues (the kernel caps it at net.core.somaxconn).
BACKLOG = 65535

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
    listeners: list[Callable[[], None]] = field(default_factory=list)
    #: InterceptorRoute only: the whole request's deadline (timeouts.request), a static answer while no
    #: replica is ready (coldStart.placeholder), and sub-routes answered without counting (staticRoutes).
    request_timeout: float | None = None
    placeholder: Callable[[RequestHead], web.StreamResponse] | None = None
    static: Callable[[RequestHead], StaticAnswer | None] | None = None
    #: A placeholder was served and no replica was ready since: the route's scaler reports demand.
    placeholder_pending: bool = False
    #: What the route's traffic did, for /metrics, the dashboard and cold-start Events (ebb.http.stats).
    stats: RouteStats = field(default_factory=RouteStats)

    @property
    def requests(self) -> int:
        """Requests routed here and counted (static answers are not), ever: the scaler's activity signal."""
        return self.stats.requests

    @property
    def cold_starts(self) -> int:
        """Cold starts so far: episodes of held requests (holds less than 0.5 s apart are one), each its own Event."""
        return self.stats.cold_starts

    def notify(self) -> None:
        for listener in self.listeners:
            listener()


@dataclass(frozen=True)
class StaticAnswer:
    """A static route's answer: `always`, or only while no replica is ready (else the request is forwarded)."""

    respond: Callable[[RequestHead], web.StreamResponse]
    always: bool


class RequestHead:
    """A request as the interceptor read it: what routing, static answers and placeholders look at."""

    __slots__ = (
        "_headers",
        "body",
        "chunked",
        "expect_continue",
        "host",
        "keep_alive",
        "method",
        "raw_headers",
        "raw_path",
        "remote",
        "upgrade",
        "version",
    )
    scheme = "http"

    def __init__(
        self, method: str, raw_path: str, version: str, raw_headers: list[tuple[bytes, bytes]], remote: str
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.raw_headers = raw_headers
        self.remote = remote
        self.host = ""
        self.keep_alive = True
        self.body: _Body | None = None
        self.chunked = False
        self.expect_continue = False
        self.upgrade: bytes | None = None
        self._headers: CIMultiDict[str] | None = None

    @property
    def path(self) -> str:
        """The path without the query, percent-decoded (as routing compares it)."""
        return unquote(self.raw_path.split("?", 1)[0])

    @property
    def headers(self) -> CIMultiDict[str]:
        if self._headers is None:
            self._headers = CIMultiDict(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers
            )
        return self._headers

    def header_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in self.raw_headers:
            out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return out


class _Body:
    """A request body on its way in: chunks wait here (reading from the client pauses above HIGH_WATER)."""

    __slots__ = ("_conn", "_waiter", "chunks", "ended", "error", "size", "started")

    def __init__(self, conn: _ClientConnection) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.ended = False
        self.error: BaseException | None = None
        self.started = False
        self._waiter: asyncio.Future[None] | None = None
        self._conn = conn

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER:
            self._conn.pause_reading("body")
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """The next chunk; b"" at the end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.ended:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self.chunks.popleft()
        self.started = True
        self.size -= len(chunk)
        if self.size <= HIGH_WATER // 4:
            self._conn.resume_reading("body")
        return chunk


class _RefusedHead(Exception):
    """A request head refused from a parser callback (too big, or a version the interceptor does not speak)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def _text(status: int, message: str, *, close: bool = False) -> bytes:
    body = (message + "\n").encode()
    reason = _REASONS.get(status, "")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nX-Ebb-Interceptor: 1\r\n"
        f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
    ).encode() + body


def _from_web(response: web.StreamResponse, *, close: bool, head_only: bool) -> bytes:
    """A static answer or placeholder (an aiohttp Response built by interceptor_route) as bytes on the wire."""
    body = response.body if isinstance(response, web.Response) else None
    payload = body if isinstance(body, bytes) else b""
    lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n"]
    for name, value in response.headers.items():
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{name}: {value}\r\n")
    if payload and "Content-Type" not in response.headers:
        lines.append("Content-Type: application/octet-stream\r\n")
    lines.append(f"Content-Length: {len(payload)}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + (b"" if head_only else payload)


_HOP_BY_HOP_B = frozenset(name.encode() for name in HOP_BY_HOP)
_SKIP_UPSTREAM = _HOP_BY_HOP_B | {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"content-length",
    b"expect",
}
_SKIP_DOWNSTREAM = _HOP_BY_HOP_B | {b"content-length"}


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def _upstream_head(request: RequestHead) -> bytes:
    """The request as it goes to a replica: hop-by-hop fields dropped, X-Forwarded-* set, framing redone."""
    listed = _connection_tokens(request.raw_headers)
    parts = [request.method.encode(), b" ", request.raw_path.encode("latin-1"), b" HTTP/1.1\r\n"]
    forwarded_for = forwarded_proto = forwarded_host = None
    has_host = False
    for name, value in request.raw_headers:
        lower = name.lower()
        if lower in _SKIP_UPSTREAM or lower in listed:
            if lower == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            elif lower == b"x-forwarded-proto" and forwarded_proto is None:
                forwarded_proto = value
            elif lower == b"x-forwarded-host" and forwarded_host is None:
                forwarded_host = value
            elif lower == b"content-length" and not request.chunked and lower not in listed:
                parts += (name, b": ", value, b"\r\n")
            continue
        if lower == b"host":
            has_host = True
        parts += (name, b": ", value, b"\r\n")
    peer = request.remote.encode()
    parts += (b"X-Forwarded-For: ", forwarded_for + b", " + peer if forwarded_for else peer, b"\r\n")
    parts += (b"X-Forwarded-Proto: ", forwarded_proto or b"http", b"\r\n")
    host = request.host.encode("latin-1")
    parts += (b"X-Forwarded-Host: ", forwarded_host or host, b"\r\n")
    if not has_host and host:
        parts += (b"Host: ", host, b"\r\n")
    if request.body is not None and request.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if request.upgrade is not None:
        parts += (b"Connection: Upgrade\r\nUpgrade: ", request.upgrade, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _downstream_head(head: ResponseHead, *, framing: bytes, close: bool) -> bytes:
    listed = _connection_tokens(head.headers)
    parts = [b"HTTP/1.1 ", str(head.status).encode(), b" ", head.reason, b"\r\n"]
    for name, value in head.headers:
        lower = name.lower()
        if lower in _SKIP_DOWNSTREAM or lower in listed:
            continue
        parts += (name, b": ", value, b"\r\n")
    parts.append(framing)
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Sink:
    """A response body from a replica to the client, chunked again when the client must be told the framing."""

    __slots__ = ("chunked", "conn")

    def __init__(self, conn: _ClientConnection, chunked: bool) -> None:
        self.conn = conn
        self.chunked = chunked

    def body(self, data: bytes) -> None:
        self.conn.write(_chunk(data) if self.chunked else data)

    def raw(self, data: bytes) -> None:
        self.conn.write(data)

    def upstream_closed(self) -> None:
        self.conn.close()


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parses requests (httptools), serves them one at a time in arrival order."""

    def __init__(self, interceptor: Interceptor) -> None:
        self.interceptor = interceptor
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote = ""
        self.closed = False
        self.queue: deque[RequestHead] = deque()
        self.task: asyncio.Task[None] | None = None
        self.parsing: RequestHead | None = None
        self.response_started = False
        self.upstream: Connection | None = None
        self.tunnel: Connection | None = None
        self.tunnel_done: asyncio.Future[None] | None = None
        self.pending_tunnel_bytes = b""
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        #: When the connection began waiting for a request head (None while a request is being served).
        self.waiting_since: float | None = None
        self.partial = False
        self._paused_by: set[str] = set()
        self._write_paused = False
        self._broken = False

    # --- protocol callbacks ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) else ""
        self.waiting_since = asyncio.get_running_loop().time()
        self.interceptor._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self._broken:
            return
        if self.waiting_since is not None:
            self.partial = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self.pending_tunnel_bytes = data[offset:]
            self._broken = True  # nothing after an upgrade request is HTTP any more
            self.pause_reading("upgrade")
        except _RefusedHead as exc:
            self._refuse(exc.status, str(exc))
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, _RefusedHead) else None
            if cause is not None:
                self._refuse(cause.status, str(cause))
            else:
                self._refuse(400, f"malformed request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.interceptor._connections.discard(self)
        if self.parsing is not None and self.parsing.body is not None:
            self.parsing.body.fail(ConnectionResetError("client closed the connection"))
        for request in self.queue:
            if request.body is not None:
                request.body.fail(ConnectionResetError("client closed the connection"))
        if self.tunnel is not None:
            self.tunnel.close()
        if self.tunnel_done is not None and not self.tunnel_done.done():
            self.tunnel_done.set_result(None)
        if self.task is not None and not self.task.done():
            self.task.cancel()  # a held request is forgotten; a proxied one is cut upstream too

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading("client")

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading("client")

    # --- parser callbacks -----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._url_size = 0
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        if self._url_size > MAX_LINE_SIZE:
            raise _RefusedHead(414, f"request target longer than {MAX_LINE_SIZE} bytes")
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(value) > MAX_FIELD_SIZE or len(name) > MAX_FIELD_SIZE:
            raise _RefusedHead(431, f"header field longer than {MAX_FIELD_SIZE} bytes")
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_SIZE:
            raise _RefusedHead(431, f"header fields longer than {MAX_HEAD_SIZE} bytes in all")
        if len(self._headers) >= MAX_HEADERS:
            raise _RefusedHead(431, f"more than {MAX_HEADERS} header fields")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):
            # llhttp takes a request line without a version (`GET /`) as HTTP/0.9, and reads `HTTP/2.0` in a
            # request line: neither is a request to proxy as HTTP/1.1 (RFC 9112 3: 400 for an invalid request
            # line; RFC 9110 15.6.6: 505 for a major version not supported).
            if version == "0.9":
                raise _RefusedHead(
                    400,
                    "malformed request: the request line has no HTTP version (an HTTP/0.9 request); "
                    "expected 'METHOD /path HTTP/1.1'",
                )
            raise _RefusedHead(505, f"HTTP/{version} is not supported here: send HTTP/1.1 (or HTTP/1.0)")
        raw_path = b"".join(self._url).decode("latin-1")
        method = parser.get_method().decode("latin-1")
        request = RequestHead(method, raw_path, version, self._headers, self.remote)
        request.keep_alive = parser.should_keep_alive()
        length: int | None = None
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"host":
                request.host = value.decode("latin-1")
            elif lower == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                request.chunked = True
            elif lower == b"expect" and value.lower() == b"100-continue":
                request.expect_continue = True
            elif lower == b"upgrade":
                request.upgrade = value
        if method == "CONNECT" or (request.upgrade is not None and not parser.should_upgrade()):
            request.upgrade = None
        if request.chunked or (length is not None and length > 0):
            request.body = _Body(self)
        self.parsing = request
        self.partial = False
        self.waiting_since = None
        self.queue.append(request)
        if len(self.queue) > 8:
            self.pause_reading("pipelined")
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve_queue())

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None and self.parsing.body is not None:
            self.parsing.body.feed(body)

    def on_message_complete(self) -> None:
        if self.parsing is not None and self.parsing.body is not None:
            self.parsing.body.end()
        self.parsing = None

    # --- serving ------------------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        interceptor = self.interceptor
        try:
            while self.queue:
                request = self.queue.popleft()
                if len(self.queue) <= 8:
                    self.resume_reading("pipelined")
                self.response_started = False
                if request.method == "CONNECT":
                    self.write(_text(405, "CONNECT is not supported: ebb's interceptor is a reverse proxy", close=True))
                    self.close()
                    return
                await interceptor._handle(self, request)
                if self.closed:
                    return
                if (
                    not request.keep_alive
                    or interceptor._closing
                    or request.upgrade is not None
                    or (request.body is not None and not request.body.ended)
                ):
                    self.close()
                    return
        finally:
            self.task = None
            if not self.closed and not self.queue:
                self.waiting_since = asyncio.get_running_loop().time()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    def pause_reading(self, why: str) -> None:
        if not self._paused_by and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused_by.add(why)

    def resume_reading(self, why: str) -> None:
        if why in self._paused_by:
            self._paused_by.discard(why)
            if not self._paused_by and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _refuse(self, status: int, message: str) -> None:
        """A request the interceptor cannot read: one answer, one debug line, the connection closed."""
        server_log.debug("bad request from %s: %s", self.remote or "a client", message)
        self._broken = True
        if not self.response_started:
            # A request whose body turned out malformed: its handler (not started yet when the error came in the
            # same read) is called off, and the client gets the answer.
            if self.task is not None:
                self.task.cancel()
            self.write(_text(status, message, close=True))
        self.close()

    def check_timeouts(self, now: float) -> None:
        """Called every second: a head not read within HEAD_TIMEOUT gets a 408; idle keep-alive closes."""
        since = self.waiting_since
        if since is None or self.closed:
            return
        if self.partial and now - since >= HEAD_TIMEOUT:
            self._refuse(408, f"request head not received within {HEAD_TIMEOUT:g}s")
        elif not self.partial and (now - since >= KEEPALIVE_TIMEOUT or self.interceptor._closing):
            self.close()

    def open_tunnel(self, upstream: Connection, early: list[bytes]) -> asyncio.Future[None]:
        """After a 101: raw bytes both ways until either side closes."""
        self.tunnel = upstream
        self.tunnel_done = asyncio.get_running_loop().create_future()
        for data in early:
            self.write(data)
        if self.pending_tunnel_bytes:
            upstream.write(self.pending_tunnel_bytes)
            self.pending_tunnel_bytes = b""
        self.resume_reading("upgrade")
        return self.tunnel_done


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
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.routes = list(routes)
        self.host = host
        self.port = port
        self.max_held = max_held
        #: Connections open at once to one replica (None: no limit); more requests wait their turn.
        self.max_connections = max_connections
        self.clock = clock
        self._client: UpstreamClient | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._connections: set[_ClientConnection] = set()
        self._closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def bound_port(self) -> int:
        assert self._listener is not None
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._client = UpstreamClient(max_connections=self.max_connections)
        self._closing = False
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _ClientConnection(self), self.host, self.port, reuse_address=True, backlog=BACKLOG
        )
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in list(self._connections):
                conn.check_timeouts(now)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; let requests in flight finish (up to `grace` seconds); close connections."""
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            if conn.task is None and not conn.partial:
                conn.close()  # idle keep-alive connections: nothing to wait for
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        for conn in list(self._connections):
            if conn.task is None:
                conn.close()
            else:
                conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._listener is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._listener.wait_closed()
        if self._client is not None:
            self._client.close()

    # --- requests -----------------------------------------------------------------------------------

    async def _handle(self, conn: _ClientConnection, request: RequestHead) -> None:
        route = self.table.route(request.host, request.path, request.header_map())
        if route is None:
            conn.write(_text(404, f"no HTTPScaledObject routes host {request.host!r} path {request.path!r}"))
            return
        if route.broken is not None:
            conn.write(_text(503, f"{route.ref}: {route.broken}"))
            return
        answer = route.static(request) if route.static is not None else None
        if answer is None:
            route.in_flight += 1
            route.stats.request_started()
            if route.rate is not None:
                route.rate.record(self.clock())
        self._in_flight += 1
        self._idle.clear()
        try:
            if route.request_timeout is None and answer is None:  # the common case, without a timeout's cost
                await self._serve(conn, request, route)
                return
            async with asyncio.timeout(route.request_timeout):
                if answer is not None:  # a static route: not counted, never a reason to scale
                    await self._serve_static(conn, request, route, answer)
                else:
                    await self._serve(conn, request, route)
        except TimeoutError:
            route.stats.timeout()
            if conn.response_started:
                conn.abort()  # headers are out: cutting the connection is all that is left
            else:
                timeout = route.request_timeout
                conn.write(_text(504, f"{route.ref}: no response within the request timeout ({timeout:g}s)"))
        finally:
            if answer is None:
                route.in_flight -= 1
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _answer(self, conn: _ClientConnection, request: RequestHead, response: web.StreamResponse) -> None:
        close = not request.keep_alive or (request.body is not None and not request.body.ended)
        conn.write(_from_web(response, close=close, head_only=request.method == "HEAD"))

    async def _serve_static(
        self, conn: _ClientConnection, request: RequestHead, route: Route, answer: StaticAnswer
    ) -> None:
        if not answer.always and route.pool is not None:
            replica = route.pool.pick()
            if replica is not None:
                try:
                    await self._proxy(conn, request, route, replica.url, replica)
                    return
                except _Refused:
                    route.pool.refused(replica)
                finally:
                    replica.release()
        self._answer(conn, request, answer.respond(request))

    async def _serve(self, conn: _ClientConnection, request: RequestHead, route: Route) -> None:
        assert route.pool is not None
        while True:
            replica = route.pool.pick()
            if replica is None and route.placeholder is not None:
                # Counted (the add-on's placeholder sits inside its counting middleware) and a reason to scale.
                route.placeholder_pending = True
                route.notify()
                self._answer(conn, request, route.placeholder(request))
                return
            if replica is None:
                if route.held >= self.max_held:
                    route.stats.rejected_full()
                    conn.write(_text(503, f"{route.ref}: too many requests waiting for a replica ({self.max_held})"))
                    return
                route.held += 1
                route.notify()
                try:
                    with route.stats.holding() as hold:
                        replica = hold.done(await route.pool.wait(within=route.condition_wait))
                finally:
                    route.held -= 1
                if replica is None:
                    if route.failover is not None:
                        await self._proxy(conn, request, route, route.failover, None)
                        return
                    wait = route.condition_wait
                    route.stats.timeout()
                    conn.write(_text(504, f"{route.ref}: no replica of {route.target} became ready within {wait:g}s"))
                    return
            try:
                await self._proxy(conn, request, route, replica.url, replica)
                return
            except _Refused:
                route.pool.refused(replica)
                continue  # nothing was sent: another replica (or a wait) is safe for any method
            finally:
                replica.release()

    async def _proxy(
        self, conn: _ClientConnection, request: RequestHead, route: Route, base_url: str, replica: Replica | None
    ) -> None:
        assert self._client is not None
        host, port = parse_base_url(base_url)
        pool = self._client.pool(host, port)
        head_bytes = _upstream_head(request)
        body = request.body
        for attempt in range(2):
            try:
                upstream = await pool.acquire(fresh=attempt > 0, waits=route.stats)
            except (OSError, TimeoutError) as exc:
                if replica is not None and isinstance(exc, ConnectionRefusedError) and not _body_started(request):
                    raise _Refused from exc
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                route.stats.upstream_error()
                conn.write(_text(502, f"{route.ref}: cannot connect to {route.target}: {reason}"))
                return
            upstream.begin(head_only=request.method == "HEAD")
            upstream.write(head_bytes)
            pump = asyncio.get_running_loop().create_task(self._pump(conn, request, upstream)) if body else None
            try:
                head = await upstream.head(route.response_header)
            except TimeoutError:
                _drop(upstream, pump)
                route.stats.timeout()
                timeout = route.response_header
                conn.write(_text(504, f"{route.ref}: {route.target} sent no response headers within {timeout:g}s"))
                return
            except UpstreamError as exc:
                _drop(upstream, pump)
                if exc.got_nothing and upstream.reused and body is None and attempt == 0:
                    continue  # a kept-alive connection the replica had closed: once more on a new one
                route.stats.upstream_error()
                conn.write(_text(502, f"{route.ref}: {route.target} failed: {exc}"))
                return
            except BaseException:
                _drop(upstream, pump)
                raise
            await self._respond(conn, request, route, upstream, head, pump)
            return

    async def _pump(self, conn: _ClientConnection, request: RequestHead, upstream: Connection) -> None:
        """The request body to the replica as it arrives, waiting while the replica's buffer is full."""
        body = request.body
        assert body is not None
        if request.expect_continue and not body.chunks:
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            chunk = await body.read()
            if not chunk:
                break
            upstream.write(_chunk(chunk) if request.chunked else chunk)
            await upstream.drain()
        if request.chunked:
            upstream.write(b"0\r\n\r\n")

    async def _respond(
        self,
        conn: _ClientConnection,
        request: RequestHead,
        route: Route,
        upstream: Connection,
        head: ResponseHead,
        pump: asyncio.Task[None] | None,
    ) -> None:
        assert self._client is not None
        if head.status == 101 and request.upgrade is not None:
            conn.response_started = True
            sink = _Sink(conn, chunked=False)
            upgrade = b"Connection: Upgrade\r\nUpgrade: %b\r\n" % _upgrade(head)
            conn.write(_downstream_head(head, framing=upgrade, close=False))
            done = conn.open_tunnel(upstream, upstream.attach(sink))
            try:
                await done
            finally:
                _drop(upstream, pump)
                conn.close()
            return
        bodiless = request.method == "HEAD" or head.status in (204, 304)
        close = not request.keep_alive or self._closing or request.upgrade is not None
        chunked = False
        if bodiless:
            framing = b"Content-Length: %d\r\n" % head.length if head.length is not None and head.status != 204 else b""
        elif head.length is not None:
            framing = b"Content-Length: %d\r\n" % head.length
        elif request.version == "1.1":
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
        else:
            framing, close = b"", True  # an HTTP/1.0 client: the body ends when the connection does
        if pump is not None and not pump.done():
            close = True  # the replica answered before the whole body arrived: the rest is not ours to read
        sink = _Sink(conn, chunked)
        early = upstream.attach(sink)
        out = _downstream_head(head, framing=framing, close=close)
        if early:
            out += b"".join(_chunk(data) for data in early) if chunked else b"".join(early)
        conn.response_started = True
        conn.write(out)
        conn.upstream = upstream
        if conn._write_paused:
            upstream.pause_reading("client")
        reusable = False
        try:
            if not upstream.complete():
                await upstream.done()
            if chunked:
                conn.write(b"0\r\n\r\n")
            if pump is not None:
                await pump
            reusable = True
        except (UpstreamError, ConnectionError) as exc:
            # Headers are out: the only honest signal left is to cut the connection.
            log.info("%s: upstream failed mid-response: %s", route.ref, exc)
            if isinstance(exc, UpstreamError):  # not the client's own disconnect
                route.stats.upstream_error()
            conn.abort()
        finally:
            conn.upstream = None
            upstream.resume_reading("client")
            if reusable:
                pool = upstream.pool
                assert pool is not None
                pool.release(upstream)
            else:
                _drop(upstream, pump)
            if close:
                conn.close()


def _upgrade(head: ResponseHead) -> bytes:
    for name, value in head.headers:
        if name.lower() == b"upgrade":
            return value
    return b"websocket"


def _drop(upstream: Connection, pump: asyncio.Task[None] | None) -> None:
    upstream.abort()
    if pump is not None:
        if pump.done():
            if not pump.cancelled():
                pump.exception()  # retrieved: a client or replica that went away is no error here
        else:
            pump.cancel()


class _Refused(Exception):
    """The replica refused the connection before anything was sent."""


def _body_started(request: RequestHead) -> bool:
    return request.body is not None and request.body.started


def header_map(headers: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out
