"""The dashboard in headless Chromium, against a real history written by the store from synthetic polls."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ebb.observe.catalog import ObjectInfo
from ebb.observe.events import EventRecord
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import TriggerInfo
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import ScalingEvent
from ebb.web.server import AppServer, build_app, serve
from tests._skips import needs
from tests.observe._records import burst

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
OTHER = ObjectRef("ScaledObject", "batch", "thumbnails")
SO = ObjectRef("ScaledObject", "shop", "orders")


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[AppServer]:
    store = HistoryStore(tmp_path / "history.db")
    start = time.time() - 40 * 60
    records = burst(SO, start, step=20.0, polls=120)
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
    served = await serve(build_app(history=store, dashboard=True), "127.0.0.1", 0)
    try:
        yield served
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
    # Objects grouped by namespace.
    assert re.search(r"<h4>batch</h4>.*thumbnails.*<h4>shop</h4>.*orders", dom, re.S)
    for chart in ("chart-replicas", "chart-triggers"):
        section = dom.split(f'id="{chart}"', 1)[1].split("<h3>", 1)[0]
        assert "<canvas" in section, chart
    legends = re.findall(r'<div class="u-label">([^<]*)</div>', dom)
    for label in ("desired", "running", "s0-redis-orders", "s0-redis-orders target", "half", "half target"):
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
