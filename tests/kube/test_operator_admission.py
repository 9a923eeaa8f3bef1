"""The operator's reconcile makes KEDA's conflict checks from the watch-fed index, against kmock.

Without an index (tests, tools) the controller lists the namespace (see test_operator.py); with a loaded one it
looks the workload up instead, and reads the other object only to confirm a hit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock as km
import kopf
import pytest

from ebb.kube.admission import ConflictIndex, Denial
from ebb.kube.client import HPA, SCALED_OBJECT, AsyncClient, client_for_url
from ebb.kube.operator import OperatorOptions, ScaledObjectController
from ebb.kube.runner import register_handlers
from ebb.kube.webhook import KubeCluster, load_conflicts
from ebb.spec import parse_object
from ebb.spec.models import ScaledObject

from ._fakecluster import Cluster, eventually, use_kubeconfig

NS = "ns"
SO_RES = km.resource("keda.sh/v1alpha1/scaledobjects")
DEPLOY_RES = km.resource("apps/v1/deployments")
HPA_RES = km.resource("autoscaling/v2/horizontalpodautoscalers")
#: A trigger that reads no server: the tests are about the checks before the scalers.
CRON = {
    "type": "cron",
    "metadata": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": "2"},
}


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator) -> km.KubernetesEmulator:
    for res in (SO_RES, DEPLOY_RES, HPA_RES, km.resource("v1/events"), km.resource("v1/secrets")):
        kmock.resources[res] = {}
    kmock.resources[km.resource("v1/configmaps")] = {}
    kmock.resources[km.resource("apiextensions.k8s.io/v1/customresourcedefinitions")] = {}
    kmock.objects[DEPLOY_RES, NS, "web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app"}]}}},
        "status": {"replicas": 1},
    }
    return kmock


@pytest.fixture
async def client(cluster: km.KubernetesEmulator) -> AsyncIterator[AsyncClient]:
    client = client_for_url(str(cluster.url))
    yield client
    await client.aclose()


@pytest.fixture
async def controller(client: AsyncClient) -> AsyncIterator[ScaledObjectController]:
    ctl = ScaledObjectController(client, OperatorOptions(conflicts=ConflictIndex()))
    ctl.autostart = False
    yield ctl
    await ctl.close()


def scaled_object(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS, "uid": uid},
        "spec": {"scaleTargetRef": {"name": "web"}, "minReplicaCount": 1, "triggers": [CRON]},
    }


def ready(cluster: km.KubernetesEmulator, name: str) -> dict[str, Any]:
    conditions = cluster.objects[SO_RES, NS, name].raw["status"]["conditions"]
    condition: dict[str, Any] = next(c for c in conditions if c["type"] == "Ready")
    return condition


def listings(cluster: km.KubernetesEmulator, since: int) -> list[tuple[str, str | None]]:
    """The LIST requests the fake API server saw after the `since`-th request."""
    return [
        (str(r.resource), r.namespace)
        for r in list(cluster)[since:]
        if r.action == km.action.LIST and r.resource in (SO_RES, HPA_RES)
    ]


async def test_reconcile_finds_the_conflict_in_the_index_without_listing_against_fake_apiserver(
    cluster: km.KubernetesEmulator, client: AsyncClient, controller: ScaledObjectController
) -> None:
    cluster.objects[SO_RES, NS, "first"] = scaled_object("first", "uid-1")
    index = controller.options.conflicts
    assert index is not None
    await load_conflicts(KubeCluster(client), index, [NS])
    since = len(list(cluster))
    cluster.objects[SO_RES, NS, "worker"] = body = scaled_object("worker", "uid-2")
    await controller.reconcile(body)
    condition = ready(cluster, "worker")
    assert (condition["status"], condition["reason"]) == ("False", "ScaledObjectCheckFailed")
    assert condition["message"] == (
        "spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' is already managed by the "
        "ScaledObject 'first'"
    )
    assert listings(cluster, since) == []
    reads = [(r.action, r.name) for r in list(cluster)[since:] if r.resource == SO_RES and r.name == "first"]
    assert reads == [(km.action.FETCH, "first")]  # the hit is confirmed, once


async def test_index_entry_of_a_deleted_object_does_not_fail_the_reconcile_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    index = controller.options.conflicts
    assert index is not None
    # The watch missed the deletion of "ghost" (a reconnect): the index still has it on the same workload.
    index.replace([scaled_object("ghost", "uid-0")], [])
    cluster.objects[SO_RES, NS, "worker"] = body = scaled_object("worker", "uid-2")
    await controller.reconcile(body)
    assert ready(cluster, "worker")["status"] == "True"
    assert (HPA_RES, NS, "keda-hpa-worker") in cluster.objects
    assert len(index) == 0


async def test_index_not_loaded_yet_falls_back_to_listing_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    cluster.objects[SO_RES, NS, "first"] = scaled_object("first", "uid-1")
    since = len(list(cluster))
    cluster.objects[SO_RES, NS, "worker"] = body = scaled_object("worker", "uid-2")
    await controller.reconcile(body)
    assert "already managed by the ScaledObject 'first'" in ready(cluster, "worker")["message"]
    assert sorted(listings(cluster, since)) == sorted([(str(SO_RES), NS), (str(HPA_RES), NS)])


# --- the index follows the watches (kopf) ------------------------------------------------------------------


@pytest.fixture
def watched(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The resources kopf discovers and watches, and a kubeconfig for kopf's login."""
    cluster.serve(DEPLOY_RES, HPA_RES, "v1/events", "v1/secrets", "v1/configmaps")
    cluster.add_namespaces(NS)
    cluster.install_crds()
    use_kubeconfig(cluster, tmp_path, monkeypatch)
    return cluster


