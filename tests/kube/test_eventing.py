"""CloudEventSource and ClusterCloudEventSource in the operator: kopf-handled, the Active condition, KEDA's
CloudEvents for what the ScaledObject controller does, delivered to a real receiver on loopback.

The end-to-end tests run the real `operator_main` with test_operator_e2e's fixtures (kmock with ebb's CRDs, and a
real API server when EBB_TEST_KUBECONFIG names one); the controller tests drive CloudEventSourceController directly
against the fake API server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import kmock as km
import pytest

from ebb.kube.client import (
    API_ERRORS,
    SCALED_OBJECT,
    TRIGGER_AUTHENTICATION,
    client_for_url,
    is_not_found,
    to_dict,
)
from ebb.kube.eventing import CLOUD_EVENT_SOURCE, CLUSTER_CLOUD_EVENT_SOURCE, CloudEventSourceController
from ebb.observe.cloudevents import ACTIVE_MESSAGE, ACTIVE_REASON, FAILED_MESSAGE, FAILED_REASON, CloudEventHub
from ebb.scaling.types import ScalingEvent
from tests.observe._receiver import Receiver, receiver

from . import test_operator_e2e as e2e
from ._fakecluster import Cluster, eventually
from .test_operator_e2e import Replica, World

# The end-to-end fixtures: an API server (kmock, or a real one with EBB_TEST_KUBECONFIG) and operator replicas.
world = e2e.world
operators = e2e.operators

pytestmark = pytest.mark.kmock(cls=Cluster)

NS = "ns"
CES_RES = km.resource("eventing.keda.sh/v1alpha1/cloudeventsources")
CCES_RES = km.resource("eventing.keda.sh/v1alpha1/clustercloudeventsources")
TA_RES = km.resource("keda.sh/v1alpha1/triggerauthentications")


@pytest.fixture
async def sink() -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


def ces(name: str, uri: str | None = None, namespace: str = NS, **spec: Any) -> dict[str, Any]:
    destination = {"http": {"uri": uri}} if uri else spec.pop("destination")
    return {
        "apiVersion": "eventing.keda.sh/v1alpha1",
        "kind": "CloudEventSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"destination": destination, **spec},
    }


def cces(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.keda.sh/v1alpha1",
        "kind": "ClusterCloudEventSource",
        "metadata": {"name": name},
        "spec": spec,
    }


def active(cluster: km.KubernetesEmulator, res: km.resource, name: str, namespace: str | None = NS) -> dict[str, Any]:
    found = cluster.objects[res, namespace, name]
    return _active(found.raw)


def _active(body: Mapping[str, Any]) -> dict[str, Any]:
    for condition in (body.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Active":
            return dict(condition)
    return {}


async def live_active(world: World, res: Any, name: str, namespace: str | None) -> dict[str, Any]:
    try:
        if namespace is None:
            return _active(to_dict(await world.client.get(res, name)))
        return _active(to_dict(await world.client.get(res, name, namespace=namespace)))
    except API_ERRORS as exc:
        if is_not_found(exc):
            return {}
        raise


async def gone(world: World, res: Any, name: str, namespace: str | None) -> bool:
    return not await _exists(world, res, name, namespace)


async def _exists(world: World, res: Any, name: str, namespace: str | None) -> bool:
    try:
        if namespace is None:
            await world.client.get(res, name)
        else:
            await world.client.get(res, name, namespace=namespace)
    except API_ERRORS as exc:
        if is_not_found(exc):
            return False
        raise
    return True


# --- the operator, end to end ----------------------------------------------------------------------------


async def test_sources_are_kopf_handled_and_get_kedas_events(
    world: World, operators: Callable[..., Awaitable[Replica]], sink: Receiver
) -> None:
    await operators()
    grid_name = f"grid-{world.ns}"  # cluster-scoped: unique on a shared cluster
    subscription = {"excludedEventTypes": ["keda.scaledobject.ready.v1"]}
    await world.client.create(
        CLOUD_EVENT_SOURCE(ces("failures", sink.url, namespace=world.ns, eventSubscription=subscription))
    )
    await world.client.create(
        CLUSTER_CLOUD_EVENT_SOURCE(
            cces(grid_name, destination={"azureEventGridTopic": {"endpoint": "https://t.eventgrid.azure.net/api/e"}})
        )
    )
    try:
        condition = await eventually(
            lambda: live_active(world, CLOUD_EVENT_SOURCE, "failures", world.ns), "the source's Active condition"
        )
        assert condition == {"type": "Active", "status": "True", "reason": ACTIVE_REASON, "message": ACTIVE_MESSAGE}
        grid = await eventually(
            lambda: live_active(world, CLUSTER_CLOUD_EVENT_SOURCE, grid_name, None), "the cluster source's condition"
        )
        assert grid["status"] == "False" and grid["reason"] == FAILED_REASON
        assert "Azure Event Grid topics are not supported by ebb" in grid["message"]

        # A paused ScaledObject: the controller posts ScaledObjectPaused; the source sends keda.scaledobject.paused.v1.
        await world.client.create(
            SCALED_OBJECT(
                {
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "ScaledObject",
                    "metadata": {
                        "name": "orders",
                        "namespace": world.ns,
                        "annotations": {"autoscaling.keda.sh/paused": "true"},
                    },
                    "spec": {
                        "scaleTargetRef": {"name": "web"},
                        "triggers": [{"type": "cron", "metadata": {"timezone": "UTC", "start": "0 * * * *",
                                                                     "end": "30 * * * *", "desiredReplicas": "2"}}],
                    },
                }
            )
        )  # fmt: skip
        (paused,) = await sink.wait_for(1, within=30)
        assert paused.attributes["type"] == "keda.scaledobject.paused.v1"
        assert paused.attributes["source"] == f"/kubernetes-default/{world.ns}/keda"  # the cluster object namespace
        assert paused.attributes["subject"] == f"/kubernetes-default/{world.ns}/scaledobject/orders"
        assert paused.data == {"reason": "ScaledObjectPaused", "message": "ScaledObject is paused"}

        await world.client.delete(SCALED_OBJECT, "orders", namespace=world.ns)
        events = await sink.wait_for(2, within=30)
        assert events[1].attributes["type"] == "keda.scaledobject.removed.v1"
        assert events[1].data == {"reason": "ScaledObjectDeleted", "message": "ScaledObject was deleted"}
    finally:
        # Deleted while the operator runs: kopf's finalizer comes off once the handler has run.
        await world.client.delete(CLOUD_EVENT_SOURCE, "failures", namespace=world.ns)
        await world.client.delete(CLUSTER_CLOUD_EVENT_SOURCE, grid_name)
        await eventually(lambda: gone(world, CLOUD_EVENT_SOURCE, "failures", world.ns), "the source to go")
        await eventually(lambda: gone(world, CLUSTER_CLOUD_EVENT_SOURCE, grid_name, None), "the cluster source to go")


async def test_trigger_authentication_events_reach_the_sources(
    world: World, operators: Callable[..., Awaitable[Replica]], sink: Receiver
) -> None:
    """KEDA's TriggerAuthentication controller: created, updated, removed (sent to sources without an include list)."""
    await operators()
    await world.client.create(CLOUD_EVENT_SOURCE(ces("audit", sink.url, namespace=world.ns)))
    try:
        await eventually(
            lambda: live_active(world, CLOUD_EVENT_SOURCE, "audit", world.ns),
            "the source to start",
            ok=lambda c: c.get("status") == "True",
        )
        body = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {"name": "db-auth", "namespace": world.ns},
            "spec": {"secretTargetRef": [{"parameter": "password", "name": "db", "key": "password"}]},
        }
        await world.client.create(TRIGGER_AUTHENTICATION(body))
        (created,) = await sink.wait_for(1, within=30)
        assert created.attributes["type"] == "keda.authentication.triggerauthentication.created.v1"
        assert created.attributes["subject"] == f"/kubernetes-default/{world.ns}/triggerauthentication/db-auth"
        assert created.data == {
            "reason": "TriggerAuthenticationAdded",
            "message": "New TriggerAuthentication configured",
        }
        await world.client.delete(TRIGGER_AUTHENTICATION, "db-auth", namespace=world.ns)
        events = await sink.wait_for(2, within=30)
        assert events[1].attributes["type"] == "keda.authentication.triggerauthentication.removed.v1"
    finally:
        await world.client.delete(CLOUD_EVENT_SOURCE, "audit", namespace=world.ns)
        await eventually(lambda: gone(world, CLOUD_EVENT_SOURCE, "audit", world.ns), "the source to go")


