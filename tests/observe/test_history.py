"""The history store (SQLite file and in-memory), its observer's queue, downsampling, retention and JSON API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from ebb.observe.catalog import ObjectInfo
from ebb.observe.events import EventRecord
from ebb.observe.history import HistoryObserver, HistoryStore
from ebb.observe.metrics import TriggerInfo
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import ScalingEvent
from ebb.web.server import build_app, serve

from ._records import SO, burst, poll, trigger

T0 = 1_700_000_000.0


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> HistoryStore:
    s = HistoryStore(tmp_path / "history.db" if request.param == "file" else None)
    yield s
    s.close()


def test_objects_show_latest_state_and_registration(store: HistoryStore) -> None:
    store.register([ObjectInfo(SO, "ProcessGroup/workers", 0, 8, (TriggerInfo(0, "redis"),))])
    store.write(
        [
            poll(SO, T0, (trigger(0, 0.0),), current=0, desired=0),
            poll(SO, T0 + 10, (trigger(0, 12.0, active=True),), current=0, desired=3),
            poll(SO, T0 + 20, (trigger(0, 11.0, active=True),), current=3, desired=3, ready=2),
        ]
    )
    [obj] = store.objects()
    assert (obj["namespace"], obj["name"], obj["target"], obj["min_replicas"], obj["max_replicas"]) == (
        "shop",
        "orders",
        "ProcessGroup/workers",
        0,
        8,
    )
    assert (obj["current"], obj["desired"], obj["ready"], obj["active"]) == (3, 3, 2, True)
    assert obj["last_scale"] == T0 + 10
    assert obj["trigger_types"] == ["redis"]
    assert obj["triggers"][0]["value"] == 11.0 and obj["triggers"][0]["target"] == 5.0


def test_series_range_usage_and_point_limit(store: HistoryStore) -> None:
    # 2 replicas for 100 s, then 4 for 100 s: 600 replica-seconds; peak 4 over 200 s would be 800.
    records = [poll(SO, T0 + i * 10, (trigger(0, 1.0),), current=2, desired=2) for i in range(10)]
    records += [poll(SO, T0 + 100 + i * 10, (trigger(0, 9.0),), current=4, desired=4) for i in range(11)]
    store.write(records)
    series = store.series(SO.key, T0, T0 + 200)
    assert series is not None
    assert len(series["points"]) == 21
    assert series["replica_seconds"] == pytest.approx(600.0)
    assert series["peak_replicas"] == 4
    assert series["peak_replica_seconds"] == pytest.approx(800.0)
    limited = store.series(SO.key, T0, T0 + 200, max_points=5)
    assert limited is not None and len(limited["points"]) <= 5
    assert limited["replica_seconds"] == pytest.approx(600.0)  # totals come from full resolution
    assert max(p["peak"] for p in limited["points"]) == 4
    inside = store.series(SO.key, T0 + 50, T0 + 60)
    assert inside is not None and [p["time"] for p in inside["points"]] == [T0 + 50, T0 + 60]
    assert store.series("ScaledObject/shop/nothing", T0, T0 + 200) is None


def test_gaps_where_ebb_was_not_running_are_not_billed(store: HistoryStore) -> None:
    store.write(
        [
            poll(SO, T0, (trigger(0, 1.0),), current=3, desired=3),
            poll(SO, T0 + 10, (trigger(0, 1.0),), current=3, desired=3),
            poll(SO, T0 + 20, (trigger(0, 1.0),), current=3, desired=3),
            poll(SO, T0 + 86_400, (trigger(0, 1.0),), current=3, desired=3),
        ]
    )
    series = store.series(SO.key, T0, T0 + 86_400)
    assert series is not None
    assert series["replica_seconds"] < 3 * 86_400 / 100


def test_points_older_than_an_hour_are_downsampled_to_one_per_minute(store: HistoryStore) -> None:
    start = T0 - T0 % 60
    # Two minutes of polls every 10 s: values 0..5 then 6..11, replicas 1 then 3 (peak 5 in the second minute).
    records = []
    for i in range(12):
        current = 1 if i < 6 else (5 if i == 8 else 3)
        records.append(poll(SO, start + i * 10, (trigger(0, float(i), active=i == 3),), current=current, desired=1))
    store.write(records)
    store.maintain(now=start + 120 + 3600 + 1)
    series = store.series(SO.key, start, start + 200)
    assert series is not None
    points = series["points"]
    assert [p["time"] for p in points] == [start, start + 60]
    assert [p["triggers"][0]["value"] for p in points] == [2.5, 8.5]
    assert [p["active"] for p in points] == [pytest.approx(1 / 6), 0]  # the fraction of polls that were active
    assert [p["triggers"][0]["max"] for p in points] == [5.0, 11.0]
    assert points[1]["peak"] == 5
    assert points[1]["current"] == pytest.approx((3 * 5 + 5) / 6)
    # Recent points stay raw.
    store.write([poll(SO, start + 3700, (trigger(0, 1.0),), current=1, desired=1)])
    store.maintain(now=start + 3701)
    recent = store.series(SO.key, start + 3600, start + 3800)
    assert recent is not None and len(recent["points"]) == 1


def test_retention_deletes_old_points_and_events(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db", retention=3600.0)
    try:
        store.write(
            [poll(SO, T0, (trigger(0, 1.0),), current=1, desired=1)],
            [EventRecord(T0, "ScaledObject", "shop", "orders", "Normal", "KEDAScaleTargetActivated", "up")],
        )
        store.maintain(now=T0 + 7200)
        assert store.objects() == []
        assert store.events(0, T0 + 7200) == []
        assert store.series(SO.key, 0, T0 + 7200) is None
    finally:
        store.close()


def test_events_filter_by_object_and_range(store: HistoryStore) -> None:
    other = ObjectRef("ScaledJob", "shop", "reports")
    store.write(
        [],
        [
            EventRecord.of(SO, ScalingEvent("KEDAScaleTargetActivated", "up"), T0),
            EventRecord.of(other, ScalingEvent("KEDAJobsCreated", "2 jobs"), T0 + 5),
            EventRecord.of(SO, ScalingEvent("KEDAScaleTargetDeactivated", "down"), T0 + 10),
        ],
    )
    assert [e.reason for e in store.events(T0, T0 + 10)] == [
        "KEDAScaleTargetActivated",
        "KEDAJobsCreated",
        "KEDAScaleTargetDeactivated",
    ]
    assert [e.reason for e in store.events(T0 + 1, T0 + 10, key=SO.key)] == ["KEDAScaleTargetDeactivated"]
    assert [e.reason for e in store.events(T0, T0 + 10, limit=1)] == ["KEDAScaleTargetDeactivated"]


async def test_observer_queues_and_writes_in_batches(store: HistoryStore) -> None:
    observer = HistoryObserver(store, flush_interval=0.01, clock=lambda: T0 + 1000)
    for record in burst(SO, T0, polls=30):
        observer.poll(record)
    observer.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled"), T0 + 100)
    observer.problem(SO, "target gone", T0 + 110)
    observer.problem(SO, "target gone", T0 + 120)  # the same problem again is not news
    assert store.objects() == []  # nothing written on the caller's path
    task = asyncio.create_task(observer.run())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if store.objects():
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    series = store.series(SO.key, T0, T0 + 1000)
    assert series is not None and len(series["points"]) == 30
    assert [e.reason for e in store.events(T0, T0 + 1000)] == ["KEDAScaleTargetActivated", "ScalingProblem"]


async def test_full_queue_drops_and_counts_instead_of_blocking(store: HistoryStore) -> None:
    drops: list[int] = []
    observer = HistoryObserver(store, queue_size=5, on_drop=drops.append)
    for record in burst(SO, T0, polls=8):
        observer.poll(record)
    assert observer.dropped == 3 and sum(drops) == 3
    await observer.flush()
    series = store.series(SO.key, T0, T0 + 1000)
    assert series is not None and len(series["points"]) == 5


async def test_removed_object_leaves_the_objects_list(store: HistoryStore) -> None:
    observer = HistoryObserver(store)
    observer.poll(poll(SO, T0, (trigger(0, 1.0),), current=1, desired=1))
    await observer.flush()
    observer.removed(SO)
    await observer.flush()
    assert store.objects() == []


async def test_json_api(store: HistoryStore) -> None:
    store.register([ObjectInfo(SO, "ProcessGroup/workers", 0, 4, (TriggerInfo(0, "redis"),))])
    store.write(burst(SO, T0, polls=20), [EventRecord.of(SO, ScalingEvent("KEDAScaleTargetActivated", "up"), T0 + 60)])
    served = await serve(build_app(history=store), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(served.url) as http:
            async with http.get("/api/objects") as resp:
                body = await resp.json()
                assert [o["name"] for o in body["objects"]] == ["orders"]
            url = f"/api/objects/ScaledObject/shop/orders/series?from={T0}&to={T0 + 1000}&points=7"
            async with http.get(url) as resp:
                body = await resp.json()
                assert 0 < len(body["points"]) <= 7
                assert [e["reason"] for e in body["events"]] == ["KEDAScaleTargetActivated"]
            async with http.get(f"/api/events?from={T0}&to={T0 + 1000}&object={SO.key}") as resp:
                assert [e["object"] for e in (await resp.json())["events"]] == ["ScaledObject shop/orders"]
            async with http.get("/api/objects/ScaledObject/shop/missing/series") as resp:
                assert resp.status == 404
            async with http.get("/api/events?from=yesterday") as resp:
                assert resp.status == 400
            async with http.get("/api/events?from=15m") as resp:
                assert resp.status == 200  # a relative range: nothing that recent here
                assert (await resp.json())["events"] == []
    finally:
        await served.stop()
