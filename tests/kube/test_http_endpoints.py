"""Which endpoints the interceptor forwards to: Service ports, EndpointSlice readiness, the pool's choices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ebb.kube.http_endpoints import EndpointPool, ready_endpoints, service_port_name

SERVICE = {
    "spec": {
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics", "port": 9100, "targetPort": "metrics"},
        ]
    }
}


@pytest.mark.parametrize(
    ("port", "port_name", "expected"),
    [(80, None, "http"), (9100, None, "metrics"), (None, "metrics", "metrics"), (8080, None, None), (None, "x", None)],
)
def test_service_port_name(port: int | None, port_name: str | None, expected: str | None) -> None:
    assert service_port_name(SERVICE, port, port_name) == expected


def test_an_unnamed_single_port_is_the_empty_name() -> None:
    assert service_port_name({"spec": {"ports": [{"port": 80}]}}, 80, None) == ""
    assert ready_endpoints([slice_with([endpoint("10.0.0.1")], port_name=None)], "") == [("10.0.0.1", 8080)]


def endpoint(address: str, ready: bool | None = True, **conditions: Any) -> dict[str, Any]:
    cond = {} if ready is None else {"ready": ready}
    return {"addresses": [address], "conditions": {**cond, **conditions}}


def slice_with(
    endpoints: list[dict[str, Any]], port_name: str | None = "http", port: int = 8080, family: str = "IPv4"
) -> dict[str, Any]:
    ports = [{"port": port} if port_name is None else {"name": port_name, "port": port}]
    return {"addressType": family, "ports": ports, "endpoints": endpoints}


def test_ready_endpoints_follow_the_ready_condition_and_the_port_name() -> None:
    slices = [
        slice_with([endpoint("10.0.0.1"), endpoint("10.0.0.2", ready=False), endpoint("10.0.0.3", ready=None)]),
        slice_with([endpoint("10.0.0.4")], port_name="metrics", port=9100),
        slice_with([endpoint("fd00::5")], family="IPv6"),
        {"addressType": "IPv4", "endpoints": [endpoint("10.0.0.6")]},  # no ports yet
    ]
    # Not ready: out; no condition: ready (the EndpointSlice API's advice); another port: not this route's.
    assert ready_endpoints(slices, "http") == [("10.0.0.1", 8080), ("10.0.0.3", 8080), ("[fd00::5]", 8080)]
    assert ready_endpoints(slices, "metrics") == [("10.0.0.4", 9100)]


def test_a_terminating_endpoint_is_not_ready() -> None:
    assert ready_endpoints([slice_with([endpoint("10.0.0.1", ready=False, terminating=True)])], "http") == []


async def test_pool_picks_the_least_busy_and_stops_picking_an_endpoint_that_left() -> None:
    pool = EndpointPool()
    pool.update([("10.0.0.1", 80), ("10.0.0.2", 80)])
    first = pool.pick()
    second = pool.pick()
    assert first is not None and second is not None and {first.host, second.host} == {"10.0.0.1", "10.0.0.2"}
    first.release()
    third = pool.pick()
    assert third is first  # the one without a request in flight
    pool.update([("10.0.0.2", 80)])  # 10.0.0.1 is scaled in: its request finishes, it gets no new one
    assert first.gone and first.in_flight == 1
    assert all(pool.pick() is second for _ in range(3))
    assert pool.ready_count() == 1


async def test_a_held_request_gets_the_first_endpoint_that_becomes_ready() -> None:
    pool = EndpointPool()
    waiting = asyncio.create_task(pool.wait(within=10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.update([("10.0.0.9", 8080)])
    replica = await asyncio.wait_for(waiting, 1)
    assert replica is not None and replica.url == "http://10.0.0.9:8080" and replica.in_flight == 1


async def test_a_wait_without_endpoints_ends_after_its_deadline() -> None:
    assert await EndpointPool().wait(within=0.05) is None


async def test_a_refused_endpoint_is_left_out_then_comes_back() -> None:
    pool = EndpointPool()
    pool.update([("10.0.0.1", 80)])
    replica = pool.pick()
    assert replica is not None
    replica.release()
    pool.refused(replica)
    assert pool.pick() is None
    back = await pool.wait(within=5)  # REFUSED_PAUSE later, without a slice change
    assert back is replica
