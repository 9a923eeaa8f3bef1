"""The operator's reconcile makes KEDA's conflict checks from the watch-fed index, against kmock.

Without an index (tests, tools) the controller lists the namespace (see test_operator.py); with a loaded one it
looks the workload up instead, and reads the other object only to confirm a hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock as km
import kopf
import pytest

from ebb.kube.admission import ConflictIndex, Denial
from ebb.kube.client import HPA, SCALED_OBJECT, AsyncClient, client_for_url, to_dict
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
        f"ScaledObject 'first', created before ScaledObject {NS}/worker (which therefore does not scale it)"
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


@contextlib.asynccontextmanager
async def kopf_running(watched: Cluster, index: ConflictIndex) -> AsyncIterator[None]:
    """register_handlers' handlers run by kopf against `watched`, feeding `index`, until the block ends: as in
    operator_main, in a thread of its own (kopf takes its event loop for itself)."""
    running = threading.Event()
    handle: dict[str, Any] = {}

    def operate() -> None:
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
        yield
    finally:
        await asyncio.to_thread(running.wait, 10)
        handle["loop"].call_soon_threadsafe(handle["stop"].set)
        await asyncio.to_thread(thread.join, 15)
    assert not thread.is_alive(), "kopf did not stop"


@pytest.mark.kmock(cls=Cluster)
async def test_watch_events_keep_the_index_current_against_fake_apiserver(
    watched: Cluster, client: AsyncClient
) -> None:
    """register_handlers' event handlers, run by kopf: created and deleted HPAs and ScaledObjects reach the index."""
    index = ConflictIndex()
    index.replace([], [])  # operator_main loads it before the watches; here the cluster starts empty
    async with kopf_running(watched, index):
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


def reason(denial: Denial | None) -> str | None:
    return denial.reason if denial is not None else None


def hpa_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }


# --- by arrival: the first ScaledObject on a workload keeps scaling ------------------------------------------------

EVENT_RES = km.resource("v1/events")


def at(body: dict[str, Any], stamp: str) -> dict[str, Any]:
    body["metadata"]["creationTimestamp"] = stamp
    return body


def current(cluster: km.KubernetesEmulator, name: str) -> dict[str, Any]:
    return dict(cluster.objects[SO_RES, NS, name].raw)


def exists(cluster: km.KubernetesEmulator, res: km.resource, name: str) -> bool:
    key = (res, NS, name)
    return key in cluster.objects and not cluster.objects[key].deleted


def warnings_on(cluster: km.KubernetesEmulator, name: str) -> list[str]:
    return [
        o.raw["reason"]
        for (res, _, _), o in cluster.objects.items()
        if res == EVENT_RES and o.raw["involvedObject"]["name"] == name and o.raw["type"] == "Warning"
    ]


async def refused_pair(cluster: km.KubernetesEmulator, controller: ScaledObjectController) -> None:
    """ "zulu" created before "alpha" (whose name sorts first), both while the webhook was off; reconciled in the
    order an operator restart may resume them: the later first."""
    cluster.objects[SO_RES, NS, "zulu"] = first = at(scaled_object("zulu", "uid-1"), "2026-01-01T00:00:00Z")
    cluster.objects[SO_RES, NS, "alpha"] = later = at(scaled_object("alpha", "uid-2"), "2026-01-01T00:00:07Z")
    assert not await controller.reconcile(later)
    assert await controller.reconcile(first)
    assert not await controller.reconcile(current(cluster, "alpha"))  # kopf's retry: still refused


async def test_of_two_scaled_objects_made_while_the_webhook_was_off_the_first_keeps_scaling_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    await refused_pair(cluster, controller)
    assert ready(cluster, "zulu")["status"] == "True"
    assert (NS, "zulu") in controller.runtimes and exists(cluster, HPA_RES, "keda-hpa-zulu")
    condition = ready(cluster, "alpha")
    assert (condition["status"], condition["reason"]) == ("False", "ScaledObjectCheckFailed")
    assert condition["message"] == (
        "spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' is already managed by the "
        f"ScaledObject 'zulu', created before ScaledObject {NS}/alpha (which therefore does not scale it)"
    )
    assert (NS, "alpha") not in controller.runtimes and not exists(cluster, HPA_RES, "keda-hpa-alpha")
    assert warnings_on(cluster, "alpha") == ["ScaledObjectCheckFailed"]  # once, not once per retry
    assert warnings_on(cluster, "zulu") == []


async def test_the_first_of_two_scaled_objects_sharing_an_hpa_name_keeps_it_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    cluster.objects[DEPLOY_RES, NS, "api"] = {**cluster.objects[DEPLOY_RES, NS, "web"].raw}
    cluster.objects[DEPLOY_RES, NS, "api"]["metadata"] = {"name": "api", "namespace": NS}
    shared = {"horizontalPodAutoscalerConfig": {"name": "shared"}}
    first = at(scaled_object("zulu", "uid-1"), "2026-01-01T00:00:00Z")
    first["spec"]["advanced"] = shared
    later = at(scaled_object("alpha", "uid-2"), "2026-01-01T00:00:07Z")
    later["spec"].update(scaleTargetRef={"name": "api"}, advanced=shared)
    cluster.objects[SO_RES, NS, "zulu"], cluster.objects[SO_RES, NS, "alpha"] = first, later
    assert not await controller.reconcile(later)
    assert await controller.reconcile(first)
    assert ready(cluster, "zulu")["status"] == "True"
    assert ready(cluster, "alpha")["message"].startswith(
        "spec.advanced.horizontalPodAutoscalerConfig.name: the HPA 'shared' is already managed by the ScaledObject "
        "'zulu', created before"
    )


