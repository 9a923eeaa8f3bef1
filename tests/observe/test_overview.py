"""The fleet overview's reads and the cost figures, against figures computed independently from the raw points."""

from __future__ import annotations

import csv
import io
import itertools
import sqlite3
import statistics
from pathlib import Path

import aiohttp
import pytest

from ebb.observe.catalog import ObjectInfo
from ebb.observe.cost import Pricing
from ebb.observe.events import EventRecord
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import TriggerInfo
from ebb.observe.overview import Filters, daily_usage, default_range, fleet_usage, overview
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import Condition, Decision, ScalingEvent
from ebb.web.server import build_app, serve

from ._records import burst, poll, trigger

START = 1_700_005_500.0  # a fixed time, 15 minutes before midnight UTC: the tests never depend on the clock
ORDERS = ObjectRef("ScaledObject", "shop", "orders")
THUMBS = ObjectRef("ScaledObject", "batch", "thumbnails")
REPORTS = ObjectRef("ScaledJob", "batch", "reports")
PAUSED = ObjectRef("ScaledObject", "shop", "paused-one")
BROKEN = ObjectRef("ScaledObject", "web", "broken")


def _info(ref: ObjectRef, max_replicas: int, price: float | None = None) -> ObjectInfo:
    return ObjectInfo(ref, "ProcessGroup/x", 0, max_replicas, (TriggerInfo(0, "redis"),), price)


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    s = HistoryStore(tmp_path / "history.db")
    # orders: 0 -> 4 -> 0 with max 4 (hits its maximum); annotated price 0.5 per replica-hour.
    s.register([_info(ORDERS, 4, 0.5), _info(THUMBS, 10), _info(REPORTS, 3), _info(PAUSED, 2), _info(BROKEN, 5)])
    records = burst(ORDERS, START, step=15.0, polls=120) + burst(THUMBS, START, step=30.0, polls=60)
    # reports: a gap of 10 minutes in the middle (ebb was down): not counted.
    records += [poll(REPORTS, START + i * 20.0, (trigger(0, 3.0),), current=3, desired=3) for i in range(30)]
    records += [poll(REPORTS, START + 1200 + i * 20.0, (trigger(0, 1.0),), current=1, desired=1) for i in range(30)]
    records += [
        poll(PAUSED, START + i * 60.0, (trigger(0, 0.0),), current=2, desired=2, paused=True) for i in range(20)
    ]
    failing = (trigger(0, None, error="connection refused"),)
    records += [poll(BROKEN, START + i * 30.0, failing, current=1, desired=1) for i in range(10)]
    events = [
        EventRecord.of(ORDERS, ScalingEvent("KEDAScaleTargetActivated", "Scaled from 0 to 1"), START + 500),
        EventRecord.of(ORDERS, ScalingEvent("KEDAScaleTargetDeactivated", "Deactivated"), START + 1500),
        EventRecord.of(BROKEN, ScalingEvent("KEDAScalerFailed", "connection refused", "Warning"), START + 10),
    ]
    s.write(records, events)
    return s


