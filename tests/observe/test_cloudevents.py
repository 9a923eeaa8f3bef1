"""CloudEvents delivery to a real HTTP sink: envelope, type mapping, filters, retries, bounded queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from ebb.observe.cloudevents import CloudEventsObserver, event_type
from ebb.observe.metrics import EbbMetrics
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import ScalingEvent
from ebb.web.server import AppServer, serve

SO = ObjectRef("ScaledObject", "shop", "orders")
SJ = ObjectRef("ScaledJob", "batch", "reports")


@dataclass
class Sink:
    served: AppServer
    received: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    failures_left: int = 0
    status: int = 500

    @property
    def url(self) -> str:
        return f"{self.served.url}/events"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    holder: list[Sink] = []

    async def receive(request: web.Request) -> web.Response:
        s = holder[0]
        if s.failures_left > 0:
            s.failures_left -= 1
            return web.Response(status=s.status)
        s.content_types.append(request.headers["Content-Type"])
        s.received.append(json.loads(await request.text()))
        return web.Response(status=202)

    app = web.Application()
    app.add_routes([web.post("/events", receive)])
    served = await serve(app, "127.0.0.1", 0)
    holder.append(Sink(served))
    try:
        yield holder[0]
    finally:
        await served.stop()


async def drain(observer: CloudEventsObserver, expected: int) -> None:
    task = asyncio.create_task(observer.run())
    try:
        for _ in range(500):
            if observer.delivered + observer.failed >= expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {observer.delivered + observer.failed} of {expected} events were handled")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    ("ref", "reason", "kind", "expected"),
    [
        (SO, "ScaledObjectPaused", "Normal", "keda.scaledobject.paused.v1"),
        (SO, "ScaledObjectUnpaused", "Normal", "keda.scaledobject.unpaused.v1"),
        (SO, "KEDAScalerFailed", "Warning", "keda.scaledobject.failed.v1"),
        (SO, "ScaledObjectDeleted", "Normal", "keda.scaledobject.removed.v1"),
        (SJ, "ScaledJobRolloutCleanupStarted", "Normal", "keda.scaledjob.rolloutcleanup.started.v1"),
        (SO, "KEDAScaleTargetActivated", "Normal", "ebb.scaledobject.activated.v1"),
        (SO, "SuccessfulRescale", "Normal", "ebb.scaledobject.rescaled.v1"),
        (SJ, "KEDAJobsCreated", "Normal", "ebb.scaledjob.jobscreated.v1"),
        (SO, "SomethingNew", "Warning", "ebb.scaledobject.failed.v1"),
    ],
)
def test_types_follow_keda_where_keda_has_one(ref: ObjectRef, reason: str, kind: str, expected: str) -> None:
    assert event_type(ref.kind, ScalingEvent(reason, "m", kind)) == expected  # type: ignore[arg-type]


async def test_structured_envelope_reaches_the_sink(sink: Sink) -> None:
    observer = CloudEventsObserver(sink.url, cluster="lab")
    observer.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled from 0 to 1"), 1_700_000_000.0)
    await drain(observer, 1)
    [ce] = sink.received
    assert sink.content_types == ["application/cloudevents+json; charset=UTF-8"]
    assert ce["specversion"] == "1.0"
    assert ce["source"] == "/lab/shop/ebb"
    assert ce["subject"] == "/lab/shop/scaledobject/orders"
    assert ce["type"] == "ebb.scaledobject.activated.v1"
    assert ce["time"] == "2023-11-14T22:13:20Z"
    assert ce["datacontenttype"] == "application/json"
    assert ce["data"] == {"reason": "KEDAScaleTargetActivated", "message": "Scaled from 0 to 1"}
    assert ce["id"]


@pytest.mark.parametrize(
    ("included", "excluded", "delivered"),
    [
        (("keda.scaledobject.failed.v1",), (), ["keda.scaledobject.failed.v1"]),
        ((), ("keda.scaledobject.failed.v1",), ["ebb.scaledobject.activated.v1", "keda.scaledobject.removed.v1"]),
        ((), (), ["ebb.scaledobject.activated.v1", "keda.scaledobject.failed.v1", "keda.scaledobject.removed.v1"]),
    ],
)
async def test_included_and_excluded_types(
    sink: Sink, included: tuple[str, ...], excluded: tuple[str, ...], delivered: list[str]
) -> None:
    observer = CloudEventsObserver(sink.url, included=included, excluded=excluded)
    observer.event(SO, ScalingEvent("KEDAScaleTargetActivated", "up"), 1.0)
    observer.problem(SO, "target missing", 2.0)
    observer.removed(SO)
    await drain(observer, len(delivered))
    assert [ce["type"] for ce in sink.received] == delivered


def test_include_and_exclude_are_exclusive() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        CloudEventsObserver("http://127.0.0.1:1/", included=["a"], excluded=["b"])


async def test_a_failing_sink_is_retried_with_backoff(sink: Sink) -> None:
    sink.failures_left = 2
    metrics = EbbMetrics()
    observer = CloudEventsObserver(sink.url, backoff=0.01, metrics=metrics)
    observer.event(SO, ScalingEvent("ScaledObjectPaused", "paused"), 1.0)
    await drain(observer, 1)
    assert [ce["type"] for ce in sink.received] == ["keda.scaledobject.paused.v1"]
    emitted = metrics.registry.get_sample_value(
        "keda_cloudeventsource_events_emitted_total",
        {"namespace": "shop", "cloudeventsource": "ebb", "eventsink": "http", "state": "emitted"},
    )
    assert emitted == 1.0


async def test_gives_up_after_max_attempts_and_goes_on(sink: Sink) -> None:
    sink.failures_left = 3
    observer = CloudEventsObserver(sink.url, backoff=0.01, max_attempts=3)
    observer.event(SO, ScalingEvent("ScaledObjectPaused", "lost"), 1.0)
    observer.event(SO, ScalingEvent("ScaledObjectUnpaused", "delivered"), 2.0)
    await drain(observer, 2)
    assert (observer.failed, observer.delivered) == (1, 1)
    assert [ce["data"]["message"] for ce in sink.received] == ["delivered"]


async def test_a_client_error_is_not_retried(sink: Sink) -> None:
    sink.failures_left, sink.status = 1, 400
    observer = CloudEventsObserver(sink.url, backoff=0.01)
    observer.event(SO, ScalingEvent("ScaledObjectPaused", "refused"), 1.0)
    observer.event(SO, ScalingEvent("ScaledObjectUnpaused", "accepted"), 2.0)
    await drain(observer, 2)
    assert [ce["data"]["message"] for ce in sink.received] == ["accepted"]


def test_full_queue_drops_and_counts_without_blocking() -> None:
    observer = CloudEventsObserver("http://127.0.0.1:1/", queue_size=2)
    for i in range(5):
        observer.event(SO, ScalingEvent("ScaledObjectPaused", str(i)), float(i))
    assert observer.dropped == 3