async def test_deleting_the_first_scaled_object_lets_the_refused_one_scale_at_once_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    """kopf's delete handler runs while the finalizer holds the object and its HPA is still there: the refused
    object is reconciled then, not at its next retry (up to 5 min later)."""
    await refused_pair(cluster, controller)
    going = current(cluster, "zulu")
    going["metadata"] = {**going["metadata"], "deletionTimestamp": "2026-01-01T01:00:00Z", "finalizers": ["x"]}
    cluster.objects[SO_RES, NS, "zulu"] = going
    await controller.delete(going)
    await eventually(lambda: ready(cluster, "alpha")["status"], "alpha to scale", ok=lambda s: s == "True")
    await controller.options.requeue.drain()  # the reconcile writes Ready before it registers the loop
    assert (NS, "alpha") in controller.runtimes and exists(cluster, HPA_RES, "keda-hpa-alpha")
    assert (NS, "zulu") not in controller.runtimes


async def test_a_scaled_object_that_arrived_first_takes_over_from_a_later_one_scaling_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    """Both made in the same second while the webhook was off ("other" sorts first): "worker", reconciled first,
    scales until "other" is reconciled; then it is reconciled again at once, refused, and its HPA goes."""
    cluster.objects[SO_RES, NS, "worker"] = worker = at(scaled_object("worker", "uid-1"), "2026-01-01T00:00:00Z")
    assert await controller.reconcile(worker)
    assert exists(cluster, HPA_RES, "keda-hpa-worker")
    cluster.objects[SO_RES, NS, "other"] = other = at(scaled_object("other", "uid-2"), "2026-01-01T00:00:00Z")
    assert await controller.reconcile(other)
    await eventually(lambda: ready(cluster, "worker")["status"], "worker to be refused", ok=lambda s: s == "False")
    await controller.options.requeue.drain()
    assert "already managed by the ScaledObject 'other'" in ready(cluster, "worker")["message"]
    assert (NS, "worker") not in controller.runtimes and not exists(cluster, HPA_RES, "keda-hpa-worker")
    assert (NS, "other") in controller.runtimes and exists(cluster, HPA_RES, "keda-hpa-other")


async def test_the_first_scaled_object_moving_to_another_workload_lets_the_refused_one_scale_against_fake_apiserver(
    cluster: km.KubernetesEmulator, controller: ScaledObjectController
) -> None:
    await refused_pair(cluster, controller)
    cluster.objects[DEPLOY_RES, NS, "api"] = {**cluster.objects[DEPLOY_RES, NS, "web"].raw}
    cluster.objects[DEPLOY_RES, NS, "api"]["metadata"] = {"name": "api", "namespace": NS}
    moved = current(cluster, "zulu")
    moved["spec"] = {**moved["spec"], "scaleTargetRef": {"name": "api"}}
    cluster.objects[SO_RES, NS, "zulu"] = moved
    assert await controller.reconcile(moved)
    await eventually(lambda: ready(cluster, "alpha")["status"], "alpha to scale", ok=lambda s: s == "True")
    await controller.options.requeue.drain()  # the reconcile writes Ready before it registers the loop
    assert sorted(controller.runtimes) == [(NS, "alpha"), (NS, "zulu")]


@pytest.mark.kmock(cls=Cluster)
async def test_under_kopf_the_refused_scaled_object_scales_once_the_first_is_deleted_not_at_its_next_retry(
    watched: Cluster, client: AsyncClient
) -> None:
    """The operator's handlers, run by kopf (finalizers, backoff, the watch-fed index): "alpha", refused, waits
    for its retry with backoff; deleting "zulu" (its delete handler runs while the finalizer holds it and its HPA
    is still there) makes "alpha" scale at once, long before kopf's next attempt."""
    index = ConflictIndex()
    index.replace([], [])  # operator_main loads it before the watches; here the cluster starts empty
    async with kopf_running(watched, index):
        await client.create(SCALED_OBJECT(scaled_object("zulu", "uid-1")))
        await eventually(lambda: status_of(client, "zulu"), "zulu to scale", ok=lambda s: s == "True")
        await asyncio.sleep(1.1)  # creationTimestamps are whole seconds on a real API server
        await client.create(SCALED_OBJECT(scaled_object("alpha", "uid-2")))
        await eventually(lambda: status_of(client, "alpha"), "alpha to be refused", ok=lambda s: s == "False")

        async def retries() -> int:
            body = to_dict(await client.get(SCALED_OBJECT, "alpha", namespace=NS))
            annotations = body["metadata"].get("annotations") or {}
            progress = [json.loads(v) for k, v in annotations.items() if k.endswith("scaled_object_changed")]
            return max((int(p.get("retries") or 0) for p in progress), default=0)

        # kopf's next attempt is now 8 s or more away (1, 2, 4, 8 ... s).
        await eventually(retries, "kopf to retry alpha three times", ok=lambda n: n >= 4)
        await client.delete(SCALED_OBJECT, "zulu", namespace=NS)
        await eventually(lambda: status_of(client, "alpha"), "alpha to scale", ok=lambda s: s == "True", within=4)


async def status_of(client: AsyncClient, name: str) -> str | None:
    body = to_dict(await client.get(SCALED_OBJECT, name, namespace=NS))
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((str(c["status"]) for c in conditions if c["type"] == "Ready"), None)
