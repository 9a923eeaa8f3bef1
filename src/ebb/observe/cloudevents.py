"""KEDA's CloudEventSource: scaling events as CloudEvents 1.0, POSTed to each source's `destination.http.uri`.

What is sent follows KEDA's pkg/eventemitter: the types of apis/eventing/v1alpha1/cloudevent_types.go, emitted
where KEDA emits them (an object ready, failed, removed, paused, unpaused; a ScaledJob's rollout cleanup; a
TriggerAuthentication created, updated, removed); HTTP binary content mode, as KEDA's sdk-go client sends
(`ce-*` headers, `Content-Type: application/json`, the body `{"reason", "message"}`); source
`/{clusterName}/{keda namespace}/keda`; subject `/{clusterName}/{namespace}/{kind, lowercase}/{name}`.

One `CloudEventHub` serves every source: `publish` hands an event to each source whose subscription wants
it; each source queues (bounded) and delivers in order in its own task, retrying a failed POST, and never
holds up scaling. A source whose deliveries keep failing reports its Active condition False (KEDA's
CloudEventSourceFailed) and True again once one gets through (KEDA stays failed until the spec changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from ebb.errors import SpecError
from ebb.observe.metrics import EbbMetrics
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent
from ebb.spec.auth import AuthStore
from ebb.spec.models import EVENTING_API_VERSION, AnyCloudEventSource, CloudEventSource, EventSubscription

log = logging.getLogger("ebb.cloudevents")

#: KEDA's default for --k8sClusterName (a source's spec.clusterName overrides it).
DEFAULT_CLUSTER = "kubernetes-default"
#: KEDA's condition reasons and messages (apis/eventing/v1alpha1/condition_types.go).
ACTIVE_REASON = "CloudEventSourceActive"
ACTIVE_MESSAGE = "Is configured to send events to the configured destination"
FAILED_REASON = "CloudEventSourceFailed"
FAILED_MESSAGE = "Failed to send events to the configured destination"
#: KEDA's handler type, the `eventsink` label of keda_cloudeventsource_events_emitted_total.
HTTP_SINK = "http"

#: (kind, Kubernetes Event reason) -> CloudEvent type: where KEDA's controllers call EventEmitter.Emit.
REASON_TYPES: dict[tuple[str, str], str] = {
    ("ScaledObject", "ScaledObjectReady"): "keda.scaledobject.ready.v1",
    ("ScaledObject", "ScaledObjectCheckFailed"): "keda.scaledobject.failed.v1",
    ("ScaledObject", "ScaledObjectUpdateFailed"): "keda.scaledobject.failed.v1",
    ("ScaledObject", "ScaledObjectDeleted"): "keda.scaledobject.removed.v1",
    ("ScaledObject", "ScaledObjectPaused"): "keda.scaledobject.paused.v1",
    ("ScaledObject", "ScaledObjectUnpaused"): "keda.scaledobject.unpaused.v1",
    ("ScaledJob", "ScaledJobReady"): "keda.scaledjob.ready.v1",
    ("ScaledJob", "ScaledJobCheckFailed"): "keda.scaledjob.failed.v1",
    ("ScaledJob", "ScaledJobUpdateFailed"): "keda.scaledjob.failed.v1",
    ("ScaledJob", "ScaledJobDeleted"): "keda.scaledjob.removed.v1",
    ("ScaledJob", "ScaledJobPaused"): "keda.scaledjob.paused.v1",
    ("ScaledJob", "ScaledJobUnpaused"): "keda.scaledjob.unpaused.v1",
    ("ScaledJob", "ScaledJobRolloutCleanupStarted"): "keda.scaledjob.rolloutcleanup.started.v1",
    ("ScaledJob", "ScaledJobRolloutCleanupCompleted"): "keda.scaledjob.rolloutcleanup.completed.v1",
    ("ScaledJob", "ScaledJobRolloutCleanupFailed"): "keda.scaledjob.rolloutcleanup.failed.v1",
    ("TriggerAuthentication", "TriggerAuthenticationAdded"): "keda.authentication.triggerauthentication.created.v1",
    ("TriggerAuthentication", "TriggerAuthenticationUpdated"): "keda.authentication.triggerauthentication.updated.v1",
    ("TriggerAuthentication", "TriggerAuthenticationDeleted"): "keda.authentication.triggerauthentication.removed.v1",
    (
        "ClusterTriggerAuthentication",
        "ClusterTriggerAuthenticationAdded",
    ): "keda.authentication.clustertriggerauthentication.created.v1",
    (
        "ClusterTriggerAuthentication",
        "ClusterTriggerAuthenticationUpdated",
    ): "keda.authentication.clustertriggerauthentication.updated.v1",
    (
        "ClusterTriggerAuthentication",
        "ClusterTriggerAuthenticationDeleted",
    ): "keda.authentication.clustertriggerauthentication.removed.v1",
}

_READY_MESSAGES = {"ScaledObject": "ScaledObject is ready for scaling", "ScaledJob": "ScaledJob is ready for scaling"}
_REMOVED_MESSAGES = {"ScaledObject": "ScaledObject was deleted", "ScaledJob": "ScaledJob was deleted"}


@dataclass(frozen=True)
class EventData:
    """One KEDA event, before it becomes a CloudEvent (KEDA's eventdata.EventData)."""

    type: str
    kind: str
    #: "" for cluster-scoped objects (KEDA's subject then has an empty segment, `/{cluster}//kind/name`).
    namespace: str
    name: str
    reason: str
    message: str
    time: float


def event_data(kind: str, namespace: str, name: str, event: ScalingEvent, now: float) -> EventData | None:
    """The CloudEvent for a Kubernetes Event ebb emits about an object, or None where KEDA sends none."""
    type_ = REASON_TYPES.get((kind, event.reason))
    if type_ is None:
        return None
    return EventData(type_, kind, namespace, name, event.reason, event.message, now)


def to_cloudevent(data: EventData, cluster: str, keda_namespace: str) -> CloudEvent:
    """KEDA's envelope: source `/{cluster}/{keda namespace}/keda`, subject `/{cluster}/{ns}/{kind}/{name}`."""
    return CloudEvent(
        attributes={
            "type": data.type,
            "source": f"/{cluster}/{keda_namespace}/keda",
            "subject": f"/{cluster}/{data.namespace}/{data.kind.lower()}/{data.name.lower()}",
            "time": datetime.fromtimestamp(data.time, UTC),
            "datacontenttype": "application/json",
        },
        data={"reason": data.reason, "message": data.message},
    )


SourceKey = tuple[str, str, str]  # (kind, namespace or "", name)
StatusCallback = Callable[[str, str, str], None]  # (status, reason, message) of the Active condition


def http_uri(source: AnyCloudEventSource) -> str:
    """Where the source sends; SpecError when ebb cannot send there (Azure Event Grid)."""
    destination = source.spec.destination
    if destination.http is not None:
        return destination.http.uri  # KEDA too uses http when both are set
    raise SpecError(
        source.ref,
        "spec.destination.azureEventGridTopic",
        "Azure Event Grid topics are not supported by ebb: use destination.http.uri (any HTTP endpoint that "
        "receives CloudEvents, e.g. an Event Grid webhook relay)",
    )


class CloudEventSink:
    """One source's queue and delivery: filter, bounded queue, POST with retries, Active condition."""

    def __init__(
        self,
        key: SourceKey,
        uri: str,
        *,
        cluster: str,
        keda_namespace: str,
        subscription: EventSubscription,
        on_status: StatusCallback | None = None,
        queue_size: int = 1024,
        max_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 10.0,
        metrics: EbbMetrics | None = None,
    ) -> None:
        self.key = key
        self.uri = uri
        self.cluster = cluster
        self.keda_namespace = keda_namespace
        self.subscription = subscription
        self.on_status = on_status
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.metrics = metrics
        self.active = True
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: deque[EventData] = deque()
        self._wake = asyncio.Event()

    @property
    def label(self) -> str:
        kind, namespace, name = self.key
        return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"

    def offer(self, data: EventData) -> None:
        if not self.subscription.wants(data.type):
            return
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.observer_dropped.labels("cloudevents").inc()
            return
        self._queue.append(data)
        self._queued_gauge(data.namespace)
        self._wake.set()

    def _queued_gauge(self, namespace: str) -> None:
        if self.metrics is not None:
            self.metrics.cloudevents_queued.labels(namespace).set(len(self._queue))

    def _set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        if active:
            log.info("%s: delivering to its destination again", self.label)
        else:
            log.warning("%s: %s", self.label, FAILED_MESSAGE)
        if self.on_status is not None:
            status = ("True", ACTIVE_REASON, ACTIVE_MESSAGE) if active else ("False", FAILED_REASON, FAILED_MESSAGE)
            try:
                self.on_status(*status)
            except Exception:  # a status writer's bug must not stop delivery
                log.exception("%s: cannot report the Active condition", self.label)

    async def _deliver(self, http: aiohttp.ClientSession, data: EventData) -> bool:
        message = to_binary(to_cloudevent(data, self.cluster, self.keda_namespace), JSONFormat())
        delay = self.backoff
        for attempt in range(self.max_attempts):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(self.uri, data=message.body, headers=message.headers) as resp:
                    if 200 <= resp.status < 300:
                        return True
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        return False  # the receiver refuses this event: retrying will not help
            if attempt + 1 < self.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        return False

    async def run(self) -> None:
        """Deliver queued events in order until cancelled."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                data = self._queue[0]
                ok = await self._deliver(http, data)
                self._queue.popleft()
                self._queued_gauge(data.namespace)
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1
                self._set_active(ok)
                if self.metrics is not None:
                    self.metrics.cloudevents_emitted.labels(
                        data.namespace, self.key[2], HTTP_SINK, "emitted" if ok else "failed"
                    ).inc()


class CloudEventHub:
    """Every CloudEventSource's sink; `publish` fans an event out to them.

    `cluster` is the default clusterName, `keda_namespace` the namespace in every event's source (KEDA's own
    namespace, KEDA_CLUSTER_OBJECT_NAMESPACE). Sinks run as tasks between `start()` and `stop()`.
    """

    def __init__(
        self,
        *,
        cluster: str = DEFAULT_CLUSTER,
        keda_namespace: str = "keda",
        metrics: EbbMetrics | None = None,
        sink_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.cluster = cluster
        self.keda_namespace = keda_namespace
        self.metrics = metrics
        self.sink_options = dict(sink_options or {})
        self.sinks: dict[SourceKey, CloudEventSink] = {}
        self._tasks: dict[SourceKey, asyncio.Task[None]] = {}
        self._running = False

    def add(self, source: AnyCloudEventSource, *, on_status: StatusCallback | None = None) -> CloudEventSink:
        """Start sending to `source` (replacing an older version of it); SpecError if ebb cannot."""
        uri = http_uri(source)
        self.remove(source.key)
        sink = CloudEventSink(
            source.key,
            uri,
            cluster=source.spec.cluster_name or self.cluster,
            keda_namespace=self.keda_namespace,
            subscription=source.spec.event_subscription,
            on_status=on_status,
            metrics=self.metrics,
            **self.sink_options,
        )
        self.sinks[source.key] = sink
        if self._running:
            self._start(sink)
        return sink

    def remove(self, key: SourceKey) -> None:
        self.sinks.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def _start(self, sink: CloudEventSink) -> None:
        self._tasks[sink.key] = asyncio.create_task(sink.run(), name=f"ebb:cloudevents:{sink.label}")

    def publish(self, data: EventData) -> None:
        for sink in list(self.sinks.values()):
            sink.offer(data)

    def kube_event(self, involved: Mapping[str, Any], event: ScalingEvent, now: float) -> None:
        """A Kubernetes Event the operator posts about `involved` (an ObjectReference): its CloudEvent, if any."""
        data = event_data(
            str(involved.get("kind") or ""),
            str(involved.get("namespace") or ""),
            str(involved.get("name") or ""),
            event,
            now,
        )
        if data is not None:
            self.publish(data)

    async def start(self) -> None:
        self._running = True
        for sink in self.sinks.values():
            if sink.key not in self._tasks:
                self._start(sink)

    async def stop(self) -> None:
        self._running = False
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class CloudEventsObserver(Observer):
    """`ebb run`'s scaling loops to the hub: KEDA's events from what the loops report.

    Ready when an object's first poll completes (and again after a problem), failed for a problem that stops
    it (KEDA's CheckFailed), removed when it stops being scaled; pause and unpause as the core reports them.
    """

    def __init__(self, hub: CloudEventHub, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.clock = clock
        self._ready: set[ObjectRef] = set()
        self._last_problem: dict[ObjectRef, str] = {}

    def _publish(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        data = event_data(ref.kind, ref.namespace, ref.name, event, now)
        if data is not None:
            self.hub.publish(data)

    def poll(self, record: PollRecord) -> None:
        ref = record.ref
        if ref in self._ready or ref.kind not in _READY_MESSAGES:
            return
        self._ready.add(ref)
        self._last_problem.pop(ref, None)
        self._publish(ref, ScalingEvent(f"{ref.kind}Ready", _READY_MESSAGES[ref.kind]), record.time)

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self._publish(ref, event, now)

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if ref.kind not in _READY_MESSAGES or self._last_problem.get(ref) == message:
            return
        self._last_problem[ref] = message
        self._ready.discard(ref)
        self._publish(ref, ScalingEvent(f"{ref.kind}CheckFailed", message, "Warning"), now)

    def removed(self, ref: ObjectRef) -> None:
        self._ready.discard(ref)
        self._last_problem.pop(ref, None)
        if ref.kind in _REMOVED_MESSAGES:
            self._publish(ref, ScalingEvent(f"{ref.kind}Deleted", _REMOVED_MESSAGES[ref.kind]), self.clock())


def build_hub(
    sources: Iterable[AnyCloudEventSource],
    *,
    cluster: str = DEFAULT_CLUSTER,
    keda_namespace: str = "keda",
    metrics: EbbMetrics | None = None,
    sink_options: Mapping[str, Any] | None = None,
) -> tuple[CloudEventHub, list[SpecError]]:
    """A hub with a sink for each source it can send to, and an error for each it cannot."""
    hub = CloudEventHub(cluster=cluster, keda_namespace=keda_namespace, metrics=metrics, sink_options=sink_options)
    errors: list[SpecError] = []
    for source in sources:
        try:
            hub.add(source)
        except SpecError as exc:
            errors.append(exc)
    return hub, errors


def check_authentication(source: AnyCloudEventSource, store: AuthStore) -> None:
    """KEDA resolves a source's authenticationRef before it sends anything (used by Azure Event Grid only; an
    http destination sends no credentials): a reference to nothing is an error, as there."""
    ref = source.spec.authentication_ref
    if ref is None:
        return
    where = "spec.authenticationRef"
    if ref.kind == "ClusterTriggerAuthentication":
        if store.get_cluster_trigger_authentication(ref.name) is None:
            raise SpecError(source.ref, where, f"ClusterTriggerAuthentication {ref.name} not found")
        return
    if source.namespace is None:
        raise SpecError(
            source.ref, f"{where}.kind", "a ClusterCloudEventSource can only reference a ClusterTriggerAuthentication"
        )
    if store.get_trigger_authentication(source.namespace, ref.name) is None:
        raise SpecError(source.ref, where, f"TriggerAuthentication {source.namespace}/{ref.name} not found")


#: The name of the CloudEventSource `ebb run --cloudevents-sink` builds.
SHORTCUT_NAME = "cloudevents-sink"


def shortcut_source(
    uri: str, included: Iterable[str] = (), excluded: Iterable[str] = ()
) -> tuple[CloudEventSource | None, list[SpecError]]:
    """The CloudEventSource `--cloudevents-sink URI [--cloudevents-include T | --cloudevents-exclude T]` stands
    for, validated as a manifest would be (so the flags get KEDA's checks); or None and the errors."""
    from ebb.spec.loader import parse_object  # the loader imports every model: only when a flag asks for it

    subscription: dict[str, list[str]] = {}
    if included:
        subscription["includedEventTypes"] = list(included)
    if excluded:
        subscription["excludedEventTypes"] = list(excluded)
    manifest = {
        "apiVersion": EVENTING_API_VERSION,
        "kind": "CloudEventSource",
        "metadata": {"name": SHORTCUT_NAME, "namespace": "default"},
        "spec": {"destination": {"http": {"uri": uri}}, "eventSubscription": subscription},
    }
    obj, errors = parse_object(manifest, label="--cloudevents-sink")
    return (obj if isinstance(obj, CloudEventSource) else None), errors
