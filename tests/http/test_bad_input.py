"""Bad input at the interceptor: a clear answer, a count, and a crash of nothing. Real app processes and raw
sockets on loopback. (tests/http/test_interceptor.py covers a non-HTTP line, one 20 kB header, an unknown host
and a missing ProcessGroup's 503; here: the rest of the malformed heads, sizes at the limit, a held client
leaving, and a missing target as an Event, a metric and an API field.)"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from ebb.http.interceptor import MAX_FIELD_SIZE, MAX_LINE_SIZE
from tests.runtime._support import eventually

from ._support import ebb_run, free_ports, group, httpso, running

HOST = b"Host: web.local\r\n"

MALFORMED = {
    "unknown HTTP version": b"GET / HTTP/9.9\r\n" + HOST + b"\r\n",
    "bad method token": b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n",
    "header without a colon": b"GET / HTTP/1.1\r\n" + HOST + b"NoColonHere\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\n" + HOST + b"X-A : b\r\n\r\n",
    "NUL in a header value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
    "Content-Length not a number": b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n",
    "negative Content-Length": b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: -1\r\n\r\n",
    "two different Content-Lengths": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "Content-Length with chunked (smuggling)": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunk size not hex": (
        b"POST /echo HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
    "binary garbage": bytes(range(256)) * 4,
}


async def _exchange(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send `data` on a fresh connection; what comes back until the server closes (or `wait` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), wait)
    finally:
        writer.close()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


async def test_malformed_requests_get_a_400_without_a_traceback_and_the_interceptor_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_ports(2)
    async with running(group("web"), httpso("web", port, spec="hosts: [web.local]\n", min_replicas=1)) as run:
        await eventually(lambda: run.ready("web") == 1, what="replica ready")
        assert run.frontend.interceptor is not None
        listen = run.frontend.interceptor.bound_port
        route = next(iter(run.frontend.routes.values()))
        caplog.set_level(logging.INFO)
        answers = {name: _status(await _exchange(listen, data)) for name, data in MALFORMED.items()}
        assert answers == dict.fromkeys(MALFORMED, 400)
        # None of them reached the route: not counted, nothing in flight.
        assert (route.stats.requests, route.in_flight, route.stats.upstream_errors) == (0, 0, 0)
        ok = await _exchange(listen, b"GET / HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
        assert _status(ok) == 200 and ok.endswith(b"hello from replica 0\n")
    tracebacks = [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]
    assert tracebacks == []


async def _until_closed(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send `data` on a fresh connection; everything that comes back, until the server closes (a timeout if not)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


async def test_a_request_line_without_a_version_http_0_9_gets_a_400_and_the_interceptor_keeps_serving() -> None:
    """llhttp reads `GET /` (no version) as HTTP/0.9. On a catch-all route (no hosts: no Host header needed)
    it used to be proxied to the app as an HTTP/1.1 request; it is refused instead, and so is a request line
    naming HTTP/2.0 (505: HTTP/2 is not spoken as text)."""
    port = free_ports(2)
    async with running(group("web"), httpso("web", port, min_replicas=1)) as run:
        await eventually(lambda: run.ready("web") == 1, what="replica ready")
        assert run.frontend.interceptor is not None
        listen = run.frontend.interceptor.bound_port
        route = next(iter(run.frontend.routes.values()))
        body = (
            b"malformed request: the request line has no HTTP version (an HTTP/0.9 request); expected "
            b"'METHOD /path HTTP/1.1'\n"
        )
        for line in (b"GET /\r\n\r\n", b"POST /echo\r\n\r\n", b"GET / HTTP/0.9\r\n\r\n"):
            answer = await _until_closed(listen, line)  # the connection is closed after the answer
            head, _, content = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in head, answer
            assert content == body
        answer = await _until_closed(listen, b"GET / HTTP/2.0\r\n" + HOST + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
        assert answer.endswith(b"HTTP/2.0 is not supported here: send HTTP/1.1 (or HTTP/1.0)\n")
        assert (route.stats.requests, route.in_flight, route.stats.upstream_errors) == (0, 0, 0)
        for version in (b"1.1", b"1.0"):
            ok = await _until_closed(listen, b"GET / HTTP/" + version + b"\r\n" + HOST + b"Connection: close\r\n\r\n")
            assert _status(ok) == 200 and ok.endswith(b"hello from replica 0\n")
        assert route.stats.requests == 2


async def test_heads_at_the_size_limits_pass_and_beyond_them_get_a_414_or_431() -> None:
    port = free_ports(2)
    async with running(group("web"), httpso("web", port, spec="hosts: [web.local]\n", min_replicas=1)) as run:
        await eventually(lambda: run.ready("web") == 1, what="replica ready")
        assert run.frontend.interceptor is not None
        listen = run.frontend.interceptor.bound_port
        close = b"Connection: close\r\n"
        # The limits apply to a header's value and to the request target: at the limit passes, one byte more is
        # refused (431 Request Header Fields Too Large, 414 URI Too Long).
        value = b"v" * MAX_FIELD_SIZE
        at_limit = b"GET /headers HTTP/1.1\r\n" + HOST + close + b"X-Big: " + value + b"\r\n\r\n"
        answer = await _exchange(listen, at_limit)
        assert _status(answer) == 200 and value in answer
        over = b"GET /headers HTTP/1.1\r\n" + HOST + close + b"X-Big: " + value + b"v\r\n\r\n"
        assert _status(await _exchange(listen, over)) == 431
        target = b"/" + b"a" * (MAX_LINE_SIZE - 1)
        assert _status(await _exchange(listen, b"GET " + target + b" HTTP/1.1\r\n" + HOST + close + b"\r\n")) == 200
        assert _status(await _exchange(listen, b"GET " + target + b"a HTTP/1.1\r\n" + HOST + close + b"\r\n")) == 414
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(5000))  # 0.5 MB of small headers
        assert _status(await _exchange(listen, b"GET / HTTP/1.1\r\n" + HOST + many + b"\r\n")) == 431
        ok = await _exchange(listen, b"GET / HTTP/1.1\r\n" + HOST + close + b"\r\n")
        assert _status(ok) == 200


async def test_a_client_that_leaves_while_held_is_counted_and_the_cold_start_is_an_abandoned_event(
    tmp_path: Path,
) -> None:
    port = free_ports(2)
    docs = [
        group("slow", env="{name: APP_START_DELAY, value: '60'}"),
        httpso("slow", port, spec="hosts: [slow.local]\n"),
    ]
    async with ebb_run(tmp_path, *docs) as run:
        route = next(iter(run.frontend.routes.values()))
        assert run.frontend.interceptor is not None
        listen = run.frontend.interceptor.bound_port
        clients = []
        for _ in range(3):
            _, writer = await asyncio.open_connection("127.0.0.1", listen)
            writer.write(b"GET / HTTP/1.1\r\nHost: slow.local\r\n\r\n")
            await writer.drain()
            clients.append(writer)
        await eventually(lambda: route.held == 3, what="3 requests held")
        assert (await run.samples())[("ebb_http_requests_held", "slow")] == 3
        for writer in clients:
            writer.transport.abort()  # gone without a word
        await eventually(lambda: route.held == 0 and route.in_flight == 0, what="held requests dropped")
        await eventually(lambda: any(r[1] == "ColdStartAbandoned" for r in run.reasons()), what="event")
        samples = await run.samples()
        async with aiohttp.ClientSession() as http, http.get(run.url + "/", headers={"Host": "nowhere"}) as resp:
            assert resp.status == 404  # still serving
    assert samples[("ebb_http_held_abandoned_total", "slow")] == 3
    assert samples[("ebb_http_requests_held", "slow")] == 0
    assert samples[("ebb_http_requests_in_flight", "slow")] == 0
    assert samples[("ebb_http_hold_seconds_count", "slow")] == 3
    assert samples[("ebb_http_timeouts_total", "slow")] == 0
    [(kind, _, message)] = [r for r in run.reasons() if r[1] == "ColdStartAbandoned"]
    assert kind == "HTTPScaledObject" and message.startswith("all 3 requests held left after ")


async def test_a_route_whose_process_group_does_not_exist_is_an_event_a_metric_and_a_503(tmp_path: Path) -> None:
    port = free_ports(2)
    docs = [group("web"), httpso("web", port, spec="hosts: [web.local]\n"), httpso("ghost", port + 1)]
    async with ebb_run(tmp_path, *docs) as run:
        await eventually(lambda: any("ghost" in r[2] for r in run.reasons()), what="the problem in the event log")
        async with aiohttp.ClientSession() as http:
            async with http.get(run.url + "/", headers={"Host": "ghost.local"}) as resp:
                status, body = resp.status, await resp.text()
            async with http.get(run.admin + "/api/routes") as resp:
                routes = {r["name"]: r for r in (await resp.json())["routes"]}
        samples = await run.samples()
    assert status == 503 and "ProcessGroup default/ghost is not loaded" in body
    [(kind, reason, message)] = [r for r in run.reasons() if "ghost" in r[2]]
    assert (kind, reason) == ("HTTPScaledObject", "ScalingProblem")
    assert "spec.scaleTargetRef: ProcessGroup default/ghost is not loaded" in message
    assert samples[("ebb_http_route_broken", "ghost")] == 1
    assert samples[("ebb_http_route_broken", "web")] == 0
    assert "ProcessGroup default/ghost is not loaded" in routes["ghost"]["broken"]
    assert routes["web"]["broken"] is None


async def test_a_head_trickled_byte_by_byte_is_cut_off() -> None:
    port = free_ports(2)
    async with running(group("web"), httpso("web", port, spec="hosts: [web.local]\n", min_replicas=1)) as run:
        assert run.frontend.interceptor is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", run.frontend.interceptor.bound_port)
        writer.write(b"GET / HTTP/1.1\r\n" + HOST)
        deadline = time.monotonic() + 15.0
        closed = False
        i = 0
        while time.monotonic() < deadline and not closed:
            try:
                writer.write(b"X-Slow-%d: 1\r\n" % i)
                await writer.drain()
                closed = await asyncio.wait_for(reader.read(1), 1.0) in (b"", b"H")
            except TimeoutError:
                pass
            except ConnectionError:
                closed = True
            i += 1
        writer.close()
        assert closed, "a head still unfinished after 15 s keeps its connection"