def _independent(db: Path, key: str, start: float, end: float) -> tuple[float, float, float, float]:
    """(replica-seconds, covered seconds, peak, seconds at max) straight from the points table, by the documented
    rule: a step function; a step longer than max(120 s, 2.5 x the median step) is not counted."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT time, current, peak FROM points WHERE key = ? AND time >= ? AND time <= ? ORDER BY time",
            (key, start, end),
        ).fetchall()
        (mx,) = conn.execute("SELECT max_replicas FROM objects WHERE key = ?", (key,)).fetchone()
    conn.close()
    steps = [b[0] - a[0] for a, b in itertools.pairwise(rows)]
    cap = max(120.0, 2.5 * statistics.median(steps))
    used = sum(r[1] * min(s, cap) for r, s in zip(rows, steps, strict=False))
    covered = sum(min(s, cap) for s in steps)
    at_max = sum(min(s, cap) for r, s in zip(rows, steps, strict=False) if r[1] >= mx)
    return used, covered, max(r[2] for r in rows), at_max


def test_page_series_and_costs_agree_with_the_raw_points(store: HistoryStore) -> None:
    end = START + 3600
    pricing = Pricing.parse(["0.1", "batch=0.2"])
    view = overview(store, START, end, pricing=pricing, points=30)
    assert view["total"] == 5
    by_name = {o["name"]: o for o in view["objects"]}
    assert [o["namespace"] for o in view["objects"]] == ["batch", "batch", "shop", "shop", "web"]
    for o in view["objects"]:
        used, covered, peak, at_max = _independent(store.path, o["key"], START, end)  # type: ignore[arg-type]
        assert o["replica_seconds"] == pytest.approx(used)
        assert o["covered_seconds"] == pytest.approx(covered)
        assert o["peak_replicas"] == peak
        assert o["max_hit_seconds"] == pytest.approx(at_max)
        price = {"orders": 0.5}.get(o["name"], 0.2 if o["namespace"] == "batch" else 0.1)
        assert o["price_per_replica_hour"] == price
        assert o["cost"] == pytest.approx(used / 3600 * price)
        assert o["cost_at_peak"] == pytest.approx(peak * covered / 3600 * price)
        assert o["cost_at_max"] == pytest.approx(o["max_replicas"] * covered / 3600 * price)
        assert len(o["spark"]["time"]) <= 30
    # reports: of the 10-minute gap only the cap (120 s) counts: 29 steps at 3 replicas, the gap, 29 at 1.
    assert by_name["reports"]["replica_seconds"] == pytest.approx(29 * 20 * 3 + 120 * 3 + 29 * 20 * 1)
    # orders reached its maximum (4): marked in its sparkline and counted.
    assert by_name["orders"]["max_hit_seconds"] > 0 and any(by_name["orders"]["spark"]["max_hit"])
    assert not any(by_name["thumbnails"]["spark"]["max_hit"])
    assert by_name["orders"]["last_event"]["reason"] == "KEDAScaleTargetDeactivated"
    assert {o["name"]: o["state"] for o in view["objects"]} == {
        "orders": "idle",
        "thumbnails": "idle",
        "reports": "idle",
        "paused-one": "paused",
        "broken": "error",
    }
    totals = view["totals"]
    assert totals["replica_seconds"] == pytest.approx(sum(o["replica_seconds"] for o in view["objects"]))
    assert totals["cost"] == pytest.approx(sum(o["cost"] for o in view["objects"]))
    assert totals["cost_at_max"] == pytest.approx(sum(o["cost_at_max"] for o in view["objects"]))
    assert totals["objects_hitting_max"] == 3  # orders, reports and paused-one
    assert totals["cost"] < totals["cost_at_peak"] <= totals["cost_at_max"]


def test_filters_paging_and_stacked_chart(store: HistoryStore) -> None:
    end = START + 3600
    assert overview(store, START, end, filters=Filters(namespace="batch"))["total"] == 2
    assert [o["name"] for o in overview(store, START, end, filters=Filters(state="paused"))["objects"]] == [
        "paused-one"
    ]
    assert [o["name"] for o in overview(store, START, end, filters=Filters(name="ORD"))["objects"]] == ["orders"]
    page = overview(store, START, end, offset=2, limit=2)
    assert (page["total"], [o["name"] for o in page["objects"]]) == (5, ["orders", "paused-one"])
    assert overview(store, START, end, offset=10, limit=2)["total"] == 5
    view = overview(store, START, end, top=2)
    stacked = view["stacked"]
    labels = [s["label"] for s in stacked["series"]]
    usage = fleet_usage(store, START, end)["per_object"]
    leaders = sorted(usage, key=lambda k: usage[k]["replica_seconds"], reverse=True)[:2]
    assert labels == [k.split("/", 1)[1] for k in leaders] + ["others"]
    assert all(len(s["replicas"]) == len(stacked["time"]) for s in stacked["series"])
    # The stacked chart's area is the fleet's replica-seconds (bucket averages x bucket width), roughly.
    width = stacked["time"][1] - stacked["time"][0]
    area = sum(v or 0.0 for s in stacked["series"] for v in s["replicas"]) * width
    assert area == pytest.approx(view["totals"]["replica_seconds"], rel=0.15)
    assert view["namespaces"] == ["batch", "shop", "web"]
    assert view["states"] == {"active": 0, "idle": 3, "paused": 1, "fallback": 0, "error": 1}


def test_fallback_state(tmp_path: Path) -> None:
    s = HistoryStore(tmp_path / "h.db")
    s.register([_info(ORDERS, 4)])
    record = poll(ORDERS, START, (trigger(0, None, error="down"),), current=2, desired=2)
    assert record.decision is not None
    decision = Decision(2, True, "fallback", {**record.decision.conditions, "Fallback": Condition("True", "x")})
    s.write([record.__class__(**{**record.__dict__, "decision": decision})])
    assert overview(s, START - 10, START + 10)["objects"][0]["state"] == "fallback"


def test_daily_csv_rows_add_up_to_the_range(store: HistoryStore) -> None:
    end = START + 3600
    pricing = Pricing(0.1)
    rows = daily_usage(store, START, end, pricing=pricing)
    fleet = fleet_usage(store, START, end, pricing=pricing)["per_object"]
    sums: dict[str, float] = {}
    for r in rows:
        key = f"{r['kind']}/{r['namespace']}/{r['name']}"
        sums[key] = sums.get(key, 0.0) + r["replica_seconds"]
    assert sums == pytest.approx({k: v["replica_seconds"] for k, v in fleet.items()})
    # START is 23:45 UTC: the hour spans two days.
    assert len({r["day"] for r in rows}) == 2


def test_default_range_is_what_the_history_holds_up_to_a_day(store: HistoryStore) -> None:
    assert default_range(store, START + 4000) == (START, START + 4000)
    assert default_range(store, START + 200_000) == (START + 200_000 - 86400, START + 200_000)


def test_an_older_database_opened_read_only_still_gives_an_overview(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE objects (key TEXT PRIMARY KEY, kind TEXT, namespace TEXT, name TEXT, target TEXT, "
            "min_replicas INTEGER, max_replicas INTEGER, trigger_types TEXT, time REAL, active INTEGER, "
            "paused INTEGER, desired INTEGER, current INTEGER, ready INTEGER, triggers TEXT, last_scale REAL);"
            "CREATE TABLE points (key TEXT NOT NULL, time REAL NOT NULL, resolution REAL NOT NULL, active REAL, "
            "desired REAL, current REAL, ready REAL, peak REAL, triggers TEXT);"
            "CREATE TABLE events (time REAL NOT NULL, key TEXT, kind TEXT, namespace TEXT, name TEXT, type TEXT, "
            "reason TEXT, message TEXT);"
            "INSERT INTO objects (key, kind, namespace, name, max_replicas) "
            "VALUES ('ScaledObject/a/b', 'ScaledObject', 'a', 'b', 3);"
            f"INSERT INTO points VALUES ('ScaledObject/a/b', {START}, 0, 1, 2, 2, 2, 2, '[]');"
            f"INSERT INTO points VALUES ('ScaledObject/a/b', {START + 10}, 0, 1, 2, 2, 2, 2, '[]');"
        )
    conn.close()
    ro = HistoryStore(path, readonly=True)
    view = overview(ro, START, START + 60, pricing=Pricing(1.0))
    assert view["objects"][0]["replica_seconds"] == 20.0 and view["objects"][0]["state"] == "idle"
    assert ro.objects()[0]["state"] is None
    ro.close()


async def test_overview_and_csv_over_http(store: HistoryStore) -> None:
    app = build_app(history=store, dashboard=False, pricing=Pricing.parse(["0.1"]))
    served = await serve(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(served.url) as http:
            async with http.get("/api/overview", params={"namespace": "shop", "limit": "1"}) as resp:
                body = await resp.json()
            assert resp.status == 200
            # No `from`: the range is what the history holds (its first point), up to a day.
            assert body["from"] >= START and body["total"] == 2 and len(body["objects"]) == 1
            async with http.get("/api/overview", params={"state": "bogus"}) as resp:
                assert resp.status == 400
            async with http.get("/api/usage.csv", params={"from": str(START), "to": str(START + 3600)}) as resp:
                text = await resp.text()
                assert resp.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["name"] for r in rows} == {"orders", "thumbnails", "reports", "paused-one", "broken"}
        orders = [r for r in rows if r["name"] == "orders"]
        used = sum(float(r["replica_seconds"]) for r in orders)
        expected, *_ = _independent(store.path, ORDERS.key, START, START + 3600)  # type: ignore[arg-type]
        assert used == pytest.approx(expected, abs=0.2)
        assert {r["price"] for r in orders} == {"0.5"}  # the annotation wins over the flag
    finally:
        await served.stop()


def test_ebb_status_cost_table_agrees(store: HistoryStore) -> None:
    # The fixture's points are from 2023; a range back from now that reaches them.
    import time

    from typer.testing import CliRunner

    from ebb.cli import app

    since = f"{int(time.time() - START) + 60}s"
    result = CliRunner().invoke(
        app,
        ["status", "--history", str(store.path), "--cost", "--since", since, "--cost-per-replica-hour", "batch=0.2"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    lines = [ln.strip() for ln in result.output.splitlines()]
    line = next(ln for ln in lines if ln.startswith("ScaledObject/shop/orders"))
    used, covered, peak, _ = _independent(store.path, ORDERS.key, START, START + 86400)  # type: ignore[arg-type]
    cells = line.split()
    assert cells[1] == f"{used / 3600:.2f}" and cells[2] == f"{peak:g}" and cells[3] == "4"
    assert cells[4] == f"{used / 3600 * 0.5:.2f}"  # its annotation: 0.5 per replica-hour
    assert cells[5] == f"{peak * covered / 3600 * 0.5:.2f}" and cells[6] == f"{4 * covered / 3600 * 0.5:.2f}"
    thumbs = next(ln for ln in lines if ln.startswith("ScaledObject/batch/thumbnails"))
    assert thumbs.split()[4] != "-"
    broken = next(ln for ln in lines if ln.startswith("ScaledObject/web/broken"))
    assert broken.split()[4] == "-"  # no price for the web namespace
    assert "TOTAL" in result.output


async def test_the_api_reuses_the_fleet_part_between_views(store: HistoryStore) -> None:
    served = await serve(build_app(history=store, dashboard=False), "127.0.0.1", 0)
    params = {"from": str(START), "to": str(START + 7200)}
    try:
        async with aiohttp.ClientSession(served.url) as http:
            async with http.get("/api/overview", params=params) as resp:
                first = await resp.json()
            more = [poll(BROKEN, START + 400 + i * 30.0, (trigger(0, 1.0),), current=5, desired=5) for i in range(20)]
            store.write(more)
            async with http.get("/api/overview", params={**params, "namespace": "web"}) as resp:
                filtered = await resp.json()
            async with http.get("/api/overview", params=params) as resp:
                second = await resp.json()
    finally:
        await served.stop()
    # The page is read afresh; the fleet's totals and chart come from the first view (same filters and range).
    broken = next(o for o in second["objects"] if o["name"] == "broken")
    before = next(o for o in first["objects"] if o["name"] == "broken")
    assert broken["replica_seconds"] > before["replica_seconds"]
    assert second["totals"] == first["totals"] and second["stacked"] == first["stacked"]
    # Other filters: their own fleet part, read afresh.
    assert filtered["totals"]["replica_seconds"] == pytest.approx(broken["replica_seconds"])
