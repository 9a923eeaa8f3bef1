"""CloudEventSource delivery to a real HTTP receiver: KEDA's types, envelope and payload, filters, retries,
the Active condition, the bounded queue, and the runtime's events mapped to KEDA's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ebb.errors import SpecError
from ebb.observe.cloudevents import (
    ACTIVE_REASON,
    FAILED_MESSAGE,
    FAILED_REASON,
    CloudEventHub,
    CloudEventsObserver,
    EventData,
    build_hub,
    event_data,
    shortcut_source,
)
from ebb.observe.metrics import EbbMetrics
from ebb.runtime.observer import ObjectRef, PollRecord
from ebb.scaling.types import Decision, ScalingEvent
from ebb.spec import parse_object
from ebb.spec.models import AnyCloudEventSource
from tests.observe._receiver import Receiver, receiver
from tests.runtime._support import eventually

SO = ObjectRef("ScaledObject", "shop", "orders")
SJ = ObjectRef("ScaledJob", "batch", "reports")
T0 = 1_700_000_000.0
FAST = {"backoff": 0.01, "max_attempts": 3}


def source(uri: str, *, name: str = "sink", cluster: bool = False, **spec: Any) -> AnyCloudEventSource:
    kind = "ClusterCloudEventSource" if cluster else "CloudEventSource"
    metadata: dict[str, Any] = {"name": name} if cluster else {"name": name, "namespace": "shop"}
    obj, errors = parse_object(
        {
            "apiVersion": "eventing.keda.sh/v1alpha1",
            "kind": kind,
            "metadata": metadata,
            "spec": {"destination": {"http": {"uri": uri}}, **spec},
        }
    )
    assert not errors, errors
    assert obj is not None
    return obj  # type: ignore[return-value]


@pytest.fixture
async def sink() -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


@pytest.fixture
async def hub() -> AsyncIterator[CloudEventHub]:
    h = CloudEventHub(cluster="lab", keda_namespace="keda", sink_options=FAST)
    await h.start()
    yield h
    await h.stop()


def so_event(reason: str, message: str = "m", kind: str = "Normal") -> EventData:
    data = event_data("ScaledObject", "shop", "Orders", ScalingEvent(reason, message, kind), T0)  # type: ignore[arg-type]
    assert data is not None
    return data


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        ("ScaledObject", "ScaledObjectReady", "keda.scaledobject.ready.v1"),
        ("ScaledObject", "ScaledObjectCheckFailed", "keda.scaledobject.failed.v1"),
        ("ScaledObject", "ScaledObjectUpdateFailed", "keda.scaledobject.failed.v1"),
        ("ScaledObject", "ScaledObjectDeleted", "keda.scaledobject.removed.v1"),
        ("ScaledObject", "ScaledObjectPaused", "keda.scaledobject.paused.v1"),
        ("ScaledObject", "ScaledObjectUnpaused", "keda.scaledobject.unpaused.v1"),
        ("ScaledJob", "ScaledJobReady", "keda.scaledjob.ready.v1"),
        ("ScaledJob", "ScaledJobCheckFailed", "keda.scaledjob.failed.v1"),
        ("ScaledJob", "ScaledJobDeleted", "keda.scaledjob.removed.v1"),
        ("ScaledJob", "ScaledJobRolloutCleanupStarted", "keda.scaledjob.rolloutcleanup.started.v1"),
        ("ScaledJob", "ScaledJobRolloutCleanupFailed", "keda.scaledjob.rolloutcleanup.failed.v1"),
        ("TriggerAuthentication", "TriggerAuthenticationAdded", "keda.authentication.triggerauthentication.created.v1"),
        (
            "ClusterTriggerAuthentication",
            "ClusterTriggerAuthenticationDeleted",
            "keda.authentication.clustertriggerauthentication.removed.v1",
        ),
        # KEDA posts only Kubernetes Events for these: no CloudEvent.
        ("ScaledObject", "KEDAScalerFailed", None),
        ("ScaledObject", "KEDAScaleTargetActivated", None),
        ("ScaledObject", "ScaledObjectFallbackActivated", None),
        ("ScaledJob", "KEDAJobsCreated", None),
        ("ScaledJob", "ScaledObjectReady", None),
    ],
)
def test_types_are_kedas_where_keda_emits_one(kind: str, reason: str, expected: str | None) -> None:
    data = event_data(kind, "ns", "name", ScalingEvent(reason, "m"), T0)
    assert (data.type if data else None) == expected


async def test_envelope_and_payload_are_kedas(hub: CloudEventHub, sink: Receiver) -> None:
    """HTTP binary mode as KEDA's sdk-go sends: ce-* headers, a JSON body of reason and message."""
    hub.add(source(sink.url))
    hub.publish(so_event("ScaledObjectReady", "ScaledObject is ready for scaling"))
    (got,) = await sink.wait_for(1)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["ce-specversion"] == "1.0"
    assert got.attributes["type"] == "keda.scaledobject.ready.v1"
    assert got.attributes["source"] == "/lab/keda/keda"
    assert got.attributes["subject"] == "/lab/shop/scaledobject/orders"  # kind and name lowercased, as KEDA
    assert re.fullmatch(r"[0-9a-f-]{36}", got.attributes["id"])
    assert got.attributes["time"] == datetime.fromtimestamp(T0, UTC)
    assert got.data == {"reason": "ScaledObjectReady", "message": "ScaledObject is ready for scaling"}


