"""Busy-aware scale-in against a real API server and its ReplicaSet controller (`[against_real_apiserver]`).

Runs only when EBB_TEST_KUBECONFIG names a cluster (see test_operator_e2e); the fake API server has no
ReplicaSet controller, so tests/kube/test_drain.py plays its ranking there (tests/kube/_replicaset.py). No kubelet
is needed: the pods stay Pending, unscheduled and not ready, so they all rank alike until
`controller.kubernetes.io/pod-deletion-cost`, which then decides (`ActivePodsWithRanks`, v1.28.0). The test gives
each pod a `status.podIP` (a loopback alias, which a Pod's status accepts) where a small server in this process
answers the busy probe: 200 busy, 204 idle.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from ebb.kube.client import EVENT, POD, SCALED_OBJECT, AsyncClient, default_client, global_resource, to_dict
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT

from ._fakecluster import eventually
from .test_operator_e2e import DEPLOYMENT, REAL_KUBECONFIG, deployment, free_port, single_operator

NAMESPACE = global_resource("", "v1", "Namespace", "namespaces")


@pytest.fixture(params=[pytest.param("real", id="against_real_apiserver")])
async def real(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[AsyncClient, str]]:
    if not REAL_KUBECONFIG:
        pytest.skip("EBB_TEST_KUBECONFIG names no real cluster's kubeconfig")
    monkeypatch.setenv("KUBECONFIG", REAL_KUBECONFIG)
    client = default_client()
    ns = f"ebb-e2e-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACE({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    try:
        yield client, ns
    finally:
        # The operator is gone: drop KEDA's finalizer from what is left, or the namespace never goes.
        for res in (SCALED_OBJECT, HTTP_SCALED_OBJECT):
            async for obj in client.list(res, namespace=ns):
                with contextlib.suppress(Exception):
                    await client.patch(
                        res,
                        obj.metadata.name,
                        {"metadata": {"finalizers": None}},
                        namespace=ns,
                        patch_type=PatchType.MERGE,
                    )
        await client.delete(NAMESPACE, ns)
        await client.aclose()


class BusyServers:
    """One busy endpoint per pod IP (loopback aliases); `status[ip]` is what it answers."""

    def __init__(self, ips: list[str], port: int) -> None:
        self.ips, self.port = ips, port
        self.status = dict.fromkeys(ips, 204)
        self.runners: list[web.AppRunner] = []

    async def start(self) -> None:
        for ip in self.ips:

            async def busy(request: web.Request, ip: str = ip) -> web.Response:
                return web.Response(status=self.status[ip])

            app = web.Application()
            app.router.add_get("/busy", busy)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, ip, self.port).start()
            self.runners.append(runner)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def live_pods(client: AsyncClient, ns: str) -> list[dict[str, Any]]:
    pods = [to_dict(p) async for p in client.list(POD, namespace=ns)]
    return sorted((p for p in pods if not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])


async def test_the_replicaset_controller_deletes_the_idle_pods_and_ebb_holds_back_for_busy_ones(
    real: tuple[AsyncClient, str],
) -> None:
    client, ns = real
    await client.create(DEPLOYMENT(deployment("worker", ns, 4)))
    pods = await eventually(lambda: live_pods(client, ns), "the ReplicaSet's 4 pods", ok=lambda p: len(p) == 4)
    subnet = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
    ips = {p["metadata"]["name"]: f"{subnet}.{10 + i}" for i, p in enumerate(pods)}
    for name, ip in ips.items():
        status = {"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}
        await client.patch(Pod.Status, name, status, namespace=ns, patch_type=PatchType.MERGE)
    names = sorted(ips)
    busy = [names[0], names[2]]
    servers = BusyServers(list(ips.values()), free_port())
    for name in busy:
        servers.status[ips[name]] = 200
    await servers.start()
    redis = aioredis.Redis(host="127.0.0.1", port=6379)
    key = f"ebb-e2e-{uuid.uuid4().hex}"
    await redis.rpush(key, "a", "b", "c", "d")
    replica = single_operator(ns)
    try:
        so = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {
                "name": "worker",
                "namespace": ns,
                "annotations": {"ebb.dev/busy-probe": f"http://:{servers.port}/busy"},
            },
            "spec": {
                "scaleTargetRef": {"name": "worker"},
                "pollingInterval": 1,
                "minReplicaCount": 1,
                "maxReplicaCount": 4,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}
                },
                "triggers": [
                    {"type": "redis", "metadata": {"address": "127.0.0.1:6379", "listName": key, "listLength": "1"}}
                ],
            },
        }
        await client.create(SCALED_OBJECT(so))
        await redis.ltrim(key, 0, 0)  # one item: the core wants 1 of the 4

        async def left() -> list[str]:
            replica.check()
            return [p["metadata"]["name"] for p in await live_pods(client, ns)]

        # The two idle pods go (the ReplicaSet controller's choice, by ebb's deletion costs); the busy ones stay
        # while they are busy.
        assert await eventually(left, "the idle pods deleted", ok=lambda n: len(n) == 2) == busy
        deployment_now = to_dict(await client.get(DEPLOYMENT, "worker", namespace=ns))
        assert deployment_now["spec"]["replicas"] == 2
        costs = {
            p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                "controller.kubernetes.io/pod-deletion-cost"
            )
            for p in await live_pods(client, ns)
        }
        assert costs == dict.fromkeys(busy, "100")

        servers.status[ips[busy[1]]] = 204  # one finished its job: it goes, the other stays
        assert await eventually(left, "the now idle pod deleted", ok=lambda n: len(n) == 1) == [busy[0]]
        events = [to_dict(e) async for e in client.list(EVENT, namespace=ns)]
        waiting = [e["message"] for e in events if e["reason"] == "WaitingForBusyPods"]
        assert any("scaling 4→1: 2 idle pods marked for removal, waiting for 1 of 2 busy pods" in m for m in waiting)
        assert not any("-0 s" in m for m in waiting), waiting
        replica.check()
    finally:
        await replica.stop()
        await servers.stop()
        await redis.delete(key)
        await redis.aclose()
    assert replica.error is None
