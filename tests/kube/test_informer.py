"""The informer behind `ebb interceptor`: list, watch from the listing's version, list again when the watch fails.

Against a small stand-in API server (aiohttp on loopback, not Kubernetes): it serves one list of Services and a
watch that sends one change and then 410 Gone, as an API server does when a watch's version is too old. Objects
that went while the watch was down must go from the informer too: only a new listing can tell.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from ebb.kube.client import client_for_url
from ebb.kube.http_interceptor import SERVICE
from ebb.kube.informer import Informer


def service(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


class StandIn:
    def __init__(self) -> None:
        self.objects = {"a": service("a", "10"), "b": service("b", "10")}
        self.version = 10
        self.lists = 0
        self.watches: list[str] = []
        self.closing = asyncio.Event()

    async def services(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") not in ("true", "1"):
            self.lists += 1
            return web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceList",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": list(self.objects.values()),
                }
            )
        self.watches.append(request.query.get("resourceVersion", ""))
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if len(self.watches) == 1:
            self.version = 11
            self.objects["a"] = {**service("a", "11"), "spec": {"ports": [{"name": "http", "port": 81}]}}
            await response.write(json.dumps({"type": "MODIFIED", "object": self.objects["a"]}).encode() + b"\n")
            # While the watch is down: b goes, c comes; then the server says the watch's version is too old.
            del self.objects["b"]
            self.objects["c"] = service("c", "12")
            self.version = 12
            gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        await self.closing.wait()  # the second watch stays open until the test ends
        return response


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    server = StandIn()
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/services", server.services)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield server, f"http://127.0.0.1:{port}"
    server.closing.set()
    await runner.cleanup()


async def test_a_failed_watch_lists_again_and_forgets_what_went_meanwhile(stand_in: tuple[StandIn, str]) -> None:
    server, url = stand_in
    client = client_for_url(url)
    changes: list[set[str]] = []
    informer = Informer(client, SERVICE, namespace="ns", what="Services")
    informer.on_change = lambda: changes.append({name for _, name in informer.objects})
    task = asyncio.create_task(informer.run())
    try:
        for _ in range(200):
            if server.lists == 2 and len(server.watches) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
    assert server.watches == ["10", "12"]  # each watch starts from its listing's version
    assert changes == [{"a", "b"}, {"a", "b"}, {"a", "c"}]
    assert informer.objects[("ns", "a")]["spec"]["ports"][0]["port"] == 81
    assert informer.synced.is_set()
