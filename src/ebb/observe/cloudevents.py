"""Scaling events as CloudEvents 1.0 (structured JSON mode) POSTed to a sink, like KEDA's CloudEventSource.

Types are KEDA's where KEDA has one (`keda.scaledobject.failed.v1` ...); ebb's own events get
`ebb.{scaledobject|scaledjob}.{what}.v1`. The observer only queues (bounded; a full queue drops and counts);
`run()` delivers, retrying a failed POST with exponential backoff, and never holds up scaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ebb.observe.events import PROBLEM_REASON
from ebb.observe.metrics import EbbMetrics
from ebb.runtime.observer import ObjectRef, Observer
from ebb.scaling.types import ScalingEvent

CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
DEFAULT_CLUSTER = "ebb-local"

#: ScalingEvent reason -> the last part of KEDA's type (`keda.<kind>.<what>.v1`).
_KEDA_TYPES = {
    "ScaledObjectReady": "ready",
    "ScaledJobReady": "ready",
    "ScaledObjectCheckFailed": "failed",
    "ScaledJobCheckFailed": "failed",
    "KEDAScalerFailed": "failed",
    "KEDAMetricSourceFailed": "failed",
    PROBLEM_REASON: "failed",
    "ScaledObjectDeleted": "removed",
    "ScaledJobDeleted": "removed",
    "ScaledObjectPaused": "paused",
    "ScaledJobPaused": "paused",
    "ScaledObjectUnpaused": "unpaused",
    "ScaledJobUnpaused": "unpaused",
    "ScaledJobRolloutCleanupStarted": "rolloutcleanup.started",
    "ScaledJobRolloutCleanupCompleted": "rolloutcleanup.completed",
    "ScaledJobRolloutCleanupFailed": "rolloutcleanup.failed",
}
#: ebb's own events (KEDA emits no CloudEvent for them).
_EBB_TYPES = {
    "KEDAScaleTargetActivated": "activated",
    "KEDAScaleTargetDeactivated": "deactivated",
    "SuccessfulRescale": "rescaled",
    "ScaledObjectFallbackActivated": "fallback.activated",
    "ScaledObjectFallbackDeactivated": "fallback.deactivated",
    "ScalerRecovered": "recovered",
    "ScaledJobActive": "active",
    "ScaledJobInactive": "inactive",
    "KEDAJobsCreated": "jobscreated",
}


def event_type(kind: str, event: ScalingEvent) -> str:
    resource = "scaledjob" if kind == "ScaledJob" else "scaledobject"
    what = _KEDA_TYPES.get(event.reason)
    if what is not None:
        return f"keda.{resource}.{what}.v1"
    what = _EBB_TYPES.get(event.reason) or ("failed" if event.type == "Warning" else event.reason.lower())
    return f"ebb.{resource}.{what}.v1"


def envelope(ref: ObjectRef, event: ScalingEvent, now: float, cluster: str = DEFAULT_CLUSTER) -> dict[str, Any]:
    """One CloudEvent in structured mode: KEDA's source/subject layout, data {reason, message}."""
    resource = "scaledjob" if ref.kind == "ScaledJob" else "scaledobject"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/{cluster}/{ref.namespace}/ebb",
        "subject": f"/{cluster}/{ref.namespace}/{resource}/{ref.name}",
        "type": event_type(ref.kind, event),
        "time": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"reason": event.reason, "message": event.message},
    }


class CloudEventsObserver(Observer):
    """Queues CloudEvents for `sink`; `run()` delivers them. Include and exclude filters are exclusive."""

    def __init__(
        self,
        sink: str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        included: Sequence[str] = (),
        excluded: Sequence[str] = (),
        queue_size: int = 1000,
        max_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 10.0,
        metrics: EbbMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if included and excluded:
            raise ValueError("includedEventTypes and excludedEventTypes are mutually exclusive")
        self.sink = sink
        self.cluster = cluster
        self.included = frozenset(included)
        self.excluded = frozenset(excluded)
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.metrics = metrics
        self.clock = clock
        self.dropped = 0
        self.delivered = 0
        self.failed = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._last_problem: dict[ObjectRef, str] = {}

    def wanted(self, type_: str) -> bool:
        if self.included:
            return type_ in self.included
        return type_ not in self.excluded

    def _emit(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        ce = envelope(ref, event, now, self.cluster)
        if not self.wanted(ce["type"]):
            return
        if len(self._queue) >= self.queue_size:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.observer_dropped.labels("cloudevents").inc()
            return
        self._queue.append(ce)
        self._queued_gauge(ref.namespace)
        self._wake.set()

    def _queued_gauge(self, namespace: str) -> None:
        if self.metrics is not None:
            self.metrics.cloudevents_queued.labels(namespace).set(len(self._queue))

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self._emit(ref, event, now)

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if self._last_problem.get(ref) == message or ref.kind not in ("ScaledObject", "ScaledJob"):
            return
        self._last_problem[ref] = message
        self._emit(ref, ScalingEvent(PROBLEM_REASON, message, "Warning"), now)

    def removed(self, ref: ObjectRef) -> None:
        self._last_problem.pop(ref, None)
        reason = "ScaledJobDeleted" if ref.kind == "ScaledJob" else "ScaledObjectDeleted"
        self._emit(ref, ScalingEvent(reason, f"{ref} is no longer scaled"), self.clock())

    async def _deliver(self, http: aiohttp.ClientSession, ce: dict[str, Any]) -> bool:
        delay = self.backoff
        for attempt in range(self.max_attempts):
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.post(self.sink, json=ce, headers={"Content-Type": CONTENT_TYPE}) as resp:
                    if resp.status < 300:
                        return True
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        return False  # the sink refuses this event: retrying will not help
            if attempt + 1 < self.max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        return False

    async def run(self) -> None:
        """Deliver queued events in order until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                ce = self._queue[0]
                ok = await self._deliver(http, ce)
                self._queue.popleft()
                namespace = ce["subject"].split("/")[2]
                self._queued_gauge(namespace)
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1
                if self.metrics is not None:
                    self.metrics.cloudevents_emitted.labels(
                        namespace, "ebb", "http", "emitted" if ok else "failed"
                    ).inc()
