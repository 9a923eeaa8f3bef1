"""The dashboard in headless Chromium, against a real history written by the store from synthetic polls: the fleet
overview (the home page) with 50 objects in 3 namespaces, and one object's detail."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest

from ebb.observe.catalog import ObjectInfo
from ebb.observe.cost import Pricing
from ebb.observe.events import EventRecord
from ebb.observe.forecasts import ForecastLog
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import TriggerInfo
from ebb.observe.overview import fleet_usage
from ebb.runtime.observer import ObjectRef, PollRecord
from ebb.runtime.predictive import PredictiveScaler
from ebb.scalers.base import MetricSpec, Scaler, ScalerMetadata, ScalerReading, TriggerContext
from ebb.scaling.forecast import parse_predictive
from ebb.scaling.types import ScalingEvent
from ebb.web.server import AppServer, build_app, serve
from tests._skips import needs
from tests.observe._records import burst, poll, trigger

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
OTHER = ObjectRef("ScaledObject", "batch", "thumbnails")
SO = ObjectRef("ScaledObject", "shop", "orders")


class Backlog(Scaler):
    """The burst's backlog, as a trigger reads it (set by the fixture before each read)."""

    type_name: ClassVar[str] = "backlog"
    Metadata: ClassVar[type[ScalerMetadata]] = ScalerMetadata
    value = 0.0

    def metric_spec(self) -> MetricSpec:
        return MetricSpec("s0-redis-orders", 5.0)

    async def read(self) -> ScalerReading:
        return ScalerReading(self.value, self.value > 0)