# --- the controller against the fake API server ----------------------------------------------------------


@pytest.fixture
async def controller(kmock: km.KubernetesEmulator) -> AsyncIterator[CloudEventSourceController]:
    for res in (CES_RES, CCES_RES, TA_RES, km.resource("keda.sh/v1alpha1/clustertriggerauthentications")):
        kmock.resources[res] = {}
    client = client_for_url(str(kmock.url))
    hub = CloudEventHub(sink_options={"backoff": 0.01, "max_attempts": 2})
    await hub.start()
    ctl = CloudEventSourceController(client, hub)
    yield ctl
    await hub.stop()
    await ctl.close()
    await client.aclose()


async def test_a_missing_trigger_authentication_keeps_the_source_from_starting_against_fake_apiserver(
    kmock: km.KubernetesEmulator, controller: CloudEventSourceController, sink: Receiver
) -> None:
    body = ces("authed", sink.url, authenticationRef={"name": "sink-auth"})
    kmock.objects[CES_RES, NS, "authed"] = body
    await controller.reconcile(body)
    condition = active(kmock, CES_RES, "authed")
    assert condition["status"] == "False" and condition["reason"] == FAILED_REASON
    assert condition["message"] == f"spec.authenticationRef: TriggerAuthentication {NS}/sink-auth not found"
    assert not controller.hub.sinks

    kmock.objects[TA_RES, NS, "sink-auth"] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "sink-auth", "namespace": NS},
        "spec": {"secretTargetRef": [{"parameter": "token", "name": "s", "key": "k"}]},
    }
    await controller.reconcile(body)
    assert active(kmock, CES_RES, "authed")["status"] == "True"
    assert ("CloudEventSource", NS, "authed") in controller.hub.sinks


