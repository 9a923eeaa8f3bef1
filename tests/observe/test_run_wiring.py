"""`ebb run`'s observers end to end: real processes scaled on a SQLite backlog, seen through every output."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ebb.cli import app
from ebb.observe.history import HistoryStore
from ebb.observe.services import Services
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from tests.runtime._support import Recorder, eventually, make_backlog, scaled_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_history_events_and_dashboard_of_a_real_run(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=4)
    loaded = load_text(scaled_group("wired", db, per_replica=2, max_replicas=4))
    state_dir = tmp_path / ".ebb"
    services = Services(state_dir, metrics_port=free_port(), dashboard=True, history=True)
    observer = services.observers(Recorder(), [*loaded.resources.scaled_objects()])
    runtime = LocalRuntime(loaded, observer, RuntimeOptions(state_path=state_dir / "state.json", output=None))
    await services.start()
    assert services.served is not None
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: any(o["current"] == 2 for o in services.store.objects()),  # type: ignore[union-attr]
                         what="history shows 2 replicas")  # fmt: skip
        async with aiohttp.ClientSession(services.served.url) as http:
            async with http.get("/metrics") as resp:
                text = await resp.text()
            async with http.get("/api/objects") as resp:
                objects = (await resp.json())["objects"]
            async with http.get("/") as resp:
                assert resp.status == 200 and "dashboard.js" in await resp.text()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.stop()
    samples = {
        (s.name, s.labels.get("name") or s.labels.get("scaledObject") or s.labels.get("type")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("ebb_current_replicas", "wired")] == 2
    assert samples[("keda_scaler_metrics_value", "wired")] == 4
    assert samples[("keda_resource_registered_total", "scaled_object")] == 1
    assert samples[("keda_trigger_registered_total", "sqlite")] == 1
    assert samples[("ebb_activation_latency_seconds_count", "wired")] == 1
    [obj] = objects
    assert (obj["name"], obj["target"], obj["max_replicas"], obj["trigger_types"]) == (
        "wired",
        "ProcessGroup/wired",
        4,
        ["sqlite"],
    )
    reasons = [json.loads(line)["reason"] for line in (state_dir / "events.jsonl").read_text().splitlines()]
    assert "KEDAScaleTargetActivated" in reasons


def test_status_and_events_commands_read_what_run_recorded(tmp_path: Path) -> None:
    from ebb.observe.catalog import ObjectInfo
    from ebb.observe.events import EventLog, EventRecord
    from ebb.observe.metrics import TriggerInfo
    from ebb.scaling.types import ScalingEvent

    from ._records import SO, poll, trigger

    now = time.time()
    store = HistoryStore(tmp_path / "history.db")
    store.register([ObjectInfo(SO, "ProcessGroup/workers", 1, 9, (TriggerInfo(0, "redis", "backlog"),))])
    store.write(
        [
            poll(SO, now - 120, (trigger(0, 0.0),), current=1, desired=1),
            poll(SO, now - 60, (trigger(0, 17.0, active=True, name="backlog"),), current=1, desired=4),
        ]
    )
    store.close()
    log = EventLog(tmp_path / "events.jsonl")
    log.append(EventRecord.of(SO, ScalingEvent("SuccessfulRescale", "New size: 4"), now - 60))
    log.append(EventRecord.of(SO, ScalingEvent("Old", "long ago"), now - 7200))

    runner = CliRunner()
    result = runner.invoke(app, ["status", "--history", str(tmp_path / "history.db")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.output.splitlines() if "orders" in line]
    assert row.split()[:10] == ["shop", "orders", "ScaledObject", "ProcessGroup/workers", "1", "9", "1", "4", "1",
                                "True"]  # fmt: skip
    assert "backlog=17/5" in row and "1m" in row

    result = runner.invoke(
        app, ["events", "--log", str(tmp_path / "events.jsonl"), "--since", "10m"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "SuccessfulRescale" in result.output and "Old" not in result.output
    result = runner.invoke(app, ["events", "--log", str(tmp_path / "events.jsonl"), "--object", "nothing"])
    assert "SuccessfulRescale" not in result.output
    result = runner.invoke(app, ["events", "--log", str(tmp_path / "events.jsonl"), "--since", "soon"])
    assert result.exit_code == 2
