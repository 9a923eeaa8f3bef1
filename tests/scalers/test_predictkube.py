"""predictkube, served by ebb's forecaster from a Prometheus range query on loopback (no SaaS, no apiKey use)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import SpecError
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scalers.predictkube import PredictKubeScaler, parse_span
from tests._skips import needs
from tests.scalers._prometheus_server import PrometheusFixture, _start_site, free_port, prometheus_binary

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


# --- KEDA's documentation example under a real `ebb run`, against a real Prometheus on loopback -------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "predictkube.yaml"
#: Requests per second the exporter's counter grows by: 450 / threshold 100 = 5 replicas at least.
RATE = 450.0


class CounterPrometheus(PrometheusFixture):
    """Prometheus scraping, every second, a counter http_requests_total{deployment="my-deployment"} that grows
    by RATE per second (what a web app's exporter serves)."""

    async def _serve_metrics(self) -> int:
        t0 = time.time()

        async def metrics(_: web.Request) -> web.Response:
            total = RATE * (time.time() - t0)
            text = (
                "# TYPE http_requests_total counter\n"
                f'http_requests_total{{deployment="my-deployment",pod="my-deployment-0"}} {total:.3f}\n'
            )
            return web.Response(text=text, content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._metrics_runner, port = await _start_site(app)
        self.metrics_url = f"http://127.0.0.1:{port}"
        return port

    def _wait_for_first_scrape(self, limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {self.log_tail()}")
            if self.instant_query("sum(rate(http_requests_total[2m]))", at=time.time()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus never scraped the exporter: {self.log_tail()}")


def metric_samples(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, s.labels.get("band") or s.labels.get("mode") or ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("scaledObject") == "predictkube-scaledobject"
        or s.labels.get("name") == "predictkube-scaledobject"
    }


def test_the_keda_docs_example_runs_under_ebb_run_against_a_local_prometheus(tmp_path: Path) -> None:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(needs("Prometheus", "apt-get install prometheus"))
    prom = CounterPrometheus(binary)
    prom.start()
    manifest = tmp_path / "predictkube.yaml"
    text = EXAMPLE.read_text()
    assert "prometheusAddress: http://127.0.0.1:9090" in text
    manifest.write_text(text.replace("http://127.0.0.1:9090", prom.url))  # the test's Prometheus: a free port
    port = free_port()
    log = (tmp_path / "ebb.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ebb.cli", "run", "--metrics-port", str(port), "--dashboard", str(manifest)],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        samples: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "ebb.log").read_text()
            try:
                samples = metric_samples(url)
            except OSError:
                samples = {}
            # (the first read may predate the load: a range query's last point is up to queryStep old, and the
            # value is then kept for queryStep, as KEDA's scaler does)
            if samples.get(("ebb_ready_replicas", ""), 0) >= math.ceil(RATE / 100):
                break
            time.sleep(1)
        else:
            raise AssertionError(
                f"never scaled to {math.ceil(RATE / 100)}: {samples}\n{(tmp_path / 'ebb.log').read_text()}"
            )
        served = samples[("keda_scaler_metrics_value", "")]
        assert served >= RATE * 0.9  # the current load at least: the forecast only ever adds
        assert samples[("ebb_desired_replicas", "")] <= 50
        assert samples[("ebb_predictive_guard_active", "")] in (0.0, 1.0)
        assert ("ebb_predictive_forecast_value", "upper") in samples
        assert samples[("ebb_predictive_would_be_replicas", "on")] == min(50, math.ceil(served / 100 - 1e-9))
        with urllib.request.urlopen(
            f"{url}/api/objects/ScaledObject/some-namespace/predictkube-scaledobject/series"
        ) as r:
            body = json.load(r)
        (fc,) = body["forecasts"]
        assert fc["metric"] == "s0-predictkube" and fc["latest"]["mode"] == "on" and fc["latest"]["mean"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        prom.stop()
    output = (tmp_path / "ebb.log").read_text()
    assert "not-used" not in output  # the apiKey is never printed
