"""The interceptor's routes seen through `ebb run`'s outputs: ebb_http_* in /metrics, /api/routes, and the
cold-start Events in the event log. Real app processes on loopback, real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ebb.http.local import HTTPFrontend, HTTPOptions
from ebb.observe.services import Services
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from tests.runtime._support import Recorder, eventually

from ._support import free_ports, group, httpso


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    services: Services
    frontend: HTTPFrontend
    state_dir: Path

    @property
    def url(self) -> str:
        assert self.frontend.interceptor is not None
        return f"http://127.0.0.1:{self.frontend.interceptor.bound_port}"

    @property
    def admin(self) -> str:
        assert self.services.served is not None
        return self.services.served.url

    def reasons(self) -> list[tuple[str, str, str]]:
        path = self.state_dir / "events.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [(e["kind"], e["reason"], e["message"]) for e in lines]

    async def samples(self) -> dict[tuple[str, str], float]:
        async with aiohttp.ClientSession() as http, http.get(self.admin + "/metrics") as resp:
            text = await resp.text()
        return {
            (s.name, s.labels.get("name", "") + ("" if "le" not in s.labels else "@" + s.labels["le"])): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("ebb_http_")
        }


@asynccontextmanager
async def ebb_run(tmp_path: Path, *docs: str) -> AsyncIterator[Run]:
    """What `ebb run` wires: Services (metrics, event log, API) and the HTTP frontend, on free ports."""
    loaded = load_text("---\n".join(docs))
    assert not loaded.errors, [str(e) for e in loaded.errors]
    state_dir = tmp_path / ".ebb"
    services = Services(state_dir, metrics_port=free_port(), dashboard=True, history=True)
    frontend = HTTPFrontend(HTTPOptions(port=0))
    services.http_routes = frontend.route_infos
    observer = services.observers(Recorder(), [*loaded.resources.scaled_objects()])
    runtime = LocalRuntime(loaded, observer, RuntimeOptions(state_path=None, output=None), [frontend])
    await services.start()
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: frontend.interceptor is not None and frontend.interceptor._listener is not None,
                         what="interceptor listening")  # fmt: skip
        yield Run(services, frontend, state_dir)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.stop()


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
    for family in ("upstream_errors", "timeouts", "rejected", "held_abandoned"):
        assert after[(f"ebb_http_{family}_total", "web")] == 0
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
