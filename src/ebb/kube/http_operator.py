"""HTTPScaledObjects under `ebb operator`: status as the add-on writes it, and a scaling loop fed by the interceptors.

The add-on's operator creates a ScaledObject with an external-push trigger, which KEDA turns into an HPA; the
HPA scales 1..N, KEDA itself 0<->1. ebb scales the target directly through its /scale subresource instead,
with the same loop and core as a ScaledObject in `--scaling direct` mode (ScaledObjectLoop, ScaledObjectDecider:
the HPA's replica math, activation, cooldown, min/max). Why:
- the metric lives in the operator's memory (InterceptorFeed): an HPA would fetch it back through the
  aggregated metrics API every 15 s, and a cold start (0 -> 1) never goes through the HPA anyway;
- no second object to keep in step (or to conflict with a user's ScaledObject of the same name), and
  deleting the HTTPScaledObject is the whole cleanup.

Status (the add-on's operator/controllers/http/httpscaledobject_controller.go): `targetWorkload`
("apiVersion/kind/name"), `targetService` ("service:port") and one condition, Ready: True with reason
Reconciled, or False with CreateError (the spec, the target or a conflict). ebb adds reason ServiceNotFound
(and a Warning Event of that reason) when `scaleTargetRef.service` does not exist; the loop still runs, so the
route works as soon as the Service appears, and the reconcile is retried to clear the condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from lightkube.types import PatchType

from ebb.errors import EbbError, SpecError
from ebb.http.local import _polling_interval
from ebb.kube import status as st
from ebb.kube.admission import Denial, arrival, check_conflicts
from ebb.kube.client import API_ERRORS, EVENT, AsyncClient, api_message, is_not_found
from ebb.kube.http_admission import check_workload_of_http
from ebb.kube.http_feed import InterceptorFeed, InterceptorFeedScaler
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT, SERVICE, route_key
from ebb.kube.operator import OperatorOptions, log_event
from ebb.kube.requeue import Claim, reconcile_current
from ebb.kube.requeue import workload as workload_key
from ebb.kube.scale import KubeScaleTarget, resolve_target_kind
from ebb.kube.webhook import KubeCluster
from ebb.runtime.observer import ObjectRef, Observer
from ebb.runtime.scaled_object import ScaledObjectLoop
from ebb.scalers.base import TriggerContext
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import LifecycleState, ScalingEvent
from ebb.spec import object_policy, parse_object
from ebb.spec.models import SKIP_SCALING_ANNOTATION, HTTPScaledObject, ScaledObject

log = logging.getLogger("ebb.operator")

READY = "Ready"
REASON_RECONCILED = "Reconciled"
REASON_CREATE_ERROR = "CreateError"
REASON_SERVICE_NOT_FOUND = "ServiceNotFound"
READY_MESSAGE = "HTTPScaledObject is reconciled: its target is scaled on the interceptors' load"
#: The add-on's annotation: route only, scale with a ScaledObject of your own (ebb then runs no loop for it).
SKIPPED_MESSAGE = (
    f"HTTPScaledObject is reconciled: routing only ({SKIP_SCALING_ANNOTATION}: true); its target is not scaled by it"
)


def ready_condition(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": READY, "status": status, "reason": reason, "message": message}


def _with_condition(body: Mapping[str, Any], condition: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """The conditions with `condition` set as metav1.Condition (the add-on's meta.SetStatusCondition): one per type,
    lastTransitionTime kept unless the status changes, observedGeneration the object's generation."""
    existing = (body.get("status") or {}).get("conditions") or ()
    previous = next((c for c in existing if isinstance(c, Mapping) and c.get("type") == condition["type"]), {})
    stamp = previous.get("lastTransitionTime") if previous.get("status") == condition["status"] else None
    generation = (body.get("metadata") or {}).get("generation")
    full = {**condition, "lastTransitionTime": stamp or st.rfc3339(now)}
    if isinstance(generation, int):
        full["observedGeneration"] = generation
    others = [dict(c) for c in existing if isinstance(c, Mapping) and c.get("type") != condition["type"]]
    return [full, *others]


def workload_ref_of(so: ScaledObject) -> dict[str, str]:
    """The scaleTargetRef of the ScaledObject an HTTPScaledObject stands for, in manifest form."""
    ref = so.spec.scale_target_ref
    return {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}


def _error_text(errors: list[SpecError]) -> str:
    return "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors)


class _HTTPObserver(Observer):
    """The loop's Events go to the HTTPScaledObject (and the log); problems to the log, once each."""

    def __init__(self, controller: HTTPScaledObjectController, manifest_ref: dict[str, Any]) -> None:
        self.controller = controller
        self.manifest_ref = manifest_ref
        self._last_problem: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        log_event(str(ref), event)

        async def write() -> None:
            with contextlib.suppress(*API_ERRORS):
                await self.controller.emit(self.manifest_ref, event)

        task = asyncio.create_task(write())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        repeated = message == self._last_problem
        self._last_problem = message
        log.log(logging.DEBUG if repeated else logging.WARNING, "%s: %s", ref, message)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@dataclass
class _Runtime:
    obj: HTTPScaledObject
    loop: ScaledObjectLoop
    scaler: InterceptorFeedScaler
    observer: _HTTPObserver
    task: asyncio.Task[None] | None = None


class HTTPScaledObjectController:
    """Reconciles HTTPScaledObjects: status, and one direct scaling loop each, fed by `feed`."""

    def __init__(
        self,
        client: AsyncClient,
        feed: InterceptorFeed,
        options: OperatorOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.feed = feed
        self.options = options or OperatorOptions()
        self.clock = clock
        self.autostart = True
        self.runtimes: dict[tuple[str, str], _Runtime] = {}
        self.states: dict[str, LifecycleState] = {}
        #: The target's replicas when the object was first reconciled, restored when it is deleted (the add-on's
        #: ScaledObject has restoreToOriginalReplicaCount). In memory: an operator restart forgets it.
        self.original: dict[tuple[str, str], int] = {}
        #: One reconcile or delete of an object at a time (kopf's, and the re-queue's after a conflict went).
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def emit(self, manifest_ref: Mapping[str, Any], event: ScalingEvent) -> None:
        await self.client.create(EVENT(st.event_manifest(manifest_ref, event, self.clock())))

    async def _write_status(self, body: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        await self.client.patch(
            HTTP_SCALED_OBJECT.Status,
            str(meta.get("name")),
            {"status": status},
            namespace=str(meta.get("namespace") or "default"),
            patch_type=PatchType.MERGE,
        )

    async def _fail(self, body: Mapping[str, Any], status: dict[str, Any], message: str, *, once: bool = False) -> None:
        """Ready=False (CreateError) with `message`, and a Warning Event; `once`: nothing new when the condition
        says so already (a conflict, retried with backoff until the other object goes, is reported once)."""
        meta = body.get("metadata") or {}
        if once and st.not_ready_saying(body.get("status"), message):
            log.debug("HTTPScaledObject %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
            return
        log.warning("HTTPScaledObject %s/%s: %s", meta.get("namespace"), meta.get("name"), message)
        condition = ready_condition("False", REASON_CREATE_ERROR, message)
        status["conditions"] = _with_condition(body, condition, self.clock())
        with contextlib.suppress(*API_ERRORS):
            await self._write_status(body, status)
            await self.emit(st.object_reference(body), ScalingEvent(REASON_CREATE_ERROR, message, "Warning"))

    async def reconcile(self, body: Mapping[str, Any]) -> bool:
        """Never raises for a broken object; False when a retry may succeed (a missing target or Service)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._reconcile_locked(key, body)

    async def _reconcile_again(self, namespace: str, name: str) -> None:
        """Reconcile the object as it is now (the object it was refused for is going); nothing if it is gone."""
        await reconcile_current(self.client, HTTP_SCALED_OBJECT, namespace, name, self.reconcile)

    async def _reconcile_locked(self, key: tuple[str, str], body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        await self.stop(key)
        # Each outcome tells the re-queue (kube/requeue.py) whether this object scales, lost a conflict, or neither.
        requeue, me = self.options.requeue, ("HTTPScaledObject", *key)
        obj, errors = parse_object(dict(body), label=f"HTTPScaledObject {key[0]}/{key[1]}")
        if errors or not isinstance(obj, HTTPScaledObject):
            requeue.cleared(me)
            await self._fail(body, {}, _error_text(errors) or "not an HTTPScaledObject")
            return True  # only an edit can fix it, and an edit reconciles again
        target_ref = obj.spec.scale_target_ref
        port = target_ref.port if target_ref.port is not None else target_ref.port_name
        so = obj.scaled_object()
        workload = so.spec.scale_target_ref
        status: dict[str, Any] = {
            "targetWorkload": f"{workload.api_version}/{workload.kind}/{workload.name}",
            "targetService": f"{target_ref.service}:{port}",
        }
        if not obj.scales:
            # No loop, no conflict with the user's own ScaledObject on the target, nothing to restore.
            self.original.pop(key, None)
            requeue.cleared(me)
            return await self._routing_only(body, key, status, await self._missing_service(key[0], target_ref.service))
        claim = Claim(
            workload_key(workload_ref_of(so)),
            arrival(obj.metadata.creation_timestamp, obj.name),
            lambda: self._reconcile_again(*key),
        )
        try:
            kind = await resolve_target_kind(
                self.client, so.spec.scale_target_ref.api_version, so.spec.scale_target_ref.kind
            )
            target = KubeScaleTarget(self.client, kind, so.spec.scale_target_ref.name, key[0])
            cluster = KubeCluster(self.client)
            # The webhook's rule against ScaledObjects, by arrival: one created before this object scales the
            # workload, one created after does not (its own reconcile refuses it); then KEDA's other checks
            # (a foreign HPA on the workload) for the ScaledObject this object stands for.
            denial = await check_workload_of_http(obj, cluster, ordered=True)
            if denial is None:
                denial = await check_conflicts(
                    so,
                    self.options.conflicts,
                    cluster,
                    target_type=f"{kind.api_version}.{kind.kind}",
                    scaled_objects=False,
                    ordered=True,  # an HPA whose ScaledObject is being deleted is going too
                )
            if denial is not None:
                raise denial
            self.original.setdefault(key, await target.get_replicas())
        except SpecError as exc:  # a conflict: named on the HTTPScaledObject, not on the ScaledObject it stands for
            if isinstance(exc, Denial):  # reconciled again as soon as the other object goes
                requeue.refused(me, replace(claim, conflicting=exc.conflicting))
            else:
                requeue.cleared(me)
            message = f"{exc.field}: {exc.message}" if exc.field else exc.message
            await self._fail(body, status, message, once=isinstance(exc, Denial))
            return False
        except EbbError as exc:
            requeue.cleared(me)
            await self._fail(body, status, f"spec.scaleTargetRef: {exc}")
            return False
        except API_ERRORS as exc:
            requeue.cleared(me)
            await self._fail(body, status, f"Kubernetes API: {api_message(exc)}")
            return False

        service_problem = await self._missing_service(key[0], target_ref.service)
        ref_dict = st.object_reference(body)
        ref = ObjectRef("HTTPScaledObject", key[0], key[1])
        ctx = TriggerContext(
            kind="HTTPScaledObject",
            namespace=key[0],
            name=key[1],
            trigger_index=0,
            trigger_type="external-push",
            timeout=self.options.timeout,
        )
        scaler = InterceptorFeedScaler(ctx, self.feed, route_key(*key), obj.spec.metric, float(obj.spec.metric_target))
        uid = str(meta.get("uid") or f"{key[0]}/{key[1]}")
        decider = ScaledObjectDecider(
            object_policy(so, now=self.clock()),
            self.states.setdefault(uid, LifecycleState()),
            mode="direct",
            obj=str(ref),
            target=target.label,
            trigger_names=[],
        )
        observer = _HTTPObserver(self, ref_dict)
        services = self.options.services
        loop_observer: Observer = services.observers(observer, [so]) if services is not None else observer
        try:
            polling = _polling_interval(obj, so.spec.polling_interval)
        except EbbError as exc:
            requeue.cleared(me)
            await self._fail(body, status, str(exc))
            return True
        loop = ScaledObjectLoop(
            ref,
            [scaler],
            target,
            decider,
            polling_interval=polling,
            observer=loop_observer,
            annotations=so.metadata.annotations,
            clock=self.clock,
        )
        self.runtimes[key] = _Runtime(obj, loop, scaler, observer)
        if self.autostart:
            self.start(key)
        requeue.scaling(me, claim)

        existing = (body.get("status") or {}).get("conditions")
        if service_problem is not None:
            condition = ready_condition("False", REASON_SERVICE_NOT_FOUND, service_problem)
        else:
            condition = ready_condition("True", REASON_RECONCILED, READY_MESSAGE)
        status["conditions"] = _with_condition(body, condition, self.clock())
        try:
            await self._write_status(body, status)
            was: Mapping[str, Any] = next((c for c in existing or () if c.get("type") == READY), {})
            if service_problem is not None and was.get("reason") != REASON_SERVICE_NOT_FOUND:
                log.warning("HTTPScaledObject %s/%s: %s", *key, service_problem)
                await self.emit(ref_dict, ScalingEvent(REASON_SERVICE_NOT_FOUND, service_problem, "Warning"))
        except API_ERRORS as exc:
            log.warning("HTTPScaledObject %s/%s: cannot write status: %s", *key, api_message(exc))
            return False
        return service_problem is None

    async def _routing_only(
        self, body: Mapping[str, Any], key: tuple[str, str], status: dict[str, Any], service_problem: str | None
    ) -> bool:
        """The add-on's skip-scaledobject-creation: the interceptor routes, nothing here scales."""
        if service_problem is not None:
            condition = ready_condition("False", REASON_SERVICE_NOT_FOUND, service_problem)
        else:
            condition = ready_condition("True", REASON_RECONCILED, SKIPPED_MESSAGE)
        status["conditions"] = _with_condition(body, condition, self.clock())
        try:
            await self._write_status(body, status)
        except API_ERRORS as exc:
            log.warning("HTTPScaledObject %s/%s: cannot write status: %s", *key, api_message(exc))
            return False
        return service_problem is None

    async def _missing_service(self, namespace: str, name: str) -> str | None:
        try:
            await self.client.get(SERVICE, name, namespace=namespace)
        except API_ERRORS as exc:
            if is_not_found(exc):
                return (
                    f"spec.scaleTargetRef.service: Service {namespace}/{name} does not exist; the interceptor "
                    "answers this route's requests with 503 until it does"
                )
            return f"spec.scaleTargetRef.service: cannot read Service {namespace}/{name}: {api_message(exc)}"
        return None

    def start(self, key: tuple[str, str]) -> None:
        runtime = self.runtimes.get(key)
        if runtime is not None and runtime.task is None:
            runtime.task = asyncio.create_task(runtime.loop.run(), name=f"ebb-http:{key[0]}/{key[1]}")

    async def stop(self, key: tuple[str, str]) -> None:
        runtime = self.runtimes.pop(key, None)
        if runtime is None:
            return
        if runtime.task is not None:
            runtime.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.task
        await runtime.observer.drain()
        await runtime.scaler.close()

    async def delete(self, body: Mapping[str, Any]) -> None:
        """Stop scaling; put the target back to the replicas it had before (the add-on's restore); reconcile at once
        the objects refused because of it (kube/requeue.py)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        async with self._locks.setdefault(key, asyncio.Lock()):
            await self._delete_locked(key, body)
        self._locks.pop(key, None)
        obj, _ = parse_object(dict(body), label=f"HTTPScaledObject {key[0]}/{key[1]}")
        target = None
        if isinstance(obj, HTTPScaledObject) and obj.scales:
            target = workload_key(workload_ref_of(obj.scaled_object()))
        self.options.requeue.released(("HTTPScaledObject", *key), target)

    async def _delete_locked(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        runtime = self.runtimes.get(key)
        await self.stop(key)
        if runtime is not None:
            runtime.loop.observer.removed(runtime.loop.ref)
        self.states.pop(str(meta.get("uid") or f"{key[0]}/{key[1]}"), None)
        original = self.original.pop(key, None)
        target_ref = (body.get("spec") or {}).get("scaleTargetRef") or {}
        if original is not None and target_ref.get("name"):
            try:
                kind = await resolve_target_kind(
                    self.client, target_ref.get("apiVersion") or "apps/v1", target_ref.get("kind") or "Deployment"
                )
                await KubeScaleTarget(self.client, kind, target_ref["name"], key[0]).set_replicas(original)
            except EbbError as exc:
                log.warning("HTTPScaledObject %s/%s: cannot restore the original replica count: %s", *key, exc)

    async def close(self) -> None:
        await self.options.requeue.close()
        for key in list(self.runtimes):
            await self.stop(key)