async def with_forecasts(records: list[PollRecord], log: ForecastLog) -> list[PollRecord]:
    """The records with what a real ebb.dev/predictive wrapper forecast from trigger 0's values, poll by poll."""
    clock = [0.0]
    inner = Backlog(TriggerContext(trigger_type="backlog"), ScalerMetadata())
    scaler = PredictiveScaler(inner, parse_predictive("horizon=5m,mode=observe"), clock=lambda: clock[0])
    out = []
    for r in records:
        clock[0] = r.time
        inner.value = r.triggers[0].value or 0.0
        await scaler.get_metric_and_activity()
        p = scaler.prediction()
        record = dataclasses.replace(r, predictions=(p,) if p is not None else ())
        log.poll(record)
        out.append(record)
    return out


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[AppServer]:
    store = HistoryStore(tmp_path / "history.db")
    start = time.time() - 40 * 60
    forecasts = ForecastLog()
    records = await with_forecasts(burst(SO, start, step=20.0, polls=120), forecasts)
    store.register(
        [
            ObjectInfo(SO, "ProcessGroup/order-workers", 0, 4, (TriggerInfo(0, "redis"), TriggerInfo(1, "redis"))),
            ObjectInfo(OTHER, "ProcessGroup/thumbs", 0, 10, (TriggerInfo(0, "redis"),)),
        ]
    )
    scale_times = [r.time for r in records if r.desired_replicas != r.current_replicas]
    store.write(
        records + burst(OTHER, start, step=60.0, polls=40),
        [
            EventRecord.of(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled from 0 to 1"), scale_times[0]),
            EventRecord.of(SO, ScalingEvent("KEDAScalerFailed", "s1-redis-orders: timeout", "Warning"), start + 600),
            EventRecord.of(SO, ScalingEvent("KEDAScaleTargetDeactivated", "Deactivated to 0"), scale_times[-1]),
        ],
    )
    served = await serve(build_app(history=store, dashboard=True, forecasts=forecasts), "127.0.0.1", 0)
    try:
        yield served
    finally:
        await served.stop()
        store.close()


async def test_series_api_serves_the_forecast_band_beside_the_values(dashboard: AppServer) -> None:
    path = "/api/objects/ScaledObject/shop/orders/series?from=1h"
    async with aiohttp.ClientSession(dashboard.url) as http, http.get(path) as resp:
        body = await resp.json()
    (fc,) = body["forecasts"]  # only trigger 0 forecasts
    assert fc["metric"] == "s0-redis-orders"
    steps = fc["steps"]
    assert len(steps) >= 30  # one per minute of the 40 minutes, from the first minute's end
    assert all(s["lower"] <= s["mean"] <= s["upper"] for s in steps)
    assert all(a["time"] < b["time"] for a, b in itertools.pairwise(steps))
    assert max(s["upper"] for s in steps) > 0  # the burst was forecast, from the values before each step
    latest = fc["latest"]
    assert latest["mode"] == "observe" and latest["guard"] in ("on", "off")
    assert len(latest["mean"]) == len(latest["upper"]) >= 5  # the curve ahead: 5 minutes and the current one
    # the values the band is drawn beside are served in the same answer
    assert any(t["metric"] == "s0-redis-orders" for p in body["points"] for t in p["triggers"])


#: 50 objects in 3 namespaces: (namespace, how many).
FLEET = (("checkout", 20), ("media", 18), ("reporting", 12))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[AppServer, HistoryStore]]:
    """A fleet of 50: bursts of different sizes, every 7th a ScaledJob, a few paused, failing or stuck at max."""
    store = HistoryStore(tmp_path / "fleet.db")
    start = time.time() - 30 * 60
    infos, records, events = [], [], []
    n = 0
    for namespace, count in FLEET:
        for i in range(count):
            n += 1
            kind = "ScaledJob" if n % 7 == 0 else "ScaledObject"
            ref = ObjectRef(kind, namespace, f"{namespace[:4]}-worker-{i:02d}")
            price = 0.25 if namespace == "media" and i == 0 else None
            # burst() scales to 4: a maximum of 4 is hit (the "burning money" case), 10 is not.
            infos.append(ObjectInfo(ref, "ProcessGroup/w", 0, 10 if n % 3 else 4, (TriggerInfo(0, "redis"),), price))
            offset = (n % 6) * 60.0
            if n % 11 == 0:  # failing
                failing = (trigger(0, None, error="connection refused"),)
                records += [poll(ref, start + offset + k * 30.0, failing, current=1, desired=1) for k in range(50)]
                events.append(EventRecord.of(ref, ScalingEvent("KEDAScalerFailed", "refused", "Warning"), start + 900))
            elif n % 13 == 0:  # paused
                idle = (trigger(0, 0.0),)
                records += [poll(ref, start + k * 30.0, idle, current=2, desired=2, paused=True) for k in range(60)]
            else:
                records += burst(ref, start + offset, step=15.0 + n % 4 * 5.0, polls=90)
                events.append(EventRecord.of(ref, ScalingEvent("KEDAScaleTargetActivated", "Scaled from 0 to 1"),
                                             start + offset + 600))  # fmt: skip
    store.register(infos)
    store.write(records, events)
    served = await serve(build_app(history=store, dashboard=True, pricing=Pricing.parse(["0.1"])), "127.0.0.1", 0)
    try:
        yield served, store
    finally:
        await served.stop()
        store.close()


