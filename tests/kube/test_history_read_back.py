"""The operator reads an object's history back from a real Prometheus when it first reconciles it (a restart or a
failover); the Kubernetes API is the fake API server (kmock), Prometheus is real (backfilled, see `_prom_backfill`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kmock as km
import pytest

from ebb.kube.client import client_for_url
from ebb.kube.operator import OperatorOptions, ScaledObjectController
from ebb.observe.services import Services
from tests.observe._prom_backfill import END, METRIC, backfilled_prometheus, replicas_at, value_at
from tests.scalers._prometheus_server import free_port

from .test_operator import EVENT_RES, NS, Clock, cluster, put, scaled_object  # noqa: F401 - `cluster` is a fixture

KEY = f"ScaledObject/{NS}/worker"


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> km.KubernetesEmulator:
    """test_operator's fake API server with its resources and Deployment."""
    emulator: km.KubernetesEmulator = request.getfixturevalue("cluster")
    return emulator


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with backfilled_prometheus(tmp_path_factory.mktemp("prom"), [(NS, "worker")]) as url:
        yield url


async def _reconcile(kube: km.KubernetesEmulator, services: Services) -> None:
    api = client_for_url(str(kube.url))
    ctl = ScaledObjectController(api, OperatorOptions(services=services), clock=Clock())
    ctl.autostart = False
    try:
        await ctl.reconcile(put(kube, scaled_object("ebb-read-back-unused")))
        await ctl.reconcile(put(kube, scaled_object("ebb-read-back-unused")))  # a second reconcile: no re-read
        await services.wait_read_back()
    finally:
        await ctl.close()
        await api.aclose()


async def test_a_restarted_operator_reads_history_back_from_prometheus_with_fake_apiserver(
    kube: km.KubernetesEmulator, prometheus: str, tmp_path: Path
) -> None:
    services = Services(tmp_path, metrics_port=0, history=False, memory_history=True, prometheus_address=prometheus)
    try:
        await _reconcile(kube, services)
        assert services.store is not None
        series = services.store.trigger_series(KEY, METRIC, END - 86400, END)
        assert len(series) == 1441  # one point a minute over the last day, read back once
        assert [v for _, v in series] == pytest.approx([value_at(t) for t, _ in series])
        points = services.store.series(KEY, END - 600, END)
        assert points is not None
        assert [p["current"] for p in points["points"]] == [replicas_at(p["time"]) for p in points["points"]]
    finally:
        await services.stop()


async def test_an_unreachable_prometheus_is_a_warning_event_not_a_failure_with_fake_apiserver(
    kube: km.KubernetesEmulator, tmp_path: Path
) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    services = Services(tmp_path, metrics_port=0, history=False, memory_history=True, prometheus_address=address)
    try:
        await _reconcile(kube, services)
        events = [
            o.raw
            for (res, _, _), o in kube.objects.items()
            if res == EVENT_RES and o.raw["reason"] == "HistoryReadBackFailed"
        ]
        assert len(events) == 1  # two reconciles, one read-back
        assert events[0]["type"] == "Warning" and address in events[0]["message"]
        assert services.store is not None and services.store.first_point(KEY) is None
    finally:
        await services.stop()
