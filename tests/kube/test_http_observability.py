"""`ebb interceptor` seen from outside, against the fake API server: cold starts as Kubernetes Events on the
HTTPScaledObject, the per-route series on the admin port's /metrics, and /api/routes. The app is a real HTTP
server process on 127.0.0.2 (the pod); the test writes the EndpointSlices the endpoints controller would."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ebb.kube.client import EVENT, AsyncClient, to_dict
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT, INTERCEPTOR_ROUTE, KubeInterceptor

from . import test_http_kube
from ._fakecluster import Cluster, eventually
from .test_http_kube import APP_HOST, NS, add_service, get, http_scaled_object, interceptor, set_endpoints
from .test_http_routes import interceptor_route

pytestmark = pytest.mark.kmock(cls=Cluster)

# The fixtures of test_http_kube: the fake API server's client, and the app process standing in for a pod.
client = test_http_kube.client
app = test_http_kube.app


async def listening(host: str, port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"nothing listens on {host}:{port}")


async def events_of(api: AsyncClient, name: str) -> list[dict[str, Any]]:
    found = [to_dict(e) async for e in api.list(EVENT, namespace=NS)]
    return [e for e in found if (e.get("involvedObject") or {}).get("name") == name]


async def admin(running: KubeInterceptor, path: str) -> tuple[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(running.admin.url + path) as resp:
        assert resp.status == 200
        if path == "/metrics":
            return await resp.text(), None
        return "", await resp.json()


def samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("name", "") + (f"@{s.labels['le']}" if "le" in s.labels else "")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_a_cold_start_is_an_event_on_the_http_scaled_object_and_counted_in_metrics_against_fake_apiserver(
    client: AsyncClient, app: int
) -> None:
    await add_service(client, "web")
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.example", "web", pathPrefixes=["/"])))
    async with interceptor(client) as running:
        await eventually(lambda: ("ns", "web") in running.routes.routes, "route")
        request = asyncio.create_task(get(running.port, "web.example"))
        await eventually(lambda: running.routes.routes[("ns", "web")].held == 1, "request held")
        await listening(APP_HOST, app)  # as a readiness probe would have it
        await set_endpoints(client, "web", "http", app, [APP_HOST])  # the pod became ready
        assert await request == (200, "hello from the pod\n")

        async def posted() -> list[dict[str, Any]]:
            return [e for e in await events_of(client, "web") if e["reason"] == "ColdStart"]

        for _ in range(100):
            if await posted():
                break
            await asyncio.sleep(0.05)
        [event] = await posted()
        text, _ = await admin(running, "/metrics")
        _, routes = await admin(running, "/api/routes")
    assert event["type"] == "Normal" and event["involvedObject"]["kind"] == "HTTPScaledObject"
    assert event["involvedObject"]["namespace"] == NS
    assert event["message"].startswith("held 1 request for ") and event["message"].endswith(" while scaling 0→1")
    values = samples(text)
    assert values[("ebb_http_requests_total", "web")] == 1
    assert values[("ebb_http_cold_starts_total", "web")] == 1
    assert values[("ebb_http_hold_seconds_count", "web")] == 1
    assert values[("ebb_http_ready_replicas", "web")] == 1
    assert values[("ebb_http_route_broken", "web")] == 0
    [route] = routes["routes"]
    assert (route["kind"], route["namespace"], route["name"], route["hosts"]) == (
        "HTTPScaledObject",
        NS,
        "web",
        ["web.example"],
    )
    assert route["target"] == f"Service {NS}/web" and route["last_cold_start_message"] == event["message"]


async def test_held_requests_past_condition_wait_are_a_cold_start_timed_out_event_against_fake_apiserver(
    client: AsyncClient,
) -> None:
    await add_service(client, "slow")
    body = http_scaled_object("slow", "slow.example", "slow", timeouts={"conditionWait": "1s"})
    await client.create(HTTP_SCALED_OBJECT(body))
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("gone", "gone.example", "no-such-service")))
    async with interceptor(client) as running:
        await eventually(lambda: len(running.routes.routes) == 2, "routes")
        status, text = await get(running.port, "slow.example")
        assert (status, text) == (
            504,
            f"HTTPScaledObject {NS}/slow: no replica of Service {NS}/slow became ready within 1s\n",
        )
        status, text = await get(running.port, "gone.example")
        assert status == 503 and f"Service {NS}/no-such-service does not exist" in text
        for _ in range(100):
            if await events_of(client, "slow"):
                break
            await asyncio.sleep(0.05)
        metrics, _ = await admin(running, "/metrics")
    [event] = await events_of(client, "slow")
    assert (event["reason"], event["type"]) == ("ColdStartTimedOut", "Warning")
    assert "reached conditionWait (1s) with no ready replica" in event["message"]
    values = samples(metrics)
    assert values[("ebb_http_timeouts_total", "slow")] == 1
    assert values[("ebb_http_route_broken", "gone")] == 1
    assert values[("ebb_http_route_broken", "slow")] == 0


async def test_an_interceptor_routes_cold_start_is_an_event_on_the_route_and_labelled_as_one_against_fake_apiserver(
    client: AsyncClient, app: int
) -> None:
    await add_service(client, "api")
    await client.create(INTERCEPTOR_ROUTE(interceptor_route("api", "api.example", "api")))
    async with interceptor(client) as running:
        await eventually(lambda: ("ns", "api") in running.routes.routes, "route")
        request = asyncio.create_task(get(running.port, "api.example"))
        await eventually(lambda: running.routes.routes[("ns", "api")].held == 1, "request held")
        await listening(APP_HOST, app)
        await set_endpoints(client, "api", "http", app, [APP_HOST])
        assert await request == (200, "hello from the pod\n")
        for _ in range(100):
            if any(e["reason"] == "ColdStart" for e in await events_of(client, "api")):
                break
            await asyncio.sleep(0.05)
        text, _ = await admin(running, "/metrics")
    [event] = [e for e in await events_of(client, "api") if e["reason"] == "ColdStart"]
    assert event["involvedObject"]["kind"] == "InterceptorRoute"
    assert event["message"].startswith("held 1 request for ")
    assert 'ebb_http_cold_starts_total{name="api",namespace="ns",type="InterceptorRoute"} 1.0' in text
