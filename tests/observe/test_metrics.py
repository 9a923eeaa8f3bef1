"""Prometheus metrics: KEDA's names and labels, ebb's own series, isolation per registry, /metrics over HTTP."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ebb
from ebb.observe.metrics import MetricsObserver, TriggerInfo
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import ScalingEvent, TriggerResult
from ebb.web.server import build_app, serve

from ._records import SO
from ._records import poll as record
from ._records import trigger as trig

SJ = ObjectRef("ScaledJob", "shop", "reports")


def value(obs: MetricsObserver, family: str, **labels: str) -> float | None:
    return obs.registry.get_sample_value(family, labels)


SCALER = {
    "namespace": "shop",
    "metric": "s0-redis-orders",
    "scaledObject": "orders",
    "scaler": "redisScaler",
    "triggerIndex": "0",
    "type": "scaledobject",
}


def test_scaler_series_use_kedas_names_and_labels() -> None:
    obs = MetricsObserver()
    obs.register(SO, [TriggerInfo(0, "redis")])
    obs.poll(record(SO, 100.0, (trig(0, 12.0, active=True),), current=1, desired=3, lateness=0.25, read_seconds=0.5))
    assert value(obs, "keda_scaler_metrics_value", **SCALER) == 12.0
    assert value(obs, "keda_scaler_active", **SCALER) == 1.0
    assert value(obs, "keda_scaler_metrics_latency_seconds", **SCALER) == 0.5
    assert value(obs, "keda_internal_scale_loop_latency_seconds", namespace="shop", type="scaledobject",
                 resource="orders") == 0.25  # fmt: skip
    assert value(obs, "keda_scaled_object_paused", namespace="shop", scaledObject="orders") == 0.0
    obj = {"namespace": "shop", "type": "scaledobject", "name": "orders"}
    assert value(obs, "ebb_desired_replicas", **obj) == 3.0
    assert value(obs, "ebb_current_replicas", **obj) == 1.0
    assert value(obs, "keda_resource_registered_total", type="scaled_object", namespace="shop") == 1.0
    assert value(obs, "keda_trigger_registered_total", type="redis") == 1.0


def test_trigger_name_is_the_scaler_label_when_set() -> None:
    obs = MetricsObserver()
    obs.register(SO, [TriggerInfo(0, "redis", "backlog")])
    obs.poll(record(SO, 1.0, (trig(0, 2.0, name="backlog"),), current=1, desired=1))
    assert value(obs, "keda_scaler_metrics_value", **{**SCALER, "scaler": "backlog"}) == 2.0


@pytest.mark.parametrize(
    ("ref", "family", "labels"),
    [
        (SO, "keda_scaled_object_errors_total", {"namespace": "shop", "scaledObject": "orders"}),
        (SJ, "keda_scaled_job_errors_total", {"namespace": "shop", "scaledJob": "reports"}),
    ],
)
def test_errors_count_per_trigger_and_per_object(ref: ObjectRef, family: str, labels: dict[str, str]) -> None:
    obs = MetricsObserver()
    failing = (trig(0, None, error="connection refused"), trig(1, 4.0))
    for t in (1.0, 2.0):
        obs.poll(record(ref, t, failing, current=1, desired=1))
    detail = {**SCALER, "scaledObject": ref.name, "scaler": "s0-redis-orders",
              "type": ref.kind.lower()}  # fmt: skip
    assert value(obs, "keda_scaler_detail_errors_total", **detail) == 2.0
    assert value(obs, "keda_scaler_detail_errors_total", **{**detail, "metric": "s1-redis-orders", "triggerIndex": "1",
                                                             "scaler": "s1-redis-orders"}) == 0.0  # fmt: skip
    assert value(obs, family, **labels) == 2.0
    obs.problem(ref, "bad spec", 3.0)
    assert value(obs, family, **labels) == 3.0


def test_paused_gauge_follows_the_decision() -> None:
    obs = MetricsObserver()
    obs.poll(record(SO, 1.0, (trig(0, 0.0),), current=2, desired=2, paused=True))
    assert value(obs, "keda_scaled_object_paused", namespace="shop", scaledObject="orders") == 1.0
    obs.poll(record(SO, 2.0, (trig(0, 0.0),), current=2, desired=2, paused=False))
    assert value(obs, "keda_scaled_object_paused", namespace="shop", scaledObject="orders") == 0.0


def test_activation_latency_runs_from_first_active_poll_at_zero_to_the_scale_up() -> None:
    obs = MetricsObserver()
    labels = {"namespace": "shop", "type": "scaledobject", "name": "orders"}
    obs.poll(record(SO, 10.0, (trig(0, 0.0),), current=0, desired=0))
    # Active but not scaled yet (e.g. paused scale-out), then scaled two polls later.
    obs.poll(record(SO, 11.0, (trig(0, 3.0, active=True),), current=0, desired=0))
    obs.poll(record(SO, 12.0, (trig(0, 3.0, active=True),), current=0, desired=0))
    obs.poll(record(SO, 13.5, (trig(0, 3.0, active=True),), current=0, desired=1))
    obs.poll(record(SO, 14.0, (trig(0, 3.0, active=True),), current=1, desired=1))
    assert value(obs, "ebb_activation_latency_seconds_count", **labels) == 1.0
    assert value(obs, "ebb_activation_latency_seconds_sum", **labels) == 2.5
    # A second activation that is decided in the poll that sees it counts as zero.
    obs.poll(record(SO, 20.0, (trig(0, 0.0),), current=0, desired=0))
    obs.poll(record(SO, 21.0, (trig(0, 1.0, active=True),), current=0, desired=1))
    assert value(obs, "ebb_activation_latency_seconds_count", **labels) == 2.0
    assert value(obs, "ebb_activation_latency_seconds_sum", **labels) == 2.5


def test_scaling_events_are_counted_by_reason() -> None:
    obs = MetricsObserver()
    obs.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled"), 1.0)
    obs.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled"), 2.0)
    obs.event(SO, ScalingEvent("KEDAScalerFailed", "boom", "Warning"), 3.0)
    assert value(obs, "ebb_scaling_events_total", reason="KEDAScaleTargetActivated") == 2.0
    assert value(obs, "ebb_scaling_events_total", reason="KEDAScalerFailed") == 1.0


def test_removed_object_loses_its_series_and_registration() -> None:
    obs = MetricsObserver()
    obs.register(SO, [TriggerInfo(0, "redis")])
    obs.poll(record(SO, 1.0, (trig(0, 7.0),), current=1, desired=1))
    obs.removed(SO)
    assert value(obs, "keda_scaler_metrics_value", **SCALER) is None
    assert value(obs, "ebb_desired_replicas", namespace="shop", type="scaledobject", name="orders") is None
    assert value(obs, "keda_resource_registered_total", type="scaled_object", namespace="shop") == 0.0
    assert value(obs, "keda_trigger_registered_total", type="redis") == 0.0


def test_registries_are_isolated() -> None:
    a, b = MetricsObserver(), MetricsObserver()
    a.poll(record(SO, 1.0, (trig(0, 7.0),), current=1, desired=1))
    assert value(b, "ebb_desired_replicas", namespace="shop", type="scaledobject", name="orders") is None
    families = {f.name for f in a.registry.collect()}
    assert "keda_build_info" in families


async def test_metrics_endpoint_serves_the_registry_over_http() -> None:
    obs = MetricsObserver()
    obs.poll(record(SO, 1.0, (trig(0, 42.0, active=True),), current=2, desired=4))
    served = await serve(build_app(registry=obs.registry), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{served.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    finally:
        await served.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("keda_scaler_metrics_value", tuple(sorted({**SCALER, "scaler": "s0-redis-orders"}.items())))] == 42
    build = [k for k in samples if k[0] == "keda_build_info"]
    assert build and dict(build[0][1])["version"] == ebb.__version__


def test_no_trigger_metadata_reaches_a_label() -> None:
    obs = MetricsObserver()
    secret = "hunter2-password"
    obs.poll(record(SO, 1.0, (trig(0, None, error=f"auth failed for {secret}"),), current=0, desired=0))
    obs.problem(SO, f"cannot connect with {secret}", 2.0)
    for family in obs.registry.collect():
        for sample in family.samples:
            assert all(secret not in v for v in sample.labels.values())


def test_scaler_latency_is_each_triggers_own_read_time() -> None:
    obs = MetricsObserver()
    obs.register(SO, [TriggerInfo(0, "redis"), TriggerInfo(1, "redis")])
    fast = TriggerResult(metric_name="s0-redis-orders", target=5.0, value=1.0, read_seconds=0.01)
    slow = TriggerResult(metric_name="s1-redis-orders", target=5.0, value=1.0, read_seconds=0.4)
    obs.poll(record(SO, 100.0, (fast, slow), current=1, desired=1, read_seconds=0.4))
    assert value(obs, "keda_scaler_metrics_latency_seconds", **SCALER) == 0.01
    second = {**SCALER, "metric": "s1-redis-orders", "triggerIndex": "1"}
    assert value(obs, "keda_scaler_metrics_latency_seconds", **second) == 0.4
