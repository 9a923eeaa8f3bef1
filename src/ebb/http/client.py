"""The interceptor's upstream side: HTTP/1.1 keep-alive connections to replicas on asyncio Protocols + httptools.

One pool of idle connections per upstream address (at most `max_idle` kept, each closed after `idle_timeout`
unused). A connection carries one exchange at a time: the interceptor writes the request head and streams the
body itself (`write`, `drain`), waits for `head()`, then hands the connection a `Sink` that receives the body
(already de-chunked by the parser) as it arrives. Back-pressure runs both ways: the upstream transport stops
reading while the sink says its client is slow (`pause`/`resume`), or while more than `HIGH_WATER` bytes wait
for a sink; writes to the upstream wait (`drain`) while its transport buffer is above `HIGH_WATER`.

A response of status 101 turns the connection into a tunnel (WebSocket/Upgrade): raw bytes both ways, never
pooled again. A response to HEAD has no body whatever its headers say; the parser cannot be told, so such a
connection is closed after the head rather than reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

#: Transport buffer size above which writing pauses (and reading, when nothing consumes the body).
HIGH_WATER = 256 * 1024
DEFAULT_MAX_IDLE = 32
DEFAULT_IDLE_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Connections open at once to one replica; more requests wait for one (haproxy's per-server `maxconn`).
DEFAULT_MAX_CONNECTIONS = 1024


class WaitCounter(Protocol):
    """Counts requests while they wait for a connection at the limit (a route's stats)."""

    def upstream_wait_started(self) -> None: ...

    def upstream_wait_ended(self) -> None: ...


class Sink(Protocol):
    """Where a response body goes (the interceptor's client connection)."""

    def body(self, data: bytes) -> None: ...

    def raw(self, data: bytes) -> None:
        """Tunnel bytes after a 101 (no framing)."""

    def upstream_closed(self) -> None:
        """The tunnel's upstream side closed."""


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    #: Raw header lines as received, names as sent (case kept).
    headers: list[tuple[bytes, bytes]]
    version: str
    keep_alive: bool
    chunked: bool
    length: int | None


class UpstreamError(Exception):
    """The upstream closed or broke the exchange; `sent_nothing` when no byte of a response arrived."""

    def __init__(self, message: str, *, got_nothing: bool) -> None:
        super().__init__(message)
        self.got_nothing = got_nothing


class Connection(asyncio.Protocol):
    """One upstream connection; `Pool.acquire` gives it out for one exchange at a time."""

    def __init__(self, pool: Pool | None) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.reused = False
        self.closed = False
        #: Holds one of its pool's slots (freed when the connection is lost).
        self.counted = False
        self.idle_since = 0.0
        self._head: asyncio.Future[ResponseHead] | None = None
        self._done: asyncio.Future[None] | None = None
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._got_bytes = False
        self._complete = False
        self._head_only = False
        self._sink: Sink | None = None
        self._early: list[bytes] = []
        self._early_size = 0
        self._tunnel = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused_by: set[str] = set()

    # --- protocol callbacks ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self._tunnel:
            if self._sink is not None:
                self._sink.raw(data)
            return
        self._got_bytes = True
        if self._head is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            if self._status == 101:
                self._tunnel = True
                rest = data[offset:]
                if rest:
                    self._early.append(rest)
            else:
                self._fail("upstream sent an unexpected upgrade")
        except httptools.HttpParserError as exc:
            self._fail(f"malformed response from upstream: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pool is not None:
            self.pool.forget(self)
        if self._tunnel:
            if self._sink is not None:
                self._sink.upstream_closed()
            return
        if self._head is not None and not self._head.done():
            self._head.set_exception(
                UpstreamError("upstream closed the connection before answering", got_nothing=not self._got_bytes)
            )
        elif self._done is not None and not self._done.done():
            if self._status and not self.parser.should_keep_alive() and self._no_framing():
                self._finish()  # the body ran until the connection closed (no length, not chunked)
            else:
                error = UpstreamError("upstream closed the connection mid-response", got_nothing=False)
                self._done.set_exception(error)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- parser callbacks -----------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # 100 Continue and other informational answers: the interceptor sends its own 100; skip these.
            self._reason = b""
            self._headers = []
            return
        self._status = status
        length: int | None = None
        chunked = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        head = ResponseHead(
            status,
            self._reason,
            self._headers,
            self.parser.get_http_version(),
            self.parser.should_keep_alive(),
            chunked,
            length,
        )
        assert self._head is not None
        if not self._head.done():
            self._head.set_result(head)
        if self._head_only and status != 101:
            self._finish(reusable=False)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        sink = self._sink
        if sink is not None:
            sink.body(body)
        else:
            self._early.append(body)
            self._early_size += len(body)
            if self._early_size > HIGH_WATER:
                self.pause_reading("early")

    def on_message_complete(self) -> None:
        if self._status and not self._complete:
            self._finish()

    # --- for the interceptor --------------------------------------------------------------------------

    def begin(self, *, head_only: bool) -> None:
        """Start an exchange: the caller writes the request next."""
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._done = loop.create_future()
        self._status = 0
        self._reason = b""
        self._headers = []
        self._got_bytes = False
        self._complete = False
        self._head_only = head_only
        self._sink = None
        self._early = []
        self._early_size = 0

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream closed the connection")
        if not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    async def head(self, within: float | None = None) -> ResponseHead:
        """The response head; TimeoutError after `within` seconds (a timer on the future: cheaper than
        asyncio.timeout on every request)."""
        future = self._head
        assert future is not None
        if within is None or future.done():
            return await future
        timer = asyncio.get_running_loop().call_later(within, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()

    def attach(self, sink: Sink) -> list[bytes]:
        """From now on the body goes to `sink`; returns what arrived before (to go out with the head)."""
        self._sink = sink
        early, self._early, self._early_size = self._early, [], 0
        self.resume_reading("early")
        return early

    @property
    def tunnel(self) -> bool:
        return self._tunnel

    async def done(self) -> None:
        assert self._done is not None
        await self._done

    def complete(self) -> bool:
        return self._complete

    def pause_reading(self, why: str) -> None:
        if not self._read_paused_by and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._read_paused_by.add(why)

    def resume_reading(self, why: str) -> None:
        if why in self._read_paused_by:
            self._read_paused_by.discard(why)
            if not self._read_paused_by and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _no_framing(self) -> bool:
        return not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers)

    def _finish(self, *, reusable: bool = True) -> None:
        self._complete = True
        if not reusable or not self.parser.should_keep_alive():
            self._head_only = True  # never reused: see release()
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    def _fail(self, message: str) -> None:
        error = UpstreamError(message, got_nothing=False)
        for future in (self._head, self._done):
            if future is not None and not future.done():
                future.set_exception(error)
        self.abort()

    def reusable(self) -> bool:
        return (
            self._complete
            and not self._head_only
            and not self._tunnel
            and not self.closed
            and not self._read_paused_by
            and not self._write_paused
        )


def _time_out(future: asyncio.Future[ResponseHead]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class Pool:
    """Keep-alive connections to one upstream address: at most `max_connections` open at once (idle or in use),
    at most `max_idle` of them kept idle.

    A request that finds every connection busy waits its turn (first come, first served) for one to come back or
    to close, rather than opening more: a burst of held requests released at once by a cold start must not open
    thousands of connections to one fresh replica (its listen backlog overflows, and the interceptor runs out of
    file descriptors). The waiting requests are already counted in flight, so the route scales on them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int,
        idle_timeout: float,
        connect_timeout: float,
        max_connections: int | None = None,
        client: UpstreamClient | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.client = client
        self.idle: deque[Connection] = deque()
        self.opened = 0
        #: Connections open or being opened (slots taken).
        self.count = 0
        #: Requests waiting for a connection: each future gets a connection, or None for a free slot to open one in.
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()

    def _idle_connection(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to have been closed by its server
            if not conn.closed:
                conn.reused = True
                return conn
        return None

    async def acquire(self, *, fresh: bool = False, waits: WaitCounter | None = None) -> Connection:
        """A connection for one exchange; `waits` counts the time spent waiting for one at the limit."""
        if not fresh:
            idle = self._idle_connection()
            if idle is not None:
                return idle
        if self.max_connections is not None and self.count >= self.max_connections:
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            if waits is not None:
                waits.upstream_wait_started()
            try:
                conn = await waiter
            except asyncio.CancelledError:
                self._give_back(waiter)
                raise
            finally:
                if waits is not None:
                    waits.upstream_wait_ended()
            if conn is not None:
                conn.reused = True
                return conn
            # a slot was taken for us by whoever freed it
        else:
            self.count += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._slot_freed()
            raise
        return conn

    async def _connect(self) -> Connection:
        """A new connection; when the process is out of file descriptors, waits for one of the client's
        connections to close and tries again (or takes an idle one that came back meanwhile), up to
        `connect_timeout` in all."""
        loop = asyncio.get_running_loop()
        shortage: OSError | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                while True:
                    try:
                        _, protocol = await loop.create_connection(lambda: Connection(self), self.host, self.port)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EMFILE, errno.ENFILE) or self.client is None:
                            raise
                        shortage = exc
                        await self.client.descriptor_freed()
                        reused = self._idle_connection()
                        if reused is not None:
                            self._slot_freed()  # it holds a slot of its own: the one taken for a new one goes back
                            return reused
        except TimeoutError:
            if shortage is not None:
                raise shortage from None  # the reason to report is the shortage, not the timer
            raise
        protocol.counted = True
        self.opened += 1
        return protocol

    def _give_back(self, waiter: asyncio.Future[Connection | None]) -> None:
        """A waiting request was cancelled (its client left, or a timeout): what it was given goes to the next."""
        if not waiter.done():
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)
            return
        if waiter.cancelled():
            return
        given = waiter.result()
        if given is None:
            self._slot_freed()
        else:
            self.release(given)

    def _next_waiter(self) -> asyncio.Future[Connection | None] | None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _slot_freed(self) -> None:
        """A connection closed or could not be opened: its slot goes to the first waiting request, if any."""
        waiter = self._next_waiter()
        if waiter is None:
            self.count -= 1
        else:
            waiter.set_result(None)  # the slot passes on: count unchanged

    def release(self, conn: Connection) -> None:
        if conn.reusable():
            waiter = self._next_waiter()
            if waiter is not None:
                conn._head = conn._done = None
                conn._sink = None
                waiter.set_result(conn)
                return
            if len(self.idle) < self.max_idle:
                conn.idle_since = time.monotonic()
                conn._head = conn._done = None
                conn._sink = None
                self.idle.append(conn)
                return
        conn.close()  # its slot is freed when the connection is lost

    def forget(self, conn: Connection) -> None:
        """The connection closed (either side)."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._slot_freed()
        if self.client is not None:
            self.client.closed_one()

    def close_idle(self, older_than: float | None = None) -> None:
        now = time.monotonic()
        keep: deque[Connection] = deque()
        for conn in self.idle:
            if older_than is None or now - conn.idle_since >= older_than:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep

    def busy(self) -> bool:
        """Connections in use, being opened, or requests waiting for one: the pool must be kept."""
        return self.count > len(self.idle) or bool(self.waiters)


class UpstreamClient:
    """Keep-alive pools per upstream address; idle connections close after `idle_timeout`; at most
    `max_connections` open to one address (None: no limit)."""

    def __init__(
        self,
        *,
        max_idle: int = DEFAULT_MAX_IDLE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.pools: dict[tuple[str, int], Pool] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._freed: asyncio.Event | None = None

    def pool(self, host: str, port: int) -> Pool:
        key = (host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(
                host,
                port,
                max_idle=self.max_idle,
                idle_timeout=self.idle_timeout,
                connect_timeout=self.connect_timeout,
                max_connections=self.max_connections,
                client=self,
            )
            if self._sweeper is None:
                self._schedule_sweep()
        return pool

    async def descriptor_freed(self) -> None:
        """Wait until one of this client's connections closes (a file descriptor is free again), or 0.1 s
        (descriptors held elsewhere in the process may free up too)."""
        if self._freed is None:
            self._freed = asyncio.Event()
        freed = self._freed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                await freed.wait()

    def closed_one(self) -> None:
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(max(self.idle_timeout / 3, 0.05), self._sweep)

    def _sweep(self) -> None:
        for key, pool in list(self.pools.items()):
            pool.close_idle(self.idle_timeout)
            if not pool.idle and not pool.busy():
                del self.pools[key]
        self._sweeper = None
        if self.pools:
            self._schedule_sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self.pools.values():
            pool.close_idle()
        self.pools.clear()


def parse_base_url(url: str, _cache: dict[str, tuple[str, int]] = {}) -> tuple[str, int]:  # noqa: B006
    """`http://host:port` (a replica's or a failover's base URL) as (host, port)."""
    hit = _cache.get(url)
    if hit is not None:
        return hit
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        host, port = rest, "80"
    result = (host.strip("[]"), int(port))
    if len(_cache) < 4096:
        _cache[url] = result
    return result