async def test_spec_cluster_name_overrides_the_runners(hub: CloudEventHub, sink: Receiver) -> None:
    hub.add(source(sink.url, clusterName="prod-eu"))
    hub.publish(so_event("ScaledObjectPaused"))
    (got,) = await sink.wait_for(1)
    assert got.attributes["source"] == "/prod-eu/keda/keda"
    assert got.attributes["subject"] == "/prod-eu/shop/scaledobject/orders"


async def test_cluster_scoped_authentication_events_have_an_empty_namespace(hub: CloudEventHub, sink: Receiver) -> None:
    hub.add(source(sink.url, name="all", cluster=True))
    hub.kube_event(
        {"kind": "ClusterTriggerAuthentication", "name": "shared"},
        ScalingEvent("ClusterTriggerAuthenticationAdded", "New ClusterTriggerAuthentication configured"),
        T0,
    )
    (got,) = await sink.wait_for(1)
    assert got.attributes["type"] == "keda.authentication.clustertriggerauthentication.created.v1"
    assert got.attributes["subject"] == "/lab//clustertriggerauthentication/shared"


@pytest.mark.parametrize(
    ("subscription", "delivered"),
    [
        ({}, ["keda.scaledobject.ready.v1", "keda.scaledobject.paused.v1", "keda.scaledobject.failed.v1"]),
        ({"includedEventTypes": ["keda.scaledobject.failed.v1"]}, ["keda.scaledobject.failed.v1"]),
        (
            {"excludedEventTypes": ["keda.scaledobject.paused.v1"]},
            ["keda.scaledobject.ready.v1", "keda.scaledobject.failed.v1"],
        ),
        (
            {"includedEventTypes": []},
            ["keda.scaledobject.ready.v1", "keda.scaledobject.paused.v1", "keda.scaledobject.failed.v1"],
        ),
    ],
)
async def test_subscription_filters(
    hub: CloudEventHub, sink: Receiver, subscription: dict[str, list[str]], delivered: list[str]
) -> None:
    hub.add(source(sink.url, eventSubscription=subscription))
    for reason in ("ScaledObjectReady", "ScaledObjectPaused", "ScaledObjectCheckFailed"):
        hub.publish(so_event(reason))
    # A marker every subscription here lets through closes the sequence: nothing else is in flight after it.
    hub.publish(so_event("ScaledObjectCheckFailed", "end"))
    await sink.wait_for(len(delivered) + 1)
    assert sink.types()[:-1] == delivered


