"""The ScaledObject controller: reconcile and delete, one scaling loop per object, metrics for the HPA.

Kubernetes-facing and thin: the decisions come from `ScaledObjectDecider` (mode "hpa" or "direct") run by
`ScaledObjectLoop` over a /scale target; the manifests come from hpa.py and status.py. kopf calls
`reconcile` and `delete` (see `register_handlers`); tests call them directly against a fake API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lightkube.types import PatchType

from ebb.errors import EbbError, ScalerError, SpecError
from ebb.kube import status as st
from ebb.kube.admission import ConflictIndex, Denial, arrival, check_conflicts
from ebb.kube.auth import PrefetchedStore, container_env, prefetch_auth, template_containers
from ebb.kube.client import API_ERRORS, EVENT, HPA, SCALED_OBJECT, AsyncClient, api_message, is_not_found, to_dict
from ebb.kube.drain import PodDrainer, predict_hpa_replicas
from ebb.kube.endpoints import endpoint_slice_lister
from ebb.kube.hpa import (
    SCALED_OBJECT_LABEL,
    TargetKind,
    build_hpa,
    external_metric_names,
    hpa_needs_update,
    resource_metric_names,
)
from ebb.kube.http_admission import check_workload_of_scaled_object
from ebb.kube.http_feed import InterceptorFeed, interceptor_scalers
from ebb.kube.metrics_provider import ExternalMetricValue, MetricDescriptor, MetricNotFound
from ebb.kube.requeue import Claim, Requeue, reconcile_current, workload
from ebb.kube.scale import KubeScaleTarget, resolve_target_kind
from ebb.kube.webhook import KubeCluster
from ebb.observe.cloudevents import CloudEventHub
from ebb.observe.services import Services
from ebb.runtime.build import build_scalers, object_ref
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.predictive import with_prediction
from ebb.runtime.scaled_object import ScaledObjectLoop, close_scalers, read_trigger
from ebb.scalers.base import DEFAULT_TIMEOUT, MetricSpec, Scaler
from ebb.scaling.lifecycle import (
    COMPOSITE_METRIC,
    NO_FALLBACK_MESSAGE,
    PAUSED_MESSAGE,
    UNPAUSED_MESSAGE,
    ScaledObjectDecider,
)
from ebb.scaling.types import Condition, LifecycleState, ScalingEvent
from ebb.spec import object_policy, parse_object, pause_state
from ebb.spec.drain import busy_probe
from ebb.spec.models import ScaledObject

log = logging.getLogger("ebb.operator")
#: Hints already logged (see Observer.hint).
_HINTED: set[str] = set()

#: KEDA's finalizer on ScaledObjects (controllers/keda/scaledobject_finalizer.go).
FINALIZER = "finalizer.keda.sh"
#: Per-object override of the operator's --scaling mode.
SCALING_ANNOTATION = "ebb.dev/scaling"

Mode = Literal["hpa", "direct"]
#: The longest wait between two attempts at a failing reconcile.
MAX_RETRY_DELAY = 300.0


def retry_delay(retry: int) -> float:
    """Seconds before attempt `retry + 1` of a failed reconcile: 1, 2, 4 ... up to MAX_RETRY_DELAY (KEDA's
    controller-runtime requeues failures with exponential backoff too)."""
    return min(MAX_RETRY_DELAY, 2.0 ** min(retry, 16))


@dataclass
class OperatorOptions:
    scaling: Mode = "hpa"
    cluster_object_namespace: str = "ebb"
    timeout: float = DEFAULT_TIMEOUT
    #: Prometheus metrics, history, event log and CloudEvents, as in `ebb run` (None: Kubernetes status only).
    services: Services | None = None
    #: ScaledObjects and HPAs indexed from watch events (runner.py); None: the conflict check lists the namespace.
    conflicts: ConflictIndex | None = None
    #: CloudEventSources' sinks (kube/eventing.py): every Event the controllers post also goes here.
    cloudevents: CloudEventHub | None = None
    #: The interceptors' load (kube/http_feed.py): `external-push` triggers naming an InterceptorRoute or an
    #: HTTPScaledObject read it here instead of dialling the add-on's scaler.
    feed: InterceptorFeed | None = None
    #: Objects refused for a conflict, shared by the controllers: reconciled again when the other object goes.
    requeue: Requeue = field(default_factory=Requeue)


@dataclass
class _Runtime:
    """One ScaledObject's live parts."""

    so: ScaledObject
    uid: str
    mode: Mode
    loop: ScaledObjectLoop
    scalers: list[Scaler]
    specs: list[MetricSpec]
    task: asyncio.Task[None] | None = None
    writes: set[asyncio.Task[None]] = field(default_factory=set)
    #: Busy-aware scale-in (ebb.dev/busy-probe), None when the object does not opt in.
    drainer: PodDrainer | None = None


