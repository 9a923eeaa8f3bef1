"""The operator honours ebb.dev/predictive as `ebb run` does, and a failed-over operator forecasts at its first poll:
its forecaster is seeded from the history it read back from a real Prometheus (backfilled, see `_prom_backfill`).
The Kubernetes API is the fake API server (kmock); the trigger reads a real Redis."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest

from ebb.kube.client import client_for_url
from ebb.kube.hpa import SCALED_OBJECT_LABEL
from ebb.kube.operator import OperatorOptions, ScaledObjectController
from ebb.observe.services import Services
from ebb.runtime.predictive import PredictiveScaler
from ebb.scaling.forecast import PREDICTIVE_ANNOTATION
from tests.observe._prom_backfill import END, METRIC, backfilled_prometheus, value_at
from tests.scalers._prometheus_server import free_port

from .test_operator import EVENT_RES, NS, Clock, cluster, put, scaled_object  # noqa: F401 - `cluster` is a fixture

KEY = f"ScaledObject/{NS}/worker"


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> km.KubernetesEmulator:
    emulator: km.KubernetesEmulator = request.getfixturevalue("cluster")
    return emulator


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with backfilled_prometheus(tmp_path_factory.mktemp("prom"), [(NS, "worker")]) as url:
        yield url


def forecast_samples(services: Services) -> dict[str, float]:
    """ebb_predictive_forecast_value of the object's trigger, per band, as /metrics exports it."""
    assert services.metrics is not None
    return {
        s.labels["band"]: s.value
        for family in services.metrics.registry.collect()
        for s in family.samples
        if s.name == "ebb_predictive_forecast_value" and s.labels.get("scaledObject") == "worker"
    }


async def first_poll(kube: km.KubernetesEmulator, services: Services) -> tuple[dict[str, Any], float, float]:
    """A new operator reconciles the annotated object and polls it once: what the forecast log says then, the
    external metric the HPA is served, and the forecast that metric includes."""
    api = client_for_url(str(kube.url))
    clock = Clock()
    clock.now = time.time()
    ctl = ScaledObjectController(api, OperatorOptions(services=services), clock=clock)
    ctl.autostart = False
    try:
        # listName "orders": the trigger's metric is s0-redis-orders, the series backfilled into Prometheus
        await ctl.reconcile(put(kube, scaled_object("orders", annotations={PREDICTIVE_ANNOTATION: "horizon=10m"})))
        runtime = ctl.runtimes[(NS, "worker")]
        scaler = runtime.scalers[0]
        assert isinstance(scaler, PredictiveScaler)  # the annotation is honoured by the operator
        await runtime.loop.poll_once()
        assert services.forecasts is not None
        (log,) = services.forecasts.series(KEY, END - 3600, clock.now + 3600) or [{"latest": None, "steps": []}]
        served = await ctl.get_metric(NS, METRIC, {SCALED_OBJECT_LABEL: "worker"})
        return log, served[0].value, scaler.predicted
    finally:
        await ctl.close()
        await api.aclose()


async def test_a_failed_over_operator_forecasts_at_its_first_poll_with_fake_apiserver(
    kube: km.KubernetesEmulator, prometheus: str, tmp_path: Path
) -> None:
    services = Services(
        tmp_path, metrics_port=free_port(), history=False, memory_history=True, prometheus_address=prometheus
    )
    try:
        log, served, predicted = await first_poll(kube, services)
    finally:
        await services.stop()
    latest = log["latest"]
    assert latest is not None and latest["metric"] == METRIC and latest["mode"] == "on"
    # three days of a daily cycle (50 +- 40, bursts of +30) up to two hours ago: the next step is forecast from it
    at = latest["at"]
    assert at > END and abs(latest["mean"][0] - value_at(at)) < 25.0, (latest["mean"][0], value_at(at))
    # the band reaches back over the hour before the history ends (forecasts replayed walk-forward from it)
    back = [s for s in log["steps"] if s["time"] <= END]
    assert len(back) >= 60 and all(abs(s["mean"] - value_at(s["time"])) < 25.0 for s in back)
    bands = forecast_samples(services)
    assert bands["mean"] == pytest.approx(latest["mean"][0]) and bands["upper"] >= bands["mean"]
    # HPA mode: the external metric the HPA reads includes the forecast (the Redis list itself is near empty)
    assert predicted > 10.0 and served >= predicted


async def test_without_history_the_first_poll_has_no_forecast_with_fake_apiserver(
    kube: km.KubernetesEmulator, tmp_path: Path
) -> None:
    services = Services(tmp_path, metrics_port=free_port(), history=False, memory_history=True)
    try:
        log, served, predicted = await first_poll(kube, services)
    finally:
        await services.stop()
    assert log["latest"] is None and forecast_samples(services) == {}
    assert predicted == 0.0 and math.isfinite(served)


async def test_a_bad_annotation_is_a_failed_check_naming_it_with_fake_apiserver(
    kube: km.KubernetesEmulator, tmp_path: Path
) -> None:
    api = client_for_url(str(kube.url))
    ctl = ScaledObjectController(api, OperatorOptions(), clock=Clock())
    ctl.autostart = False
    try:
        await ctl.reconcile(put(kube, scaled_object("orders", annotations={PREDICTIVE_ANNOTATION: "mode=maybe"})))
    finally:
        await ctl.close()
        await api.aclose()
    events = [o.raw for (res, _, _), o in kube.objects.items() if res == EVENT_RES]
    failed = [e for e in events if e["reason"] == "ScaledObjectCheckFailed"]
    assert failed and "metadata.annotations[ebb.dev/predictive]: mode: invalid value 'maybe'" in failed[0]["message"]
    assert (NS, "worker") not in ctl.runtimes