async def test_each_source_filters_on_its_own(hub: CloudEventHub) -> None:
    """Unlike KEDA, where a source whose filter drops an event stops it for every other source too."""
    async with receiver() as failures, receiver() as everything:
        hub.add(
            source(
                failures.url, name="failures", eventSubscription={"includedEventTypes": ["keda.scaledobject.failed.v1"]}
            )
        )
        hub.add(source(everything.url, name="everything"))
        hub.publish(so_event("ScaledObjectReady"))
        hub.publish(so_event("ScaledObjectCheckFailed"))
        await everything.wait_for(2)
        await failures.wait_for(1)
        assert failures.types() == ["keda.scaledobject.failed.v1"]
        assert everything.types() == ["keda.scaledobject.ready.v1", "keda.scaledobject.failed.v1"]


async def test_a_failed_post_is_retried(hub: CloudEventHub, sink: Receiver) -> None:
    sink.failures_left = 2
    added = hub.add(source(sink.url))
    hub.publish(so_event("ScaledObjectReady"))
    await sink.wait_for(1)
    assert sink.attempts == 3
    assert added.active


async def test_deliveries_that_keep_failing_turn_active_false_then_true_again(
    hub: CloudEventHub, sink: Receiver
) -> None:
    conditions: list[tuple[str, str, str]] = []
    sink.failures_left = 3  # max_attempts: the first event is given up
    added = hub.add(source(sink.url), on_status=lambda *c: conditions.append(c))
    hub.publish(so_event("ScaledObjectReady"))
    await eventually(lambda: bool(conditions), within=5, what="the Active condition")
    assert conditions == [("False", FAILED_REASON, FAILED_MESSAGE)]
    assert not added.active
    hub.publish(so_event("ScaledObjectPaused"))
    await sink.wait_for(1)
    await eventually(lambda: len(conditions) >= 2, within=5, what="Active again")
    assert conditions[1][:2] == ("True", ACTIVE_REASON)
    assert sink.types() == ["keda.scaledobject.paused.v1"]


async def test_a_client_error_is_not_retried(hub: CloudEventHub, sink: Receiver) -> None:
    sink.failures_left, sink.status = 5, 400
    added = hub.add(source(sink.url))
    hub.publish(so_event("ScaledObjectReady"))
    await eventually(lambda: added.failed > 0, within=5, what="the refused event")
    assert sink.attempts == 1


async def test_metrics_count_what_was_emitted(sink: Receiver) -> None:
    metrics = EbbMetrics()
    h = CloudEventHub(cluster="lab", metrics=metrics, sink_options=FAST)
    h.add(source(sink.url))
    await h.start()
    try:
        h.publish(so_event("ScaledObjectReady"))
        await sink.wait_for(1)
        await asyncio.sleep(0.05)
    finally:
        await h.stop()
    value = metrics.registry.get_sample_value(
        "keda_cloudeventsource_events_emitted_total",
        {"namespace": "shop", "cloudeventsource": "sink", "eventsink": "http", "state": "emitted"},
    )
    assert value == 1


async def test_the_queue_is_bounded_and_counts_drops() -> None:
    h = CloudEventHub(sink_options={"queue_size": 2})
    added = h.add(source("http://127.0.0.1:9/events"))  # not started: nothing leaves the queue
    for _ in range(5):
        h.publish(so_event("ScaledObjectReady"))
    assert added.dropped == 3


async def test_a_removed_source_gets_nothing_more(hub: CloudEventHub, sink: Receiver) -> None:
    added = hub.add(source(sink.url))
    hub.publish(so_event("ScaledObjectReady"))
    await sink.wait_for(1)
    hub.remove(added.key)
    hub.publish(so_event("ScaledObjectPaused"))
    await asyncio.sleep(0.1)
    assert sink.types() == ["keda.scaledobject.ready.v1"]


