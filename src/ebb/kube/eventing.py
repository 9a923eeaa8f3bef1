"""The CloudEventSource and ClusterCloudEventSource controller (KEDA's controllers/eventing).

Each valid source gets a sink in the operator's `CloudEventHub`; the ScaledObject and ScaledJob controllers hand
their Kubernetes Events to the hub (OperatorOptions.cloudevents), which sends KEDA's CloudEvents. Status is
KEDA's: one `Active` condition, True (CloudEventSourceActive) once the source is set up, False
(CloudEventSourceFailed) when it cannot be set up or its deliveries fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf
from lightkube.types import PatchType

from ebb.errors import SpecError
from ebb.kube.client import (
    API_ERRORS,
    CLUSTER_TRIGGER_AUTHENTICATION,
    TRIGGER_AUTHENTICATION,
    AsyncClient,
    api_message,
    global_resource,
    is_not_found,
    namespaced,
)
from ebb.kube.status import object_reference
from ebb.observe.cloudevents import ACTIVE_MESSAGE, ACTIVE_REASON, FAILED_REASON, CloudEventHub, SourceKey
from ebb.scaling.types import ScalingEvent
from ebb.spec import parse_object
from ebb.spec.models import AnyCloudEventSource, CloudEventSource, ClusterCloudEventSource

log = logging.getLogger("ebb.operator")

CLOUD_EVENT_SOURCE = namespaced("eventing.keda.sh", "v1alpha1", "CloudEventSource", "cloudeventsources")
CLUSTER_CLOUD_EVENT_SOURCE = global_resource(
    "eventing.keda.sh", "v1alpha1", "ClusterCloudEventSource", "clustercloudeventsources"
)
CES = ("eventing.keda.sh", "v1alpha1", "cloudeventsources")
CCES = ("eventing.keda.sh", "v1alpha1", "clustercloudeventsources")
TA = ("keda.sh", "v1alpha1", "triggerauthentications")
CTA = ("keda.sh", "v1alpha1", "clustertriggerauthentications")

#: Posts a Kubernetes Event about an object (and hands it to the CloudEventHub): ScaledObjectController.emit.
Emit = Callable[[Mapping[str, Any], ScalingEvent], Awaitable[None]]


def _label(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    kind = str(body.get("kind") or "CloudEventSource")
    if kind == "ClusterCloudEventSource":
        return f"{kind} {meta.get('name', '')}"
    return f"{kind} {meta.get('namespace', 'default')}/{meta.get('name', '')}"


class CloudEventSourceController:
    """Reconciles (Cluster)CloudEventSources into the hub's sinks and writes their Active condition."""

    def __init__(self, client: AsyncClient, hub: CloudEventHub) -> None:
        self.client = client
        self.hub = hub
        self._writes: set[asyncio.Task[None]] = set()

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """Start (or restart, after a change) sending to one source. Never raises for a broken source."""
        obj, errors = parse_object(dict(body), label=_label(body))
        if errors or not isinstance(obj, CloudEventSource | ClusterCloudEventSource):
            message = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors)
            await self._failed(body, message or "not a CloudEventSource")
            return
        try:
            await self._check_authentication(obj)
            self.hub.add(obj, on_status=lambda *condition: self._write_later(obj, *condition))
        except SpecError as exc:
            self.hub.remove(obj.key)
            await self._failed(body, f"{exc.field}: {exc.message}")
            return
        await self.write_condition(obj, "True", ACTIVE_REASON, ACTIVE_MESSAGE)

    def delete(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        kind = str(body.get("kind") or "CloudEventSource")
        namespace = "" if kind == "ClusterCloudEventSource" else str(meta.get("namespace") or "default")
        key: SourceKey = (kind, namespace, str(meta.get("name") or ""))
        self.hub.remove(key)

    async def _check_authentication(self, source: AnyCloudEventSource) -> None:
        # KEDA resolves the reference before it builds any sender (used by Azure Event Grid only): a reference to
        # nothing keeps the source from starting.
        ref = source.spec.authentication_ref
        if ref is None:
            return
        where = "spec.authenticationRef"
        try:
            if ref.kind == "ClusterTriggerAuthentication":
                await self.client.get(CLUSTER_TRIGGER_AUTHENTICATION, ref.name)
            elif source.namespace is None:
                raise SpecError(
                    source.ref,
                    f"{where}.kind",
                    "a ClusterCloudEventSource can only reference a ClusterTriggerAuthentication",
                )
            else:
                await self.client.get(TRIGGER_AUTHENTICATION, ref.name, namespace=source.namespace)
        except API_ERRORS as exc:
            what = ref.kind if ref.kind == "ClusterTriggerAuthentication" else f"{ref.kind} {source.namespace}/"
            name = f"{what} {ref.name}" if ref.kind == "ClusterTriggerAuthentication" else f"{what}{ref.name}"
            if is_not_found(exc):
                raise SpecError(source.ref, where, f"{name} not found") from None
            raise SpecError(source.ref, where, f"cannot read {name}: {api_message(exc)}") from None

    async def _failed(self, body: Mapping[str, Any], message: str) -> None:
        log.warning("%s: %s", _label(body), message)
        meta = body.get("metadata") or {}
        cluster = str(body.get("kind")) == "ClusterCloudEventSource"
        await self._patch(
            cluster,
            str(meta.get("namespace") or "default"),
            str(meta.get("name") or ""),
            "False",
            FAILED_REASON,
            message,
        )

    async def write_condition(self, source: AnyCloudEventSource, status: str, reason: str, message: str) -> None:
        await self._patch(source.cluster_scoped, source.namespace or "", source.name, status, reason, message)

    async def _patch(self, cluster: bool, namespace: str, name: str, status: str, reason: str, message: str) -> None:
        condition = {"type": "Active", "status": status, "reason": reason, "message": message}
        patch = {"status": {"conditions": [condition]}}
        try:
            if cluster:
                await self.client.patch(CLUSTER_CLOUD_EVENT_SOURCE.Status, name, patch, patch_type=PatchType.MERGE)
            else:
                await self.client.patch(
                    CLOUD_EVENT_SOURCE.Status, name, patch, namespace=namespace, patch_type=PatchType.MERGE
                )
        except API_ERRORS as exc:
            if not is_not_found(exc):
                log.warning("%s %s: cannot write status: %s", "ClusterCloudEventSource" if cluster else "", name, exc)

    def _write_later(self, source: AnyCloudEventSource, status: str, reason: str, message: str) -> None:
        # Called from a sink's delivery task when its deliveries start or stop failing.
        task = asyncio.create_task(self.write_condition(source, status, reason, message))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)


