"""The interceptor's routes seen through `ebb run`'s outputs: ebb_http_* in /metrics, /api/routes, and the
cold-start Events in the event log. Real app processes on loopback, real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.runtime._support import eventually

from ._support import ebb_run, free_ports, group, httpso


async def test_a_cold_start_is_counted_in_metrics_listed_in_api_routes_and_recorded_as_an_event(tmp_path: Path) -> None:
    port = free_ports(2)
    docs = [group("web"), httpso("web", port, spec="hosts: [web.local]\npathPrefixes: [/api]\n")]
    async with ebb_run(tmp_path, *docs) as run:
        before = await run.samples()
        assert before[("ebb_http_requests_total", "web")] == 0
        assert before[("ebb_http_ready_replicas", "web")] == 0
        assert before[("ebb_http_route_broken", "web")] == 0
        async with aiohttp.ClientSession() as http:

            async def get() -> int:
                async with http.get(run.url + "/api/x", headers={"Host": "web.local"}) as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(get() for _ in range(5)))
            assert statuses == [200] * 5
            await eventually(lambda: any(r[1] == "ColdStart" for r in run.reasons()), what="ColdStart event")
            after = await run.samples()
            async with http.get(run.admin + "/api/routes") as resp:
                routes = (await resp.json())["routes"]
    assert after[("ebb_http_requests_total", "web")] == 5
    assert after[("ebb_http_cold_starts_total", "web")] == 1
    assert after[("ebb_http_hold_seconds_count", "web")] == 5
    assert after[("ebb_http_hold_seconds_bucket", "web@+Inf")] == 5
    assert after[("ebb_http_hold_seconds_sum", "web")] > 0
    assert after[("ebb_http_ready_replicas", "web")] == 1
    assert after[("ebb_http_requests_in_flight", "web")] == 0
    assert after[("ebb_http_requests_held", "web")] == 0
    for family in ("upstream_errors", "timeouts", "rejected", "held_abandoned", "upstream_waits"):
        assert after[(f"ebb_http_{family}_total", "web")] == 0
    assert after[("ebb_http_upstream_waiting", "web")] == 0  # 5 requests: far below 1,024 connections
    [(kind, _, message)] = [r for r in run.reasons() if r[1] == "ColdStart"]
    assert kind == "HTTPScaledObject"
    assert message.startswith("held 5 requests for ") and message.endswith(" s while scaling 0→1")
    [route] = routes
    assert (route["kind"], route["namespace"], route["name"]) == ("HTTPScaledObject", "default", "web")
    assert (route["hosts"], route["paths"], route["ready_replicas"]) == (["web.local"], ["/api"], 1)
    assert (route["requests"], route["cold_starts"], route["held"], route["in_flight"]) == (5, 1, 0, 0)
    assert route["last_cold_start"] is not None and route["last_cold_start_message"] == message
    assert route["rate"] > 0 and route["broken"] is None


async def test_held_requests_that_reach_condition_wait_are_a_504_a_timeout_and_one_cold_start_timed_out_event(
    tmp_path: Path,
) -> None:
    port = free_ports(2)
    docs = [
        group("slow", env="{name: APP_START_DELAY, value: '60'}"),
        httpso("slow", port, spec="timeouts: {conditionWait: 1s}\n"),
    ]
    async with ebb_run(tmp_path, *docs) as run, aiohttp.ClientSession() as http:

        async def get() -> int:
            async with http.get(run.url + "/") as resp:
                await resp.read()
                return resp.status

        assert await asyncio.gather(get(), get(), get()) == [504, 504, 504]
        await eventually(lambda: any(r[1] == "ColdStartTimedOut" for r in run.reasons()), what="event")
        samples = await run.samples()
    assert samples[("ebb_http_timeouts_total", "slow")] == 3
    assert samples[("ebb_http_cold_starts_total", "slow")] == 1
    assert samples[("ebb_http_hold_seconds_bucket", "slow@0.5")] == 0
    assert samples[("ebb_http_hold_seconds_bucket", "slow@2.5")] == 3
    timed_out = [r for r in run.reasons() if r[1] == "ColdStartTimedOut"]
    assert len(timed_out) == 1 and "reached conditionWait (1s) with no ready replica" in timed_out[0][2]
    assert not any(r[1] == "ColdStart" for r in run.reasons())


async def test_an_interceptor_route_is_labelled_as_one_and_lists_the_hosts_and_paths_of_all_its_rules(
    tmp_path: Path,
) -> None:
    from .test_interceptor_route import _route_docs

    docs = _route_docs("api", free_ports(2))
    docs[1] = docs[1].replace(
        "rules: [{hosts: [api.local]}]",
        "rules: [{hosts: [api.local], paths: [{value: /v1}]}, {hosts: [api.example.com], paths: [{value: /v2}]}]",
    )
    async with ebb_run(tmp_path, *docs) as run, aiohttp.ClientSession() as http:
        for host, path in (("api.local", "/v1/x"), ("api.example.com", "/v2")):
            async with http.get(run.url + path, headers={"Host": host}) as resp:
                assert resp.status == 200
        async with http.get(run.admin + "/metrics") as resp:
            text = await resp.text()
        async with http.get(run.admin + "/api/routes") as resp:
            [route] = (await resp.json())["routes"]
        await eventually(lambda: any(r[1] == "ColdStart" for r in run.reasons()), what="ColdStart event")
    assert 'ebb_http_requests_total{name="api",namespace="default",type="InterceptorRoute"} 2.0' in text
    assert (route["kind"], route["hosts"], route["paths"]) == ("InterceptorRoute", ["api.local", "api.example.com"],
                                                               ["/v1", "/v2"])  # fmt: skip
    [(kind, _, _)] = [r for r in run.reasons() if r[1] == "ColdStart"]
    assert kind == "InterceptorRoute"