@pytest.mark.kmock(cls=Cluster)
async def test_watch_events_keep_the_index_current_against_fake_apiserver(
    watched: Cluster, client: AsyncClient
) -> None:
    """register_handlers' event handlers, run by kopf: created and deleted HPAs and ScaledObjects reach the index."""
    index = ConflictIndex()
    index.replace([], [])  # operator_main loads it before the watches; here the cluster starts empty
    running = threading.Event()
    handle: dict[str, Any] = {}

    def operate() -> None:
        # As in operator_main, in a thread of its own: kopf takes its event loop for itself.
        async def main() -> None:
            handle["loop"], handle["stop"] = asyncio.get_running_loop(), asyncio.Event()
            kube = client_for_url(str(watched.url))
            controller = ScaledObjectController(kube, OperatorOptions(conflicts=index))
            controller.autostart = False
            registry = kopf.OperatorRegistry()
            register_handlers(registry, controller)
            running.set()
            try:
                await kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=handle["stop"])
            finally:
                await kube.aclose()

        asyncio.run(main())

    thread = threading.Thread(target=operate, name="ebb-kopf", daemon=True)
    thread.start()
    try:
        worker = parse_object(scaled_object("worker", "uid-2"))[0]
        assert isinstance(worker, ScaledObject)
        # Whether kopf lists it or its watch (from the listing's resourceVersion) sends it, each change arrives.
        await client.create(HPA(hpa_manifest("theirs")))
        await eventually(lambda: reason(index.check(worker)) == "other-hpa", "the HPA reaches the index")
        await client.delete(HPA, "theirs", namespace=NS)
        await eventually(lambda: index.check(worker) is None, "the HPA leaves the index")
        await client.create(SCALED_OBJECT(scaled_object("first", "uid-1")))
        await eventually(
            lambda: reason(index.check(worker)) == "other-scaled-object", "the ScaledObject reaches the index"
        )
        await eventually(lambda: len(index) == 2, "the HPA its reconcile made reaches the index")
        await client.delete(SCALED_OBJECT, "first", namespace=NS)
        # Gone from the index once kopf's delete handler let it go, and so is its HPA (garbage-collected).
        await eventually(
            lambda: index.check(worker) is None and len(index) == 0, "the ScaledObject and its HPA leave the index"
        )
    finally:
        await asyncio.to_thread(running.wait, 10)
        handle["loop"].call_soon_threadsafe(handle["stop"].set)
        await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "kopf did not stop"


def reason(denial: Denial | None) -> str | None:
    return denial.reason if denial is not None else None


def hpa_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }
