"""KEDA's Grafana dashboard, and ebb's own, against a real Prometheus (Debian's) scraping a running `ebb run`.

KEDA's dashboard (kedacore/keda config/grafana/keda-dashboard.json) cannot be fetched offline, so its panels'
queries and template variables are written down below from reading it (at kedacore/keda 8b4f083, August 2026):
what the test checks is that each query, with the variables resolved as Grafana would, returns data. ebb's own
dashboard is read from deploy/grafana/ebb-dashboard.json, and Prometheus is configured from the scrape job shipped
in deploy/grafana/prometheus-scrape.yml (only its target and interval changed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._skips import needs
from tests.http._support import free_ports, group, httpso
from tests.runtime._support import make_backlog, scaled_group
from tests.scalers._prometheus_server import free_port, prometheus_binary

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = prometheus_binary()

#: KEDA's template variables: name -> (metric, label), filtered by the namespace once it is chosen.
KEDA_VARIABLES = {
    "namespace": ("keda_scaler_active", "exported_namespace"),
    "scaledObject": ("keda_scaler_active", "scaledObject"),
    "scaler": ("keda_scaler_active", "scaler"),
    "metric": ("keda_scaler_active", "metric"),
}
#: Every panel query of KEDA's dashboard: (panel title, PromQL with Grafana's variables).
KEDA_PANELS = [
    ("Scaler Total Errors", "sum by(job) (rate(keda_scaler_detail_errors_total{}[5m]))"),
    (
        "Scaler Errors",
        'sum by(scaler) (rate(keda_scaler_detail_errors_total{exported_namespace=~"$namespace", '
        'scaledObject=~"$scaledObject", scaler=~"$scaler"}[5m]))',
    ),
    (
        "Scaled Object Errors",
        'sum by(scaledObject) (rate(keda_scaled_object_errors_total{exported_namespace=~"$namespace", '
        'scaledObject=~"$scaledObject"}[5m]))',
    ),
    (
        "Scaler Metric Value",
        'sum by(metric) (keda_scaler_metrics_value{exported_namespace=~"$namespace", metric=~"$metric", '
        'scaledObject=~"$scaledObject"})',
    ),
    (
        "Current/max replicas (time based): current",
        'kube_horizontalpodautoscaler_status_current_replicas{namespace="$namespace",'
        'horizontalpodautoscaler=~"keda-hpa-$scaledObject"}',
    ),
    (
        "Current/max replicas (time based): max",
        'kube_horizontalpodautoscaler_spec_max_replicas{namespace="$namespace",'
        'horizontalpodautoscaler=~"keda-hpa-$scaledObject"}',
    ),
    (
        "Changes in replicas",
        'delta(kube_horizontalpodautoscaler_status_current_replicas{namespace="$namespace",'
        'horizontalpodautoscaler=~"keda-hpa-$scaledObject"}[1m])',
    ),
]


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=5) as resp:
            doc = json.load(resp)
        assert doc["status"] == "success", doc
        return list(doc["data"]["result"])

    def label_values(self, selector: str, label: str) -> list[str]:
        return sorted(r["metric"].get(label, "") for r in self.query(f"count by({label}) ({selector})"))


def _resolve(expr: str, values: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), m.group(0)), expr)


@pytest.fixture(scope="module")
def scraped_run() -> Iterator[Prometheus]:
    """`ebb run` (a ScaledObject scaling idle workers on a SQLite backlog, and an HTTPScaledObject the fixture sends
    requests to through the interceptor) scraped every second by Prometheus."""
    if PROMETHEUS is None:
        pytest.skip(needs("prometheus", "apt-get install prometheus"))
    tmp = Path(tempfile.mkdtemp(prefix="ebb-grafana-"))
    db = tmp / "work.db"
    make_backlog(db, rows=6)
    web = free_ports(2)
    http_docs = [group("grafana-web"), httpso("grafana-web", web, spec="hosts: [web.local]\n", polling=1)]
    manifests = [scaled_group("grafana-app", db, per_replica=2, max_replicas=4), *http_docs]
    (tmp / "app.yaml").write_text("---\n".join(manifests))
    metrics_port, prom_port, http_port = free_port(), free_port(), free_port()
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ebb.cli import main; main()",
            "run",
            str(tmp / "app.yaml"),
            "--metrics-port",
            str(metrics_port),
            "--http-port",
            str(http_port),
            "--state",
            str(tmp / ".ebb" / "state.json"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp,
    )
    config = yaml.safe_load((ROOT / "deploy" / "grafana" / "prometheus-scrape.yml").read_text())
    job = config["scrape_configs"][0]
    job["scrape_interval"] = "1s"
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{metrics_port}"]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the server
    prom = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    p = Prometheus(f"http://127.0.0.1:{prom_port}")
    try:
        deadline = time.monotonic() + 90
        served = 0
        while served < 3:  # a cold start, then requests to the warm replica
            assert time.monotonic() < deadline, "the interceptor never answered"
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/", headers={"Host": "web.local"})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    served += resp.status == 200
            except OSError:
                time.sleep(0.2)
        while True:
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            assert run.poll() is None, "ebb run exited"
            try:
                # Enough samples for rate()/delta(): a few scrapes after the workers were scaled up.
                ready = p.query('count_over_time(ebb_current_replicas{name="grafana-app"}[1m]) >= 4')
                scaled = p.query('ebb_current_replicas{name="grafana-app"} > 0')
                routed = p.query('count_over_time(ebb_http_requests_total{name="grafana-web"}[1m]) >= 4')
                if ready and scaled and routed:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus never scraped a scaled ebb run"
            time.sleep(0.5)
        yield p
    finally:
        for proc in (run, prom):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_every_panel_of_kedas_dashboard_returns_data(scraped_run: Prometheus) -> None:
    values: dict[str, str] = {}
    namespaces = scraped_run.label_values("keda_scaler_active", "exported_namespace")
    assert namespaces == ["default"]  # the object's own namespace, not the scrape target's
    values["namespace"] = namespaces[0]
    for name, (metric, label) in KEDA_VARIABLES.items():
        if name == "namespace":
            continue
        selector = f'exported_namespace="{values["namespace"]}"'
        if "scaledObject" in values:  # as a user picks them: the scaler and metric of the chosen object
            selector += f', scaledObject="{values["scaledObject"]}"'
        found = scraped_run.label_values(f"{metric}{{{selector}}}", label)
        assert found, f"variable ${name} has no values"
        values[name] = found[0]
    assert values["scaledObject"] == "grafana-app" and values["scaler"] == "sqliteScaler"
    for title, expr in KEDA_PANELS:
        result = scraped_run.query(_resolve(expr, values))
        assert result, f"{title}: no data for {_resolve(expr, values)}"


def test_every_panel_of_ebbs_dashboard_returns_data(scraped_run: Prometheus) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "ebb-dashboard.json").read_text())
    values: dict[str, str] = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
        assert m is not None, var["definition"]
        found = scraped_run.label_values(_resolve(m.group(1), values), m.group(2))
        assert found, f"variable ${var['name']} has no values"
        values[var["name"]] = found[0]
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 7
    assert values["route"] == "grafana-web"
    assert sum("ebb_http_" in expr for _, expr in exprs) >= 10  # the HTTP row
    for title, expr in exprs:
        result = scraped_run.query(_resolve(expr, values))
        assert result, f"{title}: no data for {_resolve(expr, values)}"
