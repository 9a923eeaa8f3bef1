"""The interceptor's transport (asyncio Protocols + httptools): limits, keep-alive pools, Expect, Upgrade, drain.

Small real servers on loopback stand in for replicas where a test needs to see or steer the upstream side
(a raw asyncio server that answers, closes kept-alive connections, or switches protocols).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ebb.http import interceptor as interceptor_module
from ebb.http.eventloop import loop_factory, run_serving
from ebb.http.interceptor import Interceptor, Route
from ebb.http.pool import Replica
from ebb.http.routing import RouteRule, RoutingTable
from tests.runtime._support import eventually

from ._support import free_ports, group, httpso, running


class _OnePool:
    """A route's replicas: one, always ready, at a fixed port (the UpstreamPool protocol)."""

    def __init__(self, port: int) -> None:
        self.replica = Replica(index=0, port=port, pid=0, ready=True)
        self.refusals = 0

    def pick(self) -> Replica | None:
        self.replica.acquire()
        return self.replica

    async def wait(self, within: float | None) -> Replica | None:
        return self.pick()

    def refused(self, replica: Replica) -> None:
        self.refusals += 1

    def ready_count(self) -> int:
        return 1

    def in_flight(self, from_index: int = 0) -> int:
        return self.replica.in_flight


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def interceptor_for(port: int, **options: Any) -> AsyncIterator[tuple[Interceptor, Route]]:
    route = Route(ref="default/app", target="ProcessGroup default/app", pool=_OnePool(port))
    table = RoutingTable([RouteRule(route=route, hosts=(), path_prefixes=(), headers=(), order=(0.0, "", ""))])
    interceptor = Interceptor(table, [route], port=0, **options)
    await interceptor.start()
    try:
        yield interceptor, route
    finally:
        await interceptor.stop(1.0)


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """A response read off a raw connection: the head and a Content-Length body."""
    head = await _read_head(reader)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 15)
    finally:
        writer.close()


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive replica that answers every request with "hello" and counts nothing."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
            await writer.drain()