async def test_failing_deliveries_turn_the_condition_false_against_fake_apiserver(
    kmock: km.KubernetesEmulator, controller: CloudEventSourceController, sink: Receiver
) -> None:
    body = cces("everything", destination={"http": {"uri": sink.url}})
    kmock.objects[CCES_RES, None, "everything"] = body
    await controller.reconcile(body)
    assert active(kmock, CCES_RES, "everything", None)["status"] == "True"
    sink.failures_left = 2  # every attempt of the first event
    controller.hub.kube_event(
        {"kind": "ScaledObject", "namespace": NS, "name": "orders"}, ScalingEvent("ScaledObjectReady", "ready"), 0.0
    )
    await eventually(
        lambda: active(kmock, CCES_RES, "everything", None).get("status") == "False", "the Active condition False"
    )
    assert active(kmock, CCES_RES, "everything", None)["message"] == FAILED_MESSAGE


async def test_an_invalid_source_reports_kedas_refusal_against_fake_apiserver(
    kmock: km.KubernetesEmulator, controller: CloudEventSourceController, sink: Receiver
) -> None:
    body = ces(
        "both",
        sink.url,
        eventSubscription={
            "includedEventTypes": ["keda.scaledobject.ready.v1"],
            "excludedEventTypes": ["keda.scaledobject.failed.v1"],
        },
    )
    kmock.objects[CES_RES, NS, "both"] = body
    await controller.reconcile(body)
    condition = active(kmock, CES_RES, "both")
    assert condition["status"] == "False"
    assert "at the same time is not supported" in condition["message"]
    assert not controller.hub.sinks
