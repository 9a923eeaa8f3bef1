"""predictkube, served by ebb's forecaster from a Prometheus range query on loopback (no SaaS, no apiKey use)."""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import SpecError
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scalers.predictkube import PredictKubeScaler, parse_span

DAY = 86400.0
#: KEDA's documentation example (keda.sh/docs/scalers/predictkube), with a ProcessGroup target.
KEDA_DOC_EXAMPLE = """
apiVersion: v1
kind: Secret
metadata: {name: predictkube-secrets}
stringData: {apiKey: not-used}
---
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-trigger-auth-predictkube-secret
spec:
  secretTargetRef:
  - parameter: apiKey
    name: predictkube-secrets
    key: apiKey
---
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: my-deployment}
spec: {command: ["sleep", "3600"]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: predictkube-scaledobject
spec:
  scaleTargetRef:
    apiVersion: ebb.dev/v1alpha1
    kind: ProcessGroup
    name: my-deployment
  pollingInterval: 30
  cooldownPeriod: 300
  minReplicaCount: 1
  maxReplicaCount: 90
  triggers:
  - type: predictkube
    metadata:
      predictHorizon: "2h"
      historyTimeWindow: "7d"  # We recommend using a minimum of a 7-14 day time window as historical data
      prometheusAddress: http://127.0.0.1:9090
      query: sum(irate(http_requests_total{pod=~"load-generator.*"}[2m]))
      queryStep: "2m" # Note: query step duration for scaling decisions
      threshold: '2000'
    authenticationRef:
      name: keda-trigger-auth-predictkube-secret
"""


def load(t: float) -> float:
    """Requests per second: a daily wave peaking at 12:00 UTC."""
    return 5000.0 * (1 + math.sin(2 * math.pi * ((t % DAY) / DAY - 0.25)))


@pytest.fixture
async def prometheus(unused_tcp_port: int) -> AsyncIterator[str]:
    async def query_range(request: web.Request) -> web.Response:
        start, end, step = (float(request.query[k]) for k in ("start", "end", "step"))
        values = []
        t = start
        while t <= end:
            values.append([t, str(load(t))])
            t += step
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}}
        )

    application = web.Application()
    application.router.add_get("/api/v1/query_range", query_range)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    yield f"http://127.0.0.1:{unused_tcp_port}"
    await runner.cleanup()


def scaler(address: str, horizon: str = "2h") -> PredictKubeScaler:
    built = build_scaler(
        "predictkube",
        {
            "predictHorizon": horizon,
            "historyTimeWindow": "7d",
            "prometheusAddress": address,
            "query": "sum(rate(x[2m]))",
            "queryStep": "2m",
            "threshold": "2000",
        },
        ctx=TriggerContext(trigger_type="predictkube"),
        auth_params={"apiKey": "accepted-and-unused"},
    )
    assert isinstance(built, PredictKubeScaler)
    return built


async def test_the_forecast_raises_the_metric_ahead_of_the_morning(
    prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 20 * DAY + 7 * 3600.0  # 07:00: the load climbs over the next two hours
    monkeypatch.setattr(time, "time", lambda: now)
    s = scaler(prometheus)
    try:
        reading = await s.get_metric_and_activity()
    finally:
        await s.close()
    assert reading.active
    assert reading.value > load(now) * 1.3  # sized for the coming hours, not for now
    assert reading.value >= load(now + 2 * 3600) * 0.9


async def test_the_metric_is_never_below_the_current_value(prometheus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = 20 * DAY + 13 * 3600.0  # after the peak: the forecast falls, the metric keeps the current load
    monkeypatch.setattr(time, "time", lambda: now)
    s = scaler(prometheus, horizon="10m")
    try:
        reading = await s.get_metric_and_activity()
    finally:
        await s.close()
    assert reading.value >= load(now) - 1e-6


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200.0), ("7d", 604800.0), ("2m", 120.0), ("1w1d", 691200.0)])
def test_spans(text: str, seconds: float) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize(("key", "value"), [("predictHorizon", "soon"), ("queryStep", "0s"), ("threshold", "-1")])
def test_bad_parameters_are_named(key: str, value: str) -> None:
    meta = {
        "predictHorizon": "2h",
        "historyTimeWindow": "7d",
        "prometheusAddress": "http://127.0.0.1:9090",
        "query": "q",
        "queryStep": "2m",
        "threshold": "2000",
        key: value,
    }
    with pytest.raises(SpecError, match=f"metadata.{key}"):
        build_scaler("predictkube", meta, ctx=TriggerContext(trigger_type="predictkube"))


def test_ebb_check_accepts_the_keda_documentation_example(tmp_path: Path) -> None:
    path = tmp_path / "predictkube.yaml"
    path.write_text(textwrap.dedent(KEDA_DOC_EXAMPLE))
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "predictkube" in result.output
