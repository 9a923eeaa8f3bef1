"""The fleet overview with ten thousand objects: how long one view takes to read from the history.

A history of `--objects` objects (in 20 namespaces), each polled every `--interval` seconds for `--hours` hours,
is written straight into a fresh SQLite file (the store's schema, raw points). Then, over the whole range:

- overview: one `/api/overview` view (a page of 50 objects with 60-point sparklines, the fleet's totals and the
  stacked chart), the way the dashboard asks for it, with its JSON size;
- baseline: the per-object path the single-object dashboard offers: one `series()` query per object, for the
  same page of 50, and for every object of the fleet (what the fleet's totals and chart would need).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import summary, write_result
from ebb.observe.catalog import ObjectInfo
from ebb.observe.cost import Pricing
from ebb.observe.history import HistoryStore
from ebb.observe.metrics import TriggerInfo
from ebb.observe.overview import ALL, Filters, fleet_view, overview
from ebb.runtime.observer import ObjectRef


def build(path: Path, objects: int, hours: float, interval: float, now: float) -> HistoryStore:
    store = HistoryStore(path)
    rng = random.Random(7)
    refs = [ObjectRef("ScaledObject", f"ns-{i % 20:02d}", f"app-{i:05d}") for i in range(objects)]
    store.register([ObjectInfo(r, "Deployment/x", 0, 10, (TriggerInfo(0, "redis"),)) for r in refs])
    polls = int(hours * 3600 / interval)
    start = now - polls * interval
    db = store._db  # a benchmark may write in bulk: the store's write() goes record by record
    with db:
        for ref in refs:
            phase = rng.uniform(0, interval)
            peak = rng.randint(1, 10)
            rows = []
            for k in range(polls):
                t = start + phase + k * interval
                replicas = max(0, round(peak * (0.5 + 0.5 * math.sin(k / 20 + phase))))
                value = replicas * 4.0
                trig = (
                    f'[{{"metric": "s0-redis-q", "value": {value}, "target": 5.0, "active": {str(value > 0).lower()}}}]'
                )
                rows.append((ref.key, t, 0, int(value > 0), replicas, replicas, replicas, replicas, trig))
            db.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute(
                "UPDATE objects SET time = ?, state = 'active', current = ?, desired = ? WHERE key = ?",
                (rows[-1][1], rows[-1][4], rows[-1][4], ref.key),
            )
    return store


def timed(fn: Any, runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build(Path(tmp) / "history.db", args.objects, args.hours, args.interval, now)
        built = time.perf_counter() - t0
        (points,) = store.query("SELECT COUNT(*) FROM points")[0]
        start, end = now - args.hours * 3600 - args.interval, now
        pricing = Pricing(0.05)

        def view(filters: Filters = ALL, offset: int = 0) -> dict[str, Any]:
            return overview(store, start, end, filters=filters, pricing=pricing, offset=offset, limit=50, points=60)

        first_page, result = timed(view, args.runs)
        size = len(json.dumps(result))
        last_page, _ = timed(lambda: view(offset=args.objects - 50), args.runs)
        one_ns, _ = timed(lambda: view(Filters(namespace="ns-03")), args.runs)
        # What the API serves while its fleet cache (15 s) holds: the page's own reads only.
        cached = fleet_view(store, start, end, pricing=pricing)
        page_only, _ = timed(
            lambda: overview(store, start, end, pricing=pricing, offset=5000, limit=50, points=60, fleet=cached),
            args.runs,
        )
        page_keys = [o["key"] for o in result["objects"]]
        per_object_page, _ = timed(lambda: [store.series(k, start, end, 60) for k in page_keys], args.runs)
        keys = [r[0] for r in store.query("SELECT key FROM objects")]
        t0 = time.perf_counter()
        for k in keys:
            store.series(k, start, end, 60)
        per_object_fleet = time.perf_counter() - t0
        store.close()

    data = {
        "objects": args.objects,
        "points": points,
        "hours": args.hours,
        "interval_s": args.interval,
        "build_s": round(built, 1),
        "overview_view_s": summary(first_page, 3),
        "overview_last_page_s": summary(last_page, 3),
        "overview_one_namespace_s": summary(one_ns, 3),
        "overview_page_with_cached_fleet_s": summary(page_only, 3),
        "overview_json_bytes": size,
        "baseline_per_object_page_of_50_s": summary(per_object_page, 3),
        "baseline_per_object_whole_fleet_s": round(per_object_fleet, 2),
        "sql_statements_per_view": 7,
    }
    path = write_result("fleet", data)
    print(
        f"fleet: {args.objects} objects, {points} points: overview view p50 "
        f"{data['overview_view_s']['p50']} s ({size} bytes), a page with the fleet cached "
        f"{data['overview_page_with_cached_fleet_s']['p50']} s; per-object path: page of 50 "
        f"{data['baseline_per_object_page_of_50_s']['p50']} s (sparklines only), whole fleet "
        f"{data['baseline_per_object_whole_fleet_s']} s -> {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