def register_eventing_handlers(registry: kopf.OperatorRegistry, controller: CloudEventSourceController) -> None:
    """CloudEventSource (namespaced) and ClusterCloudEventSource (cluster-scoped): create/update/resume start
    sending, delete stops (kopf holds the operator's finalizer meanwhile, as KEDA holds its own)."""
    for resource in (CES, CCES):

        @kopf.on.resume(*resource, registry=registry)
        @kopf.on.create(*resource, registry=registry)
        @kopf.on.update(*resource, registry=registry)
        async def source_changed(body: kopf.Body, **_: Any) -> None:
            await controller.reconcile(dict(body))

        @kopf.on.delete(*resource, registry=registry)
        async def source_deleted(body: kopf.Body, **_: Any) -> None:
            controller.delete(dict(body))


def register_authentication_events(registry: kopf.OperatorRegistry, emit: Emit) -> None:
    """KEDA's (Cluster)TriggerAuthentication controllers post an Event (and so a CloudEvent) when one is created,
    updated or deleted: `...Added`, `...Updated`, `...Deleted`. Deletion is seen on the watch, without a finalizer."""
    for resource, kind in ((TA, "TriggerAuthentication"), (CTA, "ClusterTriggerAuthentication")):

        async def post(body: Mapping[str, Any], event: ScalingEvent) -> None:
            try:
                await emit(object_reference(body), event)
            except API_ERRORS as exc:  # no retry: the CloudEvent went out already
                log.warning("%s: cannot post an Event: %s", _label(body), api_message(exc))

        def handlers(kind: str = kind, resource: tuple[str, str, str] = resource) -> None:
            @kopf.on.create(*resource, registry=registry)
            async def created(body: kopf.Body, **_: Any) -> None:
                await post(body, ScalingEvent(f"{kind}Added", f"New {kind} configured"))

            @kopf.on.update(*resource, registry=registry)
            async def updated(body: kopf.Body, **_: Any) -> None:
                name = (body.get("metadata") or {}).get("name", "")
                await post(body, ScalingEvent(f"{kind}Updated", f"{kind} {name} is updated"))

            @kopf.on.event(*resource, registry=registry)
            async def deleted(event: kopf.RawEvent, **_: Any) -> None:
                if event["type"] == "DELETED":
                    await post(event["object"], ScalingEvent(f"{kind}Deleted", f"{kind} was deleted"))

        handlers()