async def test_request_head_limits_get_414_431_and_400_and_the_interceptor_keeps_serving() -> None:
    async with upstream(_hello) as port, interceptor_for(port) as (interceptor, _):
        at = interceptor.bound_port
        long_target = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert b" 414 " in await _raw(at, long_target)
        big_field = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        assert b" 431 " in await _raw(at, big_field)
        many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"
        assert b" 431 " in await _raw(at, many)
        total = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %b\r\n" % (i, b"v" * 8000) for i in range(10))
        assert b" 431 " in await _raw(at, total + b"\r\n")
        assert b" 400 " in await _raw(at, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        assert b" 200 " in await _raw(at, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


async def test_a_head_not_read_in_time_gets_a_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interceptor_module, "HEAD_TIMEOUT", 0.5)
    async with upstream(_hello) as port, interceptor_for(port) as (interceptor, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", interceptor.bound_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = await asyncio.wait_for(reader.read(65536), 10)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert await asyncio.wait_for(reader.read(65536), 10) == b""  # and the connection is closed
        writer.close()


async def test_connect_gets_a_405() -> None:
    async with upstream(_hello) as port, interceptor_for(port) as (interceptor, route):
        answer = await _raw(interceptor.bound_port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405 ")
        assert route.requests == 0


async def test_upstream_connections_are_reused_and_a_stale_one_is_retried_once() -> None:
    connections = 0
    close_after_one = False

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
                await writer.drain()
                if close_after_one:  # a replica that closes kept-alive connections without saying so
                    writer.close()
                    return

    async with upstream(replica) as port, interceptor_for(port) as (interceptor, _):
        url = f"http://127.0.0.1:{interceptor.bound_port}/"
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.get(url) as response:
                    assert await response.read() == b"hello\n"
            assert connections == 1  # one kept-alive upstream connection served them all
            close_after_one = True
            for _ in range(3):
                async with session.get(url) as response:
                    assert response.status == 200  # the stale connection was retried on a new one
            assert connections >= 3


def _counting_replica(delay: float) -> tuple[Handler, dict[str, int]]:
    """A keep-alive replica that answers after `delay` and counts its open connections (now and at most)."""
    seen = {"open": 0, "peak": 0, "requests": 0}

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["open"] += 1
        seen["peak"] = max(seen["peak"], seen["open"])
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    await asyncio.sleep(delay)
                    seen["requests"] += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
                    await writer.drain()
        finally:
            seen["open"] -= 1
            writer.close()

    return replica, seen


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def test_a_burst_opens_at_most_max_connections_to_one_replica_and_the_rest_wait_their_turn() -> None:
    """A cold start releases every held request at once: they queue for the replica's connections, none fails."""
    replica, seen = _counting_replica(delay=0.05)
    async with upstream(replica) as port, interceptor_for(port, max_connections=4) as (interceptor, route):
        url = f"http://127.0.0.1:{interceptor.bound_port}/"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            one = functools.partial(_status, session, url)
            statuses = await asyncio.gather(*(one() for _ in range(60)))
    assert statuses == [200] * 60
    assert seen["requests"] == 60
    assert 1 < seen["peak"] <= 4  # capped, and still used in parallel
    assert route.stats.upstream_errors == 0
    # Counted while they waited (ebb_http_upstream_waits / ebb_http_upstream_waiting), none left waiting.
    assert 0 < route.stats.upstream_waits < 60
    assert route.stats.upstream_waiting == 0


async def test_a_client_that_leaves_while_waiting_for_a_connection_gives_its_turn_to_the_next() -> None:
    replica, seen = _counting_replica(delay=0.3)
    async with upstream(replica) as port, interceptor_for(port, max_connections=1) as (interceptor, route):
        url = f"http://127.0.0.1:{interceptor.bound_port}/"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            one = functools.partial(_status, session, url)
            first = asyncio.create_task(one())
            await eventually(lambda: seen["open"] == 1, what="the first request holds the only connection")
            leaver = asyncio.create_task(one())
            await asyncio.sleep(0.05)
            leaver.cancel()  # its client disconnects while it waits for the connection
            with contextlib.suppress(asyncio.CancelledError):
                await leaver
            later = [asyncio.create_task(one()) for _ in range(3)]
            assert await asyncio.gather(first, *later) == [200] * 4
            await eventually(lambda: route.in_flight == 0, what="nothing left in flight")
    assert seen["peak"] == 1
    assert seen["requests"] == 4  # the leaver never reached the replica


_ROOT = Path(__file__).resolve().parents[2]
_LIMITED_INTERCEPTOR = """
import asyncio, os, resource, sys
from ebb.http.eventloop import run_serving
from ebb.http.interceptor import Interceptor, Route
from ebb.http.routing import RouteRule, RoutingTable
from tests.http.test_transport import _OnePool

async def main() -> None:
    route = Route(ref="default/app", target="ProcessGroup default/app", pool=_OnePool(int(sys.argv[1])))
    table = RoutingTable([RouteRule(route=route, hosts=(), path_prefixes=(), headers=(), order=(0.0, "", ""))])
    interceptor = Interceptor(table, [route], port=0, max_connections=None)
    await interceptor.start()
    # Room for every client connection and 20 more descriptors: most upstream connects must wait for one.
    spare = len(os.listdir("/proc/self/fd")) + int(sys.argv[2]) + 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (spare, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(interceptor.bound_port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await interceptor.stop(1.0)
    print(route.stats.upstream_errors, flush=True)

run_serving(main())
"""


async def test_out_of_file_descriptors_an_upstream_connect_waits_for_one_instead_of_failing() -> None:
    """Without a connection cap (max_connections=None) a burst can exhaust the process's descriptors: an upstream
    connect that gets EMFILE waits for a connection to close and tries again; the client never sees a 502."""
    clients = 80
    replica, seen = _counting_replica(delay=0.1)
    root = _ROOT
    async with upstream(replica) as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _LIMITED_INTERCEPTOR,
            str(port),
            str(clients),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            at = int(await asyncio.wait_for(proc.stdout.readline(), 30))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

                async def one() -> tuple[int, bytes]:
                    async with session.get(f"http://127.0.0.1:{at}/") as response:
                        return response.status, await response.read()

                answers = await asyncio.gather(*(one() for _ in range(clients)))
            proc.stdin.close()
            upstream_errors = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
    assert [a for a in answers if a[0] != 200] == []
    assert upstream_errors == 0
    assert seen["peak"] < clients  # the shortage was real: not every request had a connection of its own


async def test_expect_100_continue_is_answered_and_the_body_forwarded() -> None:
    seen: list[bytes] = []

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(5)
        seen.append(head + body)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with upstream(replica) as port, interceptor_for(port) as (interceptor, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", interceptor.bound_port)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert await _read_head(reader) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        answer = await _answer(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 201 ") and answer.endswith(b"ok")
    assert seen and seen[0].endswith(b"\r\n\r\nhello") and b"expect" not in seen[0].lower()


async def test_chunked_bodies_pass_both_ways() -> None:
    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        body = await reader.readuntil(b"0\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
        await writer.drain()

    async with upstream(replica) as port, interceptor_for(port) as (interceptor, _):

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one ", b"two"):
                yield part

        url = f"http://127.0.0.1:{interceptor.bound_port}/"
        async with aiohttp.ClientSession() as session, session.post(url, data=parts()) as response:
            assert response.headers.get("Transfer-Encoding") == "chunked"
            assert await response.read() == b"4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n"


async def test_websocket_upgrade_is_tunnelled() -> None:
    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"upgrade: websocket" in head.lower()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(b"echo:" + data)
                await writer.drain()

    async with upstream(replica) as port, interceptor_for(port) as (interceptor, route):
        reader, writer = await asyncio.open_connection("127.0.0.1", interceptor.bound_port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = await _read_head(reader)
        assert head.startswith(b"HTTP/1.1 101 ") and b"upgrade: websocket" in head.lower()
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(9), 10) == b"echo:ping"
        assert route.in_flight == 1  # the tunnel is a request in flight until it closes
        writer.close()
        await eventually(lambda: route.in_flight == 0, what="tunnel closed")


async def test_stop_drains_requests_in_flight() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlate\n")
        await writer.drain()

    async with upstream(slow) as port:
        route = Route(ref="default/app", target="ProcessGroup default/app", pool=_OnePool(port))
        rule = RouteRule(route=route, hosts=(), path_prefixes=(), headers=(), order=(0.0, "", ""))
        interceptor = Interceptor(RoutingTable([rule]), [route], port=0)
        await interceptor.start()
        at = interceptor.bound_port
        reader, writer = await asyncio.open_connection("127.0.0.1", at)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await eventually(lambda: route.in_flight == 1, what="request in flight")
        await interceptor.stop(10.0)
        answer = await _answer(reader)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"late\n")
        assert b"connection: close" in answer.lower()
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", at)


def test_ebb_run_serves_on_uvloop_cold_start_and_scale_in() -> None:
    """The process supervisor (spawn, readiness, stop) and the interceptor under the serving loop."""
    assert loop_factory() is not None, "uvloop is a dependency: the serving loop is uvloop unless told otherwise"

    async def scenario() -> str:
        loop_type = type(asyncio.get_running_loop()).__module__
        port = free_ports(2)
        async with running(group("web"), httpso("web", port, spec="scaledownPeriod: 1\n", polling=0.2)) as run:
            async with aiohttp.ClientSession() as session, session.get(run.url + "/") as response:
                assert response.status == 200 and await response.text() == "hello from replica 0\n"
            await eventually(lambda: run.ready("web") == 0, within=30, what="back to zero")
            group_ = run.runtime.targets[("default", "web")]
            await eventually(lambda: len(group_.recent_exits()) == 1, what="replica stopped")
            assert not group_.recent_exits()[0].killed
        return loop_type

    assert run_serving(scenario()).startswith("uvloop")


def test_ebb_event_loop_asyncio_serves_on_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBB_EVENT_LOOP", "asyncio")

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_serving(loop_module()).startswith("asyncio")
    monkeypatch.setenv("EBB_EVENT_LOOP", "tokio")
    with pytest.raises(SystemExit, match="EBB_EVENT_LOOP='tokio'"):
        loop_factory()
    assert os.environ["EBB_EVENT_LOOP"] == "tokio"
