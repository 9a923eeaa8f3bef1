"""A real Prometheus (Debian's, on a free loopback port) loaded with a known series of ebb's own metrics.

The series is written as OpenMetrics and turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`
(Prometheus' own backfill), so a test knows every sample a range query must return.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scalers._prometheus_server import free_port, prometheus_binary

METRIC = "s0-redis-orders"
STEP = 60.0
#: The known series: three days ending two hours ago, one sample a minute, on whole minutes.
END = math.floor((time.time() - 7200) / STEP) * STEP
START = END - 3 * 86400
#: From here on the samples come from a second operator pod (a failover): the read-back merges both.
FAILOVER = END - 86400


def value_at(t: float) -> float:
    """A daily cycle with a burst every 40 minutes."""
    minute = int(t // 60)
    return round(50 + 40 * math.sin(2 * math.pi * (t % 86400) / 86400) + (30 if minute % 40 < 5 else 0), 3)


def replicas_at(t: float) -> int:
    return math.ceil(value_at(t) / 20)


def sample_times() -> list[float]:
    return [START + i * STEP for i in range(int((END - START) / STEP) + 1)]


def openmetrics(objects: list[tuple[str, str]]) -> str:
    """Trigger values and replicas of each (namespace, name), and a decoy object's trigger, as ebb exports them."""
    lines = ["# HELP keda_scaler_metrics_value x", "# TYPE keda_scaler_metrics_value gauge"]
    times = sample_times()
    for namespace, name in objects:
        common = f'namespace="{namespace}",scaler="redisScaler",triggerIndex="0",type="scaledobject"'
        labels = f'{common},scaledObject="{name}",metric="{METRIC}"'
        # The pods overlap for ten minutes (the old one still exported while the new one led): one point per time.
        for pod, keep in (("a", lambda t: t < FAILOVER + 600), ("b", lambda t: t >= FAILOVER)):
            lines += [
                f'keda_scaler_metrics_value{{{labels},pod="{pod}"}} {value_at(t)} {t:.0f}' for t in times if keep(t)
            ]
        decoy = f'{common},scaledObject="{name}-other",metric="s0-redis-x"'
        lines += [f"keda_scaler_metrics_value{{{decoy}}} 999 {t:.0f}" for t in times]
    for which in ("current", "desired"):
        lines += [f"# HELP ebb_{which}_replicas x", f"# TYPE ebb_{which}_replicas gauge"]
        for namespace, name in objects:
            obj = f'namespace="{namespace}",type="scaledobject",name="{name}"'
            lines += [f"ebb_{which}_replicas{{{obj}}} {replicas_at(t)} {t:.0f}" for t in times]
    return "\n".join(lines) + "\n# EOF\n"


@contextlib.contextmanager
def backfilled_prometheus(d: Path, objects: list[tuple[str, str]]) -> Iterator[str]:
    """Prometheus serving `openmetrics(objects)` from backfilled blocks; yields its URL."""
    binary = prometheus_binary()
    if binary is None or not os.access("/usr/bin/promtool", os.X_OK):
        pytest.skip("Debian's prometheus (with promtool) is not installed")
    (d / "series.om").write_text(openmetrics(objects))
    data = d / "data"
    subprocess.run(
        ["/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics", str(d / "series.om"), str(data)],
        check=True,
        capture_output=True,
    )
    (d / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    log = (d / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=30d",
            # Backfilled blocks hold no staleness markers (a scraped pod that goes away gets them): a lookback
            # shorter than the sample interval stands in, so the old pod's last value does not linger 5 minutes.
            "--query.lookback-delta=59s",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(d / 'prometheus.log').read_text()[-2000:]}")
            probe = f"{url}/api/v1/query?query=count(ebb_current_replicas)&time={END}"
            with contextlib.suppress(OSError), urllib.request.urlopen(probe) as r:
                if json.load(r)["data"]["result"]:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus never served the backfilled blocks")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
