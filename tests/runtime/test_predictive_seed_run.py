"""A restarted `ebb run` keeps its forecaster: ebb.dev/predictive is seeded from the run's SQLite history file.

Real processes, a real SQLite backlog and the real history file (`.ebb/history.db`); the forecast is read back
through the public outputs: the first PollRecord, /metrics and the dashboard's series API.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ebb.observe.history import HistoryStore
from ebb.observe.services import HISTORY_FILE, Services
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import TriggerResult
from ebb.spec.loader import load_text
from tests.observe._records import poll
from tests.observe.test_run_wiring import free_port

from ._support import Recorder, eventually, make_backlog, scaled_group

NAME = "seeded"
REF = ObjectRef("ScaledObject", "default", NAME)


async def run(tmp_path: Path, until: Any) -> tuple[Recorder, str, dict[str, Any]]:
    """`ebb run` (in process, as the CLI wires it) on the state directory until `until(recorder)`: what the
    observers saw, /metrics and the object's series from the dashboard's API at that moment."""
    db = tmp_path / "work.db"
    loaded = load_text(scaled_group(NAME, db, annotations='"ebb.dev/predictive": "horizon=10m"'))
    state_dir = tmp_path / ".ebb"
    services = Services(state_dir, metrics_port=free_port(), dashboard=True, history=True)
    recorder = Recorder()
    observer = services.observers(recorder, [*loaded.resources.scaled_objects()])
    options = RuntimeOptions(state_path=state_dir / "state.json", output=None, history=services)
    runtime = LocalRuntime(loaded, observer, options)
    await services.start()
    assert services.served is not None
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: until(recorder), what="the run's polls")
        async with aiohttp.ClientSession(services.served.url) as http:
            async with http.get("/metrics") as resp:
                metrics = await resp.text()
            async with http.get(f"/api/objects/ScaledObject/default/{NAME}/series") as resp:
                series = await resp.json()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.stop()
    return recorder, metrics, series


def forecast_metric(text: str) -> dict[str, float]:
    return {
        s.labels["band"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ebb_predictive_forecast_value" and s.labels.get("scaledObject") == NAME
    }


async def test_a_restarted_run_forecasts_at_its_first_poll_from_its_history_file(tmp_path: Path) -> None:
    make_backlog(tmp_path / "work.db", rows=4)
    # The first run: nothing recorded yet, so its first poll has no forecast; it records its polls.
    first, metrics, _ = await run(tmp_path, lambda r: len(r.polls) >= 3)
    assert first.polls[0].predictions == () and forecast_metric(metrics) == {}
    metric = first.polls[0].triggers[0].metric_name
    path = tmp_path / ".ebb" / HISTORY_FILE
    store = HistoryStore(path)
    try:
        assert [v for _, v in store.trigger_series(REF.key, metric, 0, time.time() + 60)][:3] == [4.0, 4.0, 4.0]
        # Two more days as earlier runs recorded them, one poll a minute: a backlog of 30 most of the time.
        start = first.polls[0].time - 2 * 86400
        store.write(
            [
                poll(REF, t, (TriggerResult(metric, 2.0, value=30.0, active=True),), current=4, desired=4)
                for t in (start + 60 * i for i in range(2 * 1440 - 5))
            ]
        )
        store.maintain(time.time())
    finally:
        store.close()
    # The restart: the forecast is there at the first poll, from the history, while the backlog is 4.
    second, metrics, series = await run(tmp_path, lambda r: len(r.polls) >= 1)
    (prediction,) = second.polls[0].predictions
    assert prediction.metric_name == metric and prediction.mode == "on" and prediction.enabled
    assert 4.0 < prediction.forecast.mean[0] <= 30.0  # learnt from the recorded days, not from the 4 read now
    assert second.polls[0].triggers[0].value == prediction.value >= prediction.forecast.mean[0]
    # /metrics and the dashboard's API show it (the forecast of this poll, or of a poll after it, if there was one)
    forecasts = [p.forecast.mean[0] for r in second.polls for p in r.predictions]
    assert forecast_metric(metrics)["mean"] in forecasts
    (logged,) = series["forecasts"]
    assert logged["latest"]["mean"][0] in [round(m, 4) for m in forecasts]
    # ... with the band of the steps before the restart, replayed from the history, beside their values
    before = [s for s in logged["steps"] if s["time"] < second.polls[0].time - 60]
    assert len(before) >= 30 and all(4.0 <= s["mean"] <= 30.0 for s in before)