def log_event(obj: str, event: ScalingEvent) -> None:
    """What a loop reports as an Event goes to the log too (KEDA logs scaler errors): Warnings (a scaler that
    fails, a Job that cannot be created) at WARNING, the rest at INFO. Messages are the Events' own, which never
    carry a secret value (errors.redact)."""
    level = logging.WARNING if event.type == "Warning" else logging.INFO
    log.log(level, "%s: %s: %s", obj, event.reason, event.message)


def _error_text(exc: EbbError) -> str:
    """`field: message`, so the Ready condition names the field at fault."""
    if isinstance(exc, SpecError):
        return f"{exc.field}: {exc.message}" if exc.field else exc.message
    return str(exc)


class _KubeObserver(Observer):
    """Turns the loop's reports into status patches and Events (written in the background, in order)."""

    def __init__(self, controller: ScaledObjectController, manifest_ref: dict[str, Any]) -> None:
        self.controller = controller
        self.manifest_ref = manifest_ref
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_problem: str | None = None

    def _spawn(self, coro: Any) -> None:
        async def run() -> None:
            async with self._lock:
                try:
                    await coro
                except API_ERRORS as exc:
                    log.warning("%s: cannot write to the API: %s", self.manifest_ref.get("name"), exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def poll(self, record: PollRecord) -> None:
        self._spawn(self.controller._write_poll(self.manifest_ref, record))
        self.controller._after_poll(self.manifest_ref, record)

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        log_event(str(ref), event)
        self._spawn(self.controller.emit(self.manifest_ref, event))

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        # A problem that persists (push unavailable, retried with backoff) is said once, then at DEBUG.
        repeated = message == self._last_problem
        self._last_problem = message
        log.log(logging.DEBUG if repeated else logging.WARNING, "%s: %s", ref, message)

    def hint(self, ref: ObjectRef, key: str, message: str, now: float) -> None:
        if key not in _HINTED:  # once per server for the whole operator, not per object
            _HINTED.add(key)
            log.info("hint: %s", message)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class ScaledObjectController:
    """Reconciles ScaledObjects and serves their metrics (implements kube.metrics_provider.MetricsProvider)."""

    def __init__(
        self, client: AsyncClient, options: OperatorOptions | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.options = options or OperatorOptions()
        self.clock = clock
        #: Start each object's loop on reconcile (tests turn this off and poll by hand).
        self.autostart = True
        self.runtimes: dict[tuple[str, str], _Runtime] = {}
        self.states: dict[str, LifecycleState] = {}
        self._observers: dict[tuple[str, str], _KubeObserver] = {}
        #: Status of ScaledObjects and HPAs as the watches last delivered it ((kind, namespace, name) -> status):
        #: where the watches run (OperatorOptions.conflicts covers the namespace), polls read it, not the API.
        self._seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        #: One reconcile or delete of an object at a time (kopf's, and the re-queue's after a conflict went).
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # --- API writes ----------------------------------------------------------------------------------

    async def emit(self, manifest_ref: Mapping[str, Any], event: ScalingEvent) -> None:
        if self.options.cloudevents is not None:
            self.options.cloudevents.kube_event(manifest_ref, event, self.clock())
        body = st.event_manifest(manifest_ref, event, self.clock())
        await self.client.create(EVENT(body))

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        patched = await self.client.patch(
            SCALED_OBJECT.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )
        key = ("ScaledObject", namespace, name)
        if key in self._seen:  # the next poll compares against what was written, not a watch event behind it
            self._seen[key] = dict(to_dict(patched).get("status") or {})

    def observe(self, kind: str, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        """A watch event for a ScaledObject or an HPA: remember its status, so that polls need no GET."""
        meta = body.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        if deleted:
            self._seen.pop(key, None)
        else:
            self._seen[key] = dict(body.get("status") or {})

    def _watched(self, namespace: str) -> bool:
        conflicts = self.options.conflicts
        return conflicts is not None and conflicts.covers(namespace)

    async def _current_status(self, namespace: str, name: str) -> dict[str, Any]:
        seen = self._seen.get(("ScaledObject", namespace, name))
        if seen is not None and self._watched(namespace):
            return dict(seen)
        try:
            obj = to_dict(await self.client.get(SCALED_OBJECT, name, namespace=namespace))
        except API_ERRORS as exc:
            if is_not_found(exc):
                return {}
            raise
        return dict(obj.get("status") or {})

    async def _write_poll(self, manifest_ref: Mapping[str, Any], record: PollRecord) -> None:
        if record.decision is None:
            return
        namespace, name = str(manifest_ref["namespace"]), str(manifest_ref["name"])
        runtime = self.runtimes.get((namespace, name))
        names = external_metric_names(runtime.so, runtime.specs) if runtime else ()
        existing = await self._current_status(namespace, name)
        hpa_active = None
        if runtime is not None and runtime.mode == "hpa":
            hpa_active = st.hpa_active_condition(await self._get_hpa(namespace, runtime.so.hpa_name))
        patch = st.decision_status(
            record.decision,
            existing,
            external_metric_names=names,
            active_metrics=(t.metric_name for t in record.triggers if t.active),
            hpa_active=hpa_active,
        )
        # Most polls change nothing: skip the write, as KEDA does, to spare the API server at scale.
        if st.patch_changes(patch, existing):
            await self.patch_status(namespace, name, patch)

    async def _get_hpa(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The HPA (its status at least), or None when it is missing or cannot be read (KEDA then leaves HPAActive
        as it was). From the watch where it runs, else from the API."""
        if self._watched(namespace):
            seen = self._seen.get(("HorizontalPodAutoscaler", namespace, name))
            return {"status": seen} if seen is not None else None
        try:
            return to_dict(await self.client.get(HPA, name, namespace=namespace))
        except API_ERRORS as exc:
            if not is_not_found(exc):
                log.debug("cannot read HPA %s/%s: %s", namespace, name, api_message(exc))
            return None

    async def _fail(self, body: Mapping[str, Any], reason: str, message: str, *, once: bool = False) -> None:
        """Ready=False with `message`, and a Warning Event; `once`: no Event (nor warning) when the condition says
        so already (a conflict, retried with backoff until the other object goes, is reported once)."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        status = body.get("status") or {}
        if once and st.not_ready_saying(status, message):
            log.debug("ScaledObject %s/%s: %s", namespace, name, message)
            return
        log.warning("ScaledObject %s/%s: %s", namespace, name, message)
        await self.patch_status(namespace, name, st.error_status(status, reason, message))
        await self.emit(st.object_reference(body), ScalingEvent(reason, message, "Warning"))

    # --- reconcile ------------------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any]) -> bool:
        """Bring the cluster in line with one ScaledObject. Never raises for a broken object: it reports it, and
        returns False when trying again later may succeed (a target or Secret that does not exist yet, an API
        error, a 403 until RBAC is fixed): the caller retries with backoff (`retry_delay`), as KEDA requeues.
        A spec that does not parse is not retried: only an edit can fix it, and an edit reconciles again."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._reconcile_locked(key, body)

    async def _reconcile_locked(self, key: tuple[str, str], body: Mapping[str, Any]) -> bool:
        await self.stop(key)
        # Each outcome tells the re-queue (kube/requeue.py) whether this object scales, lost a conflict, or neither.
        requeue, me = self.options.requeue, ("ScaledObject", *key)
        obj, errors = parse_object(dict(body), label=f"ScaledObject {key[0]}/{key[1]}")
        if errors or not isinstance(obj, ScaledObject):
            requeue.cleared(me)
            message = "; ".join(_error_text(e) for e in errors) or "not a ScaledObject"
            await self._fail(body, "ScaledObjectCheckFailed", message)
            return True
        claim = Claim(
            workload((body.get("spec") or {}).get("scaleTargetRef")),
            arrival(obj.metadata.creation_timestamp, obj.name),
            lambda: self._reconcile_again(*key),
        )
        try:
            await self._reconcile(obj, body)
        except EbbError as exc:
            if isinstance(exc, Denial):
                # It does not scale: no HPA of its own either (as when paused); and it is reconciled again as soon
                # as the object it lost to goes.
                with contextlib.suppress(*API_ERRORS):
                    await self._delete_owned_hpa(obj, str((body.get("metadata") or {}).get("uid") or ""))
                requeue.refused(me, replace(claim, conflicting=exc.conflicting))
            else:
                requeue.cleared(me)
            await self._fail(body, "ScaledObjectCheckFailed", _error_text(exc), once=isinstance(exc, Denial))
            return False
        except API_ERRORS as exc:
            requeue.cleared(me)
            await self._fail(body, "ScaledObjectCheckFailed", f"Kubernetes API: {api_message(exc)}")
            return False
        requeue.scaling(me, claim)
        return True

    async def _reconcile_again(self, namespace: str, name: str) -> None:
        """Reconcile the object as it is now (the object it was refused for is going); nothing if it is gone."""
        await reconcile_current(self.client, SCALED_OBJECT, namespace, name, self.reconcile)

    def mode_for(self, so: ScaledObject) -> Mode:
        wanted = so.metadata.annotations.get(SCALING_ANNOTATION, self.options.scaling)
        if wanted not in ("hpa", "direct"):
            raise SpecError(
                so.ref, f"metadata.annotations[{SCALING_ANNOTATION}]", f"expected hpa or direct, got {wanted!r}"
            )
        return "direct" if wanted == "direct" else "hpa"

    async def _reconcile(self, so: ScaledObject, body: Mapping[str, Any]) -> None:
        namespace, name = so.metadata.namespace, so.name
        uid = str((body.get("metadata") or {}).get("uid") or "")
        ref_dict = st.object_reference(body)
        existing_status = dict(body.get("status") or {})
        target_ref = so.spec.scale_target_ref
        kind = await resolve_target_kind(self.client, target_ref.api_version, target_ref.kind)
        target = KubeScaleTarget(self.client, kind, target_ref.name, namespace)
        mode = self.mode_for(so)
        probe = busy_probe(so.metadata.annotations, so.ref)
        if probe is not None:
            target.drainer = PodDrainer(
                self.client,
                namespace,
                target.label,
                probe,
                selector=target.pod_selector,
                clock=self.clock,
                statefulset=kind.kind == "StatefulSet" and kind.group == "apps",
            )
        await self._check_conflicts(so, kind)

        current = await target.get_replicas()
        status: dict[str, Any] = {
            "scaleTargetKind": f"{kind.api_version}.{kind.kind}",
            "scaleTargetGVKR": kind.as_status(),
            "triggersTypes": st.triggers_types(so),
            "authenticationsTypes": st.authentications_types(so),
        }
        if existing_status.get("originalReplicaCount") is None:
            status["originalReplicaCount"] = current

        pause = pause_state(so)
        if pause.paused:
            # KEDA: a paused object has no HPA and no loop; paused-replicas pins the target.
            await self._delete_owned_hpa(so, uid)
            if pause.paused_replicas is not None and current != pause.paused_replicas:
                await target.set_replicas(pause.paused_replicas)
            status["pausedReplicaCount"] = pause.paused_replicas
            conditions = {"Paused": Condition("True", "ScaledObjectPaused", PAUSED_MESSAGE)}
            status["conditions"] = st.merge_conditions(existing_status.get("conditions"), conditions)
            await self.patch_status(namespace, name, status)
            if not any(
                c.get("type") == "Paused" and c.get("status") == "True" for c in existing_status.get("conditions") or ()
            ):
                await self.emit(ref_dict, ScalingEvent("ScaledObjectPaused", PAUSED_MESSAGE))
            return
        status["pausedReplicaCount"] = None
        conditions = {}
        if any(
            c.get("type") == "Paused" and c.get("status") == "True" for c in existing_status.get("conditions") or ()
        ):
            # KEDA (scaledobject_controller.go): the annotation is gone, so the condition goes False, with an Event.
            conditions["Paused"] = Condition("False", "ScaledObjectUnpaused", UNPAUSED_MESSAGE)
            await self.emit(ref_dict, ScalingEvent("ScaledObjectUnpaused", UNPAUSED_MESSAGE))

        scalers = await self._build_scalers(so, target, mode)
        try:
            specs = await self._metric_specs(scalers)
            status["externalMetricNames"] = external_metric_names(so, specs)
            status["resourceMetricNames"] = resource_metric_names(specs)
            if mode == "hpa":
                hpa = build_hpa(so, specs, kind, uid=uid)
                await self._apply_hpa(hpa)
                status["hpaName"] = so.hpa_name
            else:
                await self._delete_owned_hpa(so, uid)
                status["hpaName"] = None
        except BaseException:
            await close_scalers(scalers)
            raise

        state = self.states.setdefault(uid or f"{namespace}/{name}", LifecycleState())
        last_active = st.parse_rfc3339(existing_status.get("lastActiveTime"))
        if state.last_active_time is None and last_active is not None:
            state.last_active_time = last_active
        decider = ScaledObjectDecider(
            object_policy(so, now=self.clock()),
            state,
            mode=mode,
            obj=so.ref,
            target=target.label,
            trigger_names=[t.name for t in so.spec.triggers if t.name and not t.is_resource],
        )
        conditions["Ready"] = Condition(
            "True", "ScaledObjectReady", "ScaledObject is defined correctly and is ready for scaling"
        )
        if not decider.fallback_enabled:
            # KEDA's reconcile: no (valid) fallback, so none can be active. The loop's polls set it otherwise.
            conditions["Fallback"] = Condition("False", "NoFallbackFound", NO_FALLBACK_MESSAGE)
        status["conditions"] = st.merge_conditions(existing_status.get("conditions"), conditions)
        await self.patch_status(namespace, name, status)
        if not any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in existing_status.get("conditions") or ()
        ):
            # KEDA: an Event (and CloudEvent) the first time the object is ready, or when it was not before.
            await self.emit(ref_dict, ScalingEvent("ScaledObjectReady", "ScaledObject is ready for scaling"))
        kube_observer = _KubeObserver(self, ref_dict)
        if target.drainer is not None:
            loop_ref = object_ref(so)

            def drain_event(reason: str, message: str, type_: Literal["Normal", "Warning"]) -> None:
                kube_observer.event(loop_ref, ScalingEvent(reason, message, type_), self.clock())

            target.drainer.on_event = drain_event
        services = self.options.services
        observer: Observer = services.observers(kube_observer, [so]) if services is not None else kube_observer
        loop = ScaledObjectLoop(
            object_ref(so),
            scalers,
            target,
            decider,
            polling_interval=float(so.spec.polling_interval),
            observer=observer,
            annotations=so.metadata.annotations,
            idle_replicas=so.spec.idle_replica_count,
            clock=self.clock,
        )
        runtime = _Runtime(so=so, uid=uid, mode=mode, loop=loop, scalers=scalers, specs=specs, drainer=target.drainer)
        self.runtimes[(namespace, name)] = runtime
        self._observers[(namespace, name)] = kube_observer
        await self.emit(ref_dict, ScalingEvent("KEDAScalersStarted", f"Started scalers watch for {so.ref}"))
        if self.autostart:
            self.start((namespace, name))

    def start(self, key: tuple[str, str]) -> None:
        """Run the object's loop in the background (kopf's reconcile returns; the loop lives on)."""
        runtime = self.runtimes.get(key)
        if runtime is not None and runtime.task is None:
            runtime.task = asyncio.create_task(runtime.loop.run(), name=f"ebb:{key[0]}/{key[1]}")

    async def stop(self, key: tuple[str, str]) -> None:
        """Stop the object's loop and release its scalers (before a rebuild, on delete or pause)."""
        runtime = self.runtimes.pop(key, None)
        if runtime is None:
            return
        if runtime.task is not None:
            runtime.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runtime.task
        for write in list(runtime.writes):
            write.cancel()
        await asyncio.gather(*runtime.writes, return_exceptions=True)
        observer = self._observers.pop(key, None)
        if observer is not None:
            await observer.drain()
        await close_scalers(runtime.scalers)

    async def close(self) -> None:
        await self.options.requeue.close()
        for key in list(self.runtimes):
            await self.stop(key)
        self._seen.clear()  # the watches stop with the loops; the next term's replay fills it again

    async def delete(self, body: Mapping[str, Any]) -> None:
        """The object is going: stop scaling, restore the original count if asked (the HPA goes by ownerReference),
        and reconcile at once the objects refused because of it (kube/requeue.py)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        async with self._locks.setdefault(key, asyncio.Lock()):
            await self._delete_locked(key, body)
        self._locks.pop(key, None)
        self.options.requeue.released(("ScaledObject", *key), workload((body.get("spec") or {}).get("scaleTargetRef")))

    async def _delete_locked(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        runtime = self.runtimes.get(key)
        await self.stop(key)
        if runtime is not None:
            runtime.loop.observer.removed(runtime.loop.ref)  # its Prometheus series go with it
            if runtime.drainer is not None:  # the costs ebb set go with the object that asked for them
                await runtime.drainer.clear()
        self.states.pop(str(meta.get("uid") or f"{key[0]}/{key[1]}"), None)
        spec = body.get("spec") or {}
        advanced = spec.get("advanced") or {}
        original = (body.get("status") or {}).get("originalReplicaCount")
        target_ref = spec.get("scaleTargetRef") or {}
        if advanced.get("restoreToOriginalReplicaCount") and original is not None and target_ref.get("name"):
            try:
                kind = await resolve_target_kind(
                    self.client, target_ref.get("apiVersion", "apps/v1"), target_ref.get("kind", "Deployment")
                )
                await KubeScaleTarget(self.client, kind, target_ref["name"], key[0]).set_replicas(int(original))
            except EbbError as exc:
                log.warning("ScaledObject %s/%s: cannot restore the original replica count: %s", *key, exc)
        with contextlib.suppress(*API_ERRORS):
            await self.emit(st.object_reference(body), ScalingEvent("ScaledObjectDeleted", "ScaledObject was deleted"))

    # --- busy-aware scale-in -----------------------------------------------------------------------------

    def _after_poll(self, manifest_ref: Mapping[str, Any], record: PollRecord) -> None:
        """After a poll of an object with a busy probe: mark its pods for the scale-in the HPA is about to make,
        or clear the costs once no scale-in is pending (in the background: probes take time)."""
        runtime = self.runtimes.get((str(manifest_ref.get("namespace")), str(manifest_ref.get("name"))))
        if runtime is None or runtime.drainer is None or record.decision is None:
            return
        task = asyncio.create_task(self._drain_check(runtime, runtime.drainer, record))
        runtime.writes.add(task)
        task.add_done_callback(runtime.writes.discard)

    async def _drain_check(self, runtime: _Runtime, drainer: PodDrainer, record: PollRecord) -> None:
        decision = record.decision
        assert decision is not None
        current = record.desired_replicas
        try:
            if runtime.mode == "hpa" and decision.desired_replicas is None and current > 0:
                spec = runtime.so.spec
                predicted = None
                if not pause_state(runtime.so).paused_scale_in:
                    predicted = predict_hpa_replicas(
                        runtime.specs,
                        decision.metric_values,
                        current,
                        spec.min_replica_count,
                        spec.max_replica_count,
                        record.time,
                        record.ready_replicas,
                    )
                if predicted is not None and predicted < current:
                    await drainer.expect_scale_in(current, predicted)
                    return
            elif decision.desired_replicas is not None and decision.desired_replicas < current:
                return  # direct mode, a scale-in held back for busy pods: the next poll carries on
            if record.desired_replicas < record.current_replicas:
                return  # scaled in this poll: the ReplicaSet controller reads the costs now; the next poll clears
            if drainer.marked:
                await drainer.clear()
        except EbbError as exc:
            log.warning("%s: busy-aware scale-in: %s", runtime.so.ref, exc)

    # --- pieces ---------------------------------------------------------------------------------------

    async def _check_conflicts(self, so: ScaledObject, kind: TargetKind) -> None:
        """KEDA's webhook conflict checks, as conditions: one ScaledObject per workload and per HPA name (the one
        created first keeps it), no foreign HPA on the workload. Lookups in the watch-fed index when one is wired
        and loaded, else one listing of the namespace per kind (kube.admission.check_conflicts). Then the webhook's
        HTTPScaledObject check, by arrival: an HTTPScaledObject created before this object scales the workload,
        and this one does not (one listing of the namespace's HTTPScaledObjects; none when the add-on's CRD is
        absent)."""
        cluster = KubeCluster(self.client)
        # By arrival (ordered): of two ScaledObjects on one workload (made while the webhook was off, or before
        # ebb was installed) the first keeps scaling, the later one is refused.
        denial = await check_conflicts(
            so, self.options.conflicts, cluster, target_type=f"{kind.api_version}.{kind.kind}", ordered=True
        )
        if denial is None:
            denial = await check_workload_of_scaled_object(so, cluster, ordered=True)
        if denial is not None:
            raise denial

    async def _build_scalers(self, so: ScaledObject, target: KubeScaleTarget, mode: Mode) -> list[Scaler]:
        store = PrefetchedStore()
        await prefetch_auth(
            self.client, so, cluster_object_namespace=self.options.cluster_object_namespace, store=store
        )
        workload = await target.get_manifest()
        containers = template_containers(workload)
        env = (
            await container_env(
                self.client,
                store,
                containers,
                so.metadata.namespace,
                wanted=so.spec.scale_target_ref.env_source_container_name,
                obj=f"{target.label} (the scale target of {so.ref})",
                path="spec.template.spec.containers",
            )
            if containers
            else None
        )
        if mode == "direct":
            for index, trigger in enumerate(so.spec.triggers):
                if trigger.is_resource:
                    raise SpecError(
                        so.ref,
                        f"spec.triggers[{index}].type",
                        f"{trigger.type} triggers need the HPA (metrics-server measures them): use scaling mode hpa",
                    )
        scalers = build_scalers(
            so,
            store,
            env,
            env_secrets=env.secret_values if env is not None else frozenset(),
            timeout=self.options.timeout,
            cluster_object_namespace=self.options.cluster_object_namespace,
            endpoint_slices=endpoint_slice_lister(self.client),
        )
        if self.options.feed is not None:
            try:
                scalers = await interceptor_scalers(self.client, so, scalers, self.options.feed)
            except BaseException:
                await close_scalers(scalers)
                raise
        # ebb.dev/predictive as under `ebb run`, seeded from the history (and its read-back from Prometheus)
        try:
            return with_prediction(so, scalers, clock=self.clock, history=self.options.services, ref=object_ref(so))
        except EbbError:
            await close_scalers(scalers)
            raise

    async def _metric_specs(self, scalers: list[Scaler]) -> list[MetricSpec]:
        specs: list[MetricSpec] = []
        for scaler in scalers:
            await scaler.prepare()
            specs.append(scaler.metric_spec())
        return specs

    async def _apply_hpa(self, hpa: dict[str, Any]) -> None:
        meta = hpa["metadata"]
        try:
            found = to_dict(await self.client.get(HPA, meta["name"], namespace=meta["namespace"]))
        except API_ERRORS as exc:
            if not is_not_found(exc):
                raise
            await self.client.create(HPA(hpa))
            return
        if hpa_needs_update(hpa, found):
            await self.client.patch(HPA, meta["name"], hpa, namespace=meta["namespace"], patch_type=PatchType.MERGE)

    async def _delete_owned_hpa(self, so: ScaledObject, uid: str) -> None:
        try:
            found = to_dict(await self.client.get(HPA, so.hpa_name, namespace=so.metadata.namespace))
        except API_ERRORS as exc:
            if is_not_found(exc):
                return
            raise
        owners = (found.get("metadata") or {}).get("ownerReferences") or []
        if any(o.get("kind") == "ScaledObject" and o.get("name") == so.name for o in owners):
            with contextlib.suppress(*API_ERRORS):
                await self.client.delete(HPA, so.hpa_name, namespace=so.metadata.namespace)

    # --- MetricsProvider ------------------------------------------------------------------------------

    def list_metrics(self) -> list[MetricDescriptor]:
        out: list[MetricDescriptor] = []
        for (namespace, name), runtime in self.runtimes.items():
            if runtime.mode != "hpa":
                continue
            for metric in external_metric_names(runtime.so, runtime.specs):
                out.append(MetricDescriptor(namespace, metric, name))
        return out

    async def get_metric(
        self, namespace: str, metric_name: str, selector: Mapping[str, str]
    ) -> list[ExternalMetricValue]:
        so_name = selector.get(SCALED_OBJECT_LABEL)
        runtime = self.runtimes.get((namespace, so_name or ""))
        if runtime is None or metric_name not in external_metric_names(runtime.so, runtime.specs):
            raise MetricNotFound(f"no ScaledObject {namespace}/{so_name} serving {metric_name}")
        decision = runtime.loop.last_decision
        now = self.clock()
        if metric_name != COMPOSITE_METRIC:
            index = next(i for i, s in enumerate(runtime.specs) if s.name == metric_name)
            if not runtime.so.spec.triggers[index].use_cached_metrics:
                result = await read_trigger(runtime.scalers[index])
                if result.error is None and result.value is not None:
                    return [ExternalMetricValue(metric_name, result.value, now)]
                # A failing source: serve the fallback value of the last poll if fallback is active.
                if decision is None or not runtime.loop.decider.state.fallback_active:
                    raise ScalerError(runtime.so.ref, f"triggers[{index}]", result.error or "no value")
        if decision is None or metric_name not in decision.metric_values:
            raise ScalerError(runtime.so.ref, metric_name, "no value yet (the first poll has not completed)")
        return [ExternalMetricValue(metric_name, decision.metric_values[metric_name], now)]