async def _chromium(tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1280,900",
        "--virtual-time-budget=5000",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


async def test_page_and_assets_are_served_without_a_cdn(dashboard: AppServer) -> None:
    async with aiohttp.ClientSession(dashboard.url) as http:
        async with http.get("/") as resp:
            page = await resp.text()
        assert resp.status == 200
        for src in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert not src.startswith(("http:", "https:", "//")), src
            async with http.get("/" + src) as asset:
                assert asset.status == 200, src


@pytest.mark.skipif(CHROMIUM is None, reason=needs("Chromium", "apt-get install chromium"))
async def test_dashboard_draws_charts_legends_and_events(dashboard: AppServer, tmp_path: Path) -> None:
    url = f"{dashboard.url}/#{SO.key}"
    dom = await _chromium(tmp_path, "--dump-dom", url)
    assert 'data-ready="1"' in dom
    # The old link form (#Kind/namespace/name) opens the object's detail, beside the objects of its namespace.
    assert 'data-view="detail"' in dom
    assert re.search(r"<h4>shop</h4>.*orders", dom, re.S) and "thumbnails" not in dom
    # maxReplicaCount (4) is drawn on the replicas chart.
    assert "maxReplicaCount" in re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    for chart in ("chart-replicas", "chart-triggers"):
        section = dom.split(f'id="{chart}"', 1)[1].split("<h3>", 1)[0]
        assert "<canvas" in section, chart
    legends = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    for label in (
        "desired",
        "running",
        "s0-redis-orders",
        "s0-redis-orders target",
        "s0-redis-orders forecast",
        "s0-redis-orders forecast upper",
        "s0-redis-orders forecast lower",
        "half",
        "half target",
    ):
        assert label in legends
    assert "KEDAScaleTargetActivated" in dom and "KEDAScalerFailed" in dom
    used = int(re.search(r'id="replica-seconds"><b>(\d+)</b>', dom).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r'id="peak-cost"><b>(\d+)</b>', dom).group(1))  # type: ignore[union-attr]
    assert 0 < used < peak

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "dashboard.png"
    shot.unlink(missing_ok=True)
    await _chromium(tmp_path, f"--screenshot={shot}", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(CHROMIUM is None, reason=needs("Chromium", "apt-get install chromium"))
async def test_overview_shows_the_fleet_of_50_in_3_namespaces(
    fleet: tuple[AppServer, HistoryStore], tmp_path: Path
) -> None:
    served, store = fleet
    dom = await _chromium(tmp_path, "--dump-dom", f"{served.url}/")
    assert 'data-ready="1"' in dom and 'data-view="overview"' in dom
    rows = re.findall(r'<tr class="row" data-key="([^"]+)" data-state="([^"]+)"', dom)
    assert len(rows) == 50
    # Grouped by namespace, in order, each namespace's objects under its heading.
    headings = re.findall(r'<tr class="ns"><td colspan="10">([^<]+)</td>', dom)
    assert headings == ["checkout", "media", "reporting"]
    assert [k.split("/")[1] for k, _ in rows] == [ns for ns, count in FLEET for _ in range(count)]
    assert "1–50 of 50" in dom  # noqa: RUF001 (the page's en dash)
    states = {st for _, st in rows}
    assert states == {"idle", "paused", "error"}
    assert sum(1 for _, st in rows if st == "paused") == len([n for n in range(1, 51) if n % 13 == 0 and n % 11])
    # Every row has its two sparklines; objects that reached maxReplicaCount are marked.
    assert dom.count('<svg width="120" height="26" class="spark">') == 100
    assert "maxmark" in dom and "▲max" in dom
    # The stacked chart: a canvas and a legend with the top applications and the rest.
    assert "<canvas" in dom.split('id="chart-fleet"', 1)[1][:5000]
    legends = [x for x in re.findall(r'<div class="u-label">([^<]*)</div>', dom) if x != "Time"]
    assert legends[0] == "others" and len(legends) == 9  # the top 8 by replica-seconds, and the rest
    # Cost: the figures on the page agree with the history, computed independently of the page.
    spent = float(re.search(r"<b>([0-9.]+)</b>spent", dom).group(1))  # type: ignore[union-attr]
    first = min(r[0] for r in store.query("SELECT MIN(time) FROM points"))
    usage = fleet_usage(store, first, time.time(), pricing=Pricing.parse(["0.1"]))
    assert spent == pytest.approx(usage["totals"]["cost"], rel=0.02, abs=0.01)
    assert re.search(r"<b>([1-9][0-9]*)</b>hit maxReplicaCount", dom)

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "overview.png"
    shot.unlink(missing_ok=True)
    await _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1100", f"{served.url}/")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(CHROMIUM is None, reason=needs("Chromium", "apt-get install chromium"))
async def test_overview_filters_and_range_come_from_the_url(
    fleet: tuple[AppServer, HistoryStore], tmp_path: Path
) -> None:
    served, _ = fleet
    dom = await _chromium(tmp_path, "--dump-dom", f"{served.url}/#range=1h&ns=media&state=idle&q=worker-1")
    rows = re.findall(r'<tr class="row" data-key="([^"]+)" data-state="([^"]+)"', dom)
    assert rows and all(k.startswith("Scaled") and "/media/medi-worker-1" in k and st == "idle" for k, st in rows)
    assert re.search(r'<button data-range="1h" class="on">', dom)
    assert 'value="worker-1"' in dom or "worker-1" in dom
