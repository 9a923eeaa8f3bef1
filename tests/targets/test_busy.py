"""The busy-probe rules (pure) and the HTTP prober against a real server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from ebb.targets.busy import (
    BusyState,
    CauseReporter,
    describe_duration,
    expand_path,
    interpret_http,
    probe_file,
    probe_http,
    removal_order,
)


@pytest.mark.parametrize(
    ("status", "body", "kind", "in_flight"),
    [
        (204, b"", "idle", None),
        (200, b"", "busy", None),
        (200, b"working", "busy", None),
        (200, b'{"busy": true}', "busy", None),
        (200, b'{"busy": false}', "idle", None),
        (200, b'{"inFlight": 3}', "busy", 3),
        (200, b'{"inFlight": 0}', "idle", 0),
        (200, b'{"busy": true, "inFlight": 0}', "busy", 0),
        (200, b'{"busy": false, "inFlight": 2}', "busy", 2),
        (200, b'{"busy": "yes"}', "unknown", None),
        (200, b'{"inFlight": -1}', "unknown", None),
        (200, b'{"inFlight": true}', "unknown", None),
        (200, b'{"other": 1}', "unknown", None),
        (200, b"[1, 2]", "unknown", None),
        (200, b"{not json", "unknown", None),
        (500, b"", "unknown", None),
        (302, b"", "unknown", None),
    ],
)
def test_interpret_http(status: int, body: bytes, kind: str, in_flight: int | None) -> None:
    state = interpret_http(status, body)
    assert state.kind == kind
    assert state.in_flight == in_flight
    assert state.busy == (kind != "idle")
    if kind == "unknown":
        assert state.reason


def test_unknown_states_say_what_was_answered() -> None:
    assert "HTTP 500" in interpret_http(500, b"").reason
    assert "not JSON" in interpret_http(200, b"{oops").reason
    assert "'{oops'" in interpret_http(200, b"{oops").reason


def test_probe_file(tmp_path: Path) -> None:
    busy_file = tmp_path / "busy-1"
    assert probe_file(busy_file).idle
    busy_file.write_text("")
    assert probe_file(busy_file).kind == "busy"
    assert probe_file(busy_file / "below-a-file").idle  # a parent that is a file: nothing can exist there


def test_expand_path() -> None:
    assert expand_path("/tmp/w-{index}.busy", 3) == "/tmp/w-3.busy"
    assert expand_path("/tmp/w-$EBB_REPLICA_INDEX.busy", 4) == "/tmp/w-4.busy"
    assert expand_path("/tmp/${EBB_REPLICA_INDEX}/busy", 5) == "/tmp/5/busy"
    assert expand_path("/tmp/$EBB_REPLICA_INDEXES", 5) == "/tmp/$EBB_REPLICA_INDEXES"


def test_removal_order_idle_first_then_fewest_in_flight_then_unknown() -> None:
    states = {
        0: BusyState("idle"),
        1: BusyState("busy", in_flight=5),
        2: BusyState("unknown", "timeout"),
        3: BusyState("idle"),
        4: BusyState("busy", in_flight=1),
        5: BusyState("busy"),
    }
    assert removal_order(states) == [3, 0, 5, 4, 1, 2]  # a busy worker without a count weighs as one


def test_cause_reporter_reports_each_cause_once() -> None:
    reporter = CauseReporter()
    assert reporter.report("w-1", "timeout")
    assert not reporter.report("w-1", "timeout")
    assert reporter.report("w-1", "HTTP 500")
    assert reporter.report("w-2", "HTTP 500")
    reporter.clear("w-1")
    assert reporter.report("w-1", "HTTP 500")
    reporter.forget(["w-1"])
    assert reporter.report("w-2", "HTTP 500")


def test_describe_duration() -> None:
    assert describe_duration(45) == "45 s"
    assert describe_duration(240) == "4 min"
    assert describe_duration(5400) == "1.5 h"


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def busy(request: web.Request) -> web.Response:
        return web.json_response({"inFlight": 2})

    async def idle(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"{busy: maybe")

    app = web.Application()
    app.add_routes([web.get("/busy", busy), web.get("/idle", idle), web.get("/slow", slow), web.get("/bad", garbage)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_probe_http_against_a_real_server(server: str) -> None:
    assert (await probe_http(server + "/busy", 1.0)) == BusyState("busy", in_flight=2)
    assert (await probe_http(server + "/idle", 1.0)).idle
    slow = await probe_http(server + "/slow", 0.2)
    assert slow.kind == "unknown" and "within 0.2s" in slow.reason
    bad = await probe_http(server + "/bad", 1.0)
    assert bad.kind == "unknown" and "not JSON" in bad.reason
    missing = await probe_http(server + "/nothing-here", 1.0)
    assert missing.kind == "unknown" and "HTTP 404" in missing.reason


async def test_probe_http_refused_is_unknown() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = await probe_http(f"http://127.0.0.1:{port}/busy", 1.0)
    assert state.kind == "unknown" and "cannot connect" in state.reason