def test_azure_event_grid_is_refused_with_what_to_use_instead() -> None:
    obj, errors = parse_object(
        {
            "apiVersion": "eventing.keda.sh/v1alpha1",
            "kind": "CloudEventSource",
            "metadata": {"name": "grid", "namespace": "shop"},
            "spec": {"destination": {"azureEventGridTopic": {"endpoint": "https://t.eventgrid.azure.net/api/events"}}},
        }
    )
    assert not errors and obj is not None  # KEDA's manifest loads unchanged
    hub, problems = build_hub([obj])  # type: ignore[list-item]
    assert not hub.sinks
    (problem,) = problems
    assert isinstance(problem, SpecError)
    assert problem.obj == "CloudEventSource shop/grid"
    assert problem.field == "spec.destination.azureEventGridTopic"
    assert "not supported by ebb" in problem.message and "destination.http.uri" in problem.message


def test_the_flag_shortcut_builds_a_cloudeventsource_with_kedas_checks() -> None:
    built, errors = shortcut_source("http://127.0.0.1:8080/e", excluded=["keda.scaledobject.paused.v1"])
    assert not errors and built is not None
    assert built.spec.destination.http is not None and built.spec.destination.http.uri == "http://127.0.0.1:8080/e"
    assert built.spec.event_subscription.excluded_event_types == ["keda.scaledobject.paused.v1"]
    none, errors = shortcut_source(
        "http://x/e", included=["keda.scaledobject.ready.v1"], excluded=["keda.scaledjob.ready.v1"]
    )
    assert none is None
    assert any("at the same time is not supported" in e.message for e in errors)
    none, errors = shortcut_source("not a url")
    assert none is None and errors[0].field == "spec.destination.http.uri"


# --- ebb run's loops to KEDA's events ------------------------------------------------------------------


def poll(ref: ObjectRef) -> PollRecord:
    # A ScaledJob's polls carry no Decision: a poll is what makes an object ready, whatever it decided.
    decision = Decision(desired_replicas=1, active=True, reason="polled") if ref.kind == "ScaledObject" else None
    return PollRecord(ref, T0, (), decision, 1, 1, 1)


async def test_the_runtime_observer_reports_kedas_lifecycle(hub: CloudEventHub, sink: Receiver) -> None:
    hub.add(source(sink.url))
    observer = CloudEventsObserver(hub, clock=lambda: T0)
    observer.poll(poll(SO))
    observer.poll(poll(SO))  # ready once, not at every poll
    observer.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled to 1"), T0)  # no CloudEvent in KEDA
    observer.event(SO, ScalingEvent("ScaledObjectPaused", "ScaledObject is paused"), T0)
    observer.problem(SO, "TriggerAuthentication shop/x not found", T0)
    observer.problem(SO, "TriggerAuthentication shop/x not found", T0)  # said once
    observer.poll(poll(SO))  # works again: ready again
    observer.problem(ObjectRef("ProcessGroup", "shop", "workers"), "cannot start", T0)  # not a KEDA object
    observer.removed(SO)
    observer.poll(poll(SJ))
    events = await sink.wait_for(6)
    assert [(e.attributes["type"], e.data["reason"]) for e in events] == [
        ("keda.scaledobject.ready.v1", "ScaledObjectReady"),
        ("keda.scaledobject.paused.v1", "ScaledObjectPaused"),
        ("keda.scaledobject.failed.v1", "ScaledObjectCheckFailed"),
        ("keda.scaledobject.ready.v1", "ScaledObjectReady"),
        ("keda.scaledobject.removed.v1", "ScaledObjectDeleted"),
        ("keda.scaledjob.ready.v1", "ScaledJobReady"),
    ]
    assert events[2].data["message"] == "TriggerAuthentication shop/x not found"
    assert events[5].attributes["subject"] == "/lab/batch/scaledjob/reports"
