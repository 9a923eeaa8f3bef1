"""The fleet overview's reads: every object, a page of them with downsampled series, and what they cost.

A view costs a fixed number of SQL statements whatever the fleet's size: the page of objects (with the filtered
count), the page's series (downsampled in SQL, with each object's replica-seconds in the same statement), the
page's last events, the fleet's totals per object, and the stacked chart. Never one query per object.

Replica-seconds follow `history.replica_seconds` exactly (a step function; a step longer than 2.5 times the
object's median step, and at least two minutes, is not counted), computed in SQL with window functions.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ebb.observe.cost import Pricing, cost
from ebb.observe.history import BUCKET, STATES, HistoryStore

#: The default range: what the history holds, up to a day.
MAX_DEFAULT_RANGE = 86400.0


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    state: str | None = None
    #: A case-insensitive substring of the object's name.
    name: str | None = None

    def where(self, store: HistoryStore) -> tuple[str, list[Any]]:
        """A WHERE clause over the objects table, and its parameters."""
        clauses = ["1 = 1"]
        params: list[Any] = []
        if self.namespace:
            clauses.append("namespace = ?")
            params.append(self.namespace)
        if self.state:
            clauses.append(f"COALESCE({store.column('state')}, 'idle') = ?")
            params.append(self.state)
        if self.name:
            clauses.append("instr(lower(name), lower(?)) > 0")
            params.append(self.name)
        return " AND ".join(clauses), params


ALL = Filters()
NO_PRICES = Pricing()


def default_range(store: HistoryStore, now: float) -> tuple[float, float]:
    """What the history holds, up to a day back from now (the last hour when it holds nothing)."""
    span = store.span()
    if span is None:
        return now - 3600.0, now
    first, _ = span
    return max(first, now - MAX_DEFAULT_RANGE), now


def _usage_cte(keys_sql: str) -> str:
    """Points of the selected keys in [?, ?] with each one's counted step `dt` (history.replica_seconds' rule).

    Parameters: start, end, *keys params, minimum cap (seconds).
    """
    return f"""
WITH p AS (
    SELECT key, time, current, peak, json_extract(triggers, '$[0].value') AS value,
           LEAD(time) OVER (PARTITION BY key ORDER BY time) - time AS step
    FROM points WHERE time >= ? AND time <= ? AND key IN ({keys_sql})
),
s AS (
    SELECT key, step, ROW_NUMBER() OVER (PARTITION BY key ORDER BY step) AS rn,
           COUNT(*) OVER (PARTITION BY key) AS n
    FROM p WHERE step IS NOT NULL
),
c AS (SELECT key, MAX(?, 2.5 * AVG(step)) AS cap FROM s WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY key),
q AS (
    SELECT p.key, p.time, p.current, p.peak, p.value, MIN(p.step, c.cap) AS dt, o.max_replicas AS mx
    FROM p LEFT JOIN c ON c.key = p.key JOIN objects o ON o.key = p.key
)"""


def _bucket_sql(points: int) -> str:
    return f"MIN({int(points) - 1}, CAST((time - ?) / ? AS INTEGER))"


def _money(used: float, covered: float, peak: float, max_replicas: int | None, price: float | None) -> dict[str, Any]:
    at_max = (max_replicas or 0) * covered
    return {
        "price_per_replica_hour": price,
        "cost": cost(used, price),
        "cost_at_peak": cost(peak * covered, price),
        "cost_at_max": cost(at_max, price),
        "max_replica_seconds": at_max,
    }


def overview(
    store: HistoryStore,
    start: float,
    end: float,
    *,
    filters: Filters = ALL,
    pricing: Pricing = NO_PRICES,
    offset: int = 0,
    limit: int = 50,
    points: int = 60,
    chart_points: int = 200,
    top: int = 8,
) -> dict[str, Any]:
    """One page of the (filtered) fleet with series, the fleet's totals and its stacked replicas chart."""
    where, params = filters.where(store)
    width = max((end - start) / max(1, points), 1e-9)
    state, price_col = store.column("state"), store.column("cost_per_replica_hour")

    # 1. The page of objects, and how many match.
    page = store.query(
        f"SELECT key, kind, namespace, name, target, min_replicas, max_replicas, COALESCE({state}, 'idle'), time, "
        f"current, desired, {price_col}, COUNT(*) OVER () FROM objects WHERE {where} "
        "ORDER BY namespace, name, kind LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    total = int(page[0][-1]) if page else 0
    if not page and offset:
        total = int(store.query(f"SELECT COUNT(*) FROM objects WHERE {where}", params)[0][0])
    keys = [row[0] for row in page]
    objects: dict[str, dict[str, Any]] = {}
    for key, kind, ns, name, target, lo, hi, st, polled, current, desired, price, _ in page:
        objects[key] = {
            "key": key,
            "kind": kind,
            "namespace": ns,
            "name": name,
            "target": target,
            "min_replicas": lo,
            "max_replicas": hi,
            "state": st,
            "time": polled,
            "current": current,
            "desired": desired,
            "annotated_price": price,
            "spark": {"time": [], "replicas": [], "value": [], "max_hit": []},
            "last_event": None,
            "replica_seconds": 0.0,
            "covered_seconds": 0.0,
            "peak_replicas": 0.0,
            "max_hit_seconds": 0.0,
        }

    # 2. The page's series, downsampled, with replica-seconds: one statement for the whole page.
    if keys:
        marks = ", ".join("?" * len(keys))
        rows = store.query(
            _usage_cte(marks)
            + f"""
SELECT key, {_bucket_sql(points)} AS b, MAX(time), AVG(current), MAX(peak), AVG(value), SUM(current * dt), SUM(dt),
       SUM(CASE WHEN mx > 0 AND current >= mx THEN dt END), MAX(CASE WHEN mx > 0 AND peak >= mx THEN 1 ELSE 0 END)
FROM q GROUP BY key, b ORDER BY key, b""",
            [start, end, *keys, 2 * BUCKET, start, width],
        )
        for key, _, t, replicas, peak, value, used, covered, at_max, hit in rows:
            o = objects[key]
            spark = o["spark"]
            spark["time"].append(t)
            spark["replicas"].append(replicas)
            spark["value"].append(value)
            spark["max_hit"].append(bool(hit))
            o["replica_seconds"] += used or 0.0
            o["covered_seconds"] += covered or 0.0
            o["peak_replicas"] = max(o["peak_replicas"], float(peak or 0.0))
            o["max_hit_seconds"] += at_max or 0.0

        # 3. The page's last events.
        for key, t, etype, reason, message in store.query(
            "SELECT e.key, e.time, e.type, e.reason, e.message FROM events e JOIN "
            f"(SELECT key, MAX(time) AS t FROM events WHERE key IN ({marks}) GROUP BY key) m "
            "ON m.key = e.key AND m.t = e.time",
            keys,
        ):
            objects[key]["last_event"] = {"time": t, "type": etype, "reason": reason, "message": message}

    for o in objects.values():
        o["peak_replica_seconds"] = o["peak_replicas"] * o["covered_seconds"]
        o.update(
            _money(
                o["replica_seconds"],
                o["covered_seconds"],
                o["peak_replicas"],
                o["max_replicas"],
                pricing.price(o["namespace"], o.pop("annotated_price")),
            )
        )

    fleet = fleet_usage(store, start, end, filters=filters, pricing=pricing)
    stacked = _stacked(store, start, end, where, params, fleet["per_object"], chart_points, top)
    counts = store.query(f"SELECT namespace, COALESCE({state}, 'idle'), COUNT(*) FROM objects GROUP BY 1, 2")
    namespaces = sorted({ns for ns, _, _ in counts})
    return {
        "from": start,
        "to": end,
        "total": total,
        "offset": offset,
        "limit": limit,
        "namespaces": namespaces,
        "states": {s: sum(n for _, st, n in counts if st == s) for s in STATES},
        "pricing": pricing.configured,
        "objects": [objects[k] for k in keys],
        "totals": fleet["totals"],
        "stacked": stacked,
    }


def fleet_usage(
    store: HistoryStore, start: float, end: float, *, filters: Filters = ALL, pricing: Pricing = NO_PRICES
) -> dict[str, Any]:
    """Replica-seconds, covered time, peak and cost of every (filtered) object in [start, end], and their sums."""
    where, params = filters.where(store)
    price = "o.cost_per_replica_hour" if store.column("cost_per_replica_hour") != "NULL" else "NULL"
    rows = store.query(
        _usage_cte(f"SELECT key FROM objects WHERE {where}")
        + f"""
SELECT q.key, o.namespace, SUM(q.current * q.dt), SUM(q.dt), MAX(q.peak),
       SUM(CASE WHEN q.mx > 0 AND q.current >= q.mx THEN q.dt END), MAX(q.mx), COUNT(*), {price}
FROM q JOIN objects o ON o.key = q.key GROUP BY q.key""",
        [start, end, *params, 2 * BUCKET],
    )
    per_object: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {
        "replica_seconds": 0.0,
        "peak_replica_seconds": 0.0,
        "max_replica_seconds": 0.0,
        "max_hit_seconds": 0.0,
        "objects_hitting_max": 0,
        "cost": None,
        "cost_at_peak": None,
        "cost_at_max": None,
    }
    for key, ns, used, covered, peak, at_max, mx, n, annotated in rows:
        used, covered, peak = float(used or 0.0), float(covered or 0.0), float(peak or 0.0)
        money = _money(used, covered, peak, mx, pricing.price(ns, annotated))
        per_object[key] = {
            "replica_seconds": used,
            "covered_seconds": covered,
            "peak_replicas": peak,
            "max_hit_seconds": float(at_max or 0.0),
            "max_replicas": mx,
            "points": int(n),
            **money,
        }
        totals["replica_seconds"] += used
        totals["peak_replica_seconds"] += peak * covered
        totals["max_replica_seconds"] += money["max_replica_seconds"]
        totals["max_hit_seconds"] += float(at_max or 0.0)
        totals["objects_hitting_max"] += 1 if at_max else 0
        for field in ("cost", "cost_at_peak", "cost_at_max"):
            if money[field] is not None:
                totals[field] = (totals[field] or 0.0) + money[field]
    return {"per_object": per_object, "totals": totals}


def _stacked(
    store: HistoryStore,
    start: float,
    end: float,
    where: str,
    params: Sequence[Any],
    usage: dict[str, dict[str, Any]],
    chart_points: int,
    top: int,
) -> dict[str, Any]:
    """Replicas over time per application (the `top` objects by replica-seconds, the rest as one), summed in SQL.

    A bucket is at least 1.5 typical polls wide, so that every polling object has a point in each bucket.
    """
    steps = [u["covered_seconds"] / (u["points"] - 1) for u in usage.values() if u["points"] > 1]
    width = max((end - start) / max(1, chart_points), 1.5 * statistics.median(steps) if steps else 0.0, 1e-9)
    buckets = max(1, min(chart_points, int((end - start) / width) + 1))
    ranked = sorted(usage, key=lambda k: usage[k]["replica_seconds"], reverse=True)
    leaders = [k for k in ranked[:top] if usage[k]["replica_seconds"] > 0]
    marks = ", ".join("?" * len(leaders)) or "NULL"
    rows = store.query(
        f"""
WITH b AS (
    SELECT key, {_bucket_sql(buckets)} AS b, AVG(current) AS r FROM points
    WHERE time >= ? AND time <= ? AND key IN (SELECT key FROM objects WHERE {where}) GROUP BY key, b
)
SELECT CASE WHEN key IN ({marks}) THEN key ELSE '' END AS app, b, SUM(r) FROM b GROUP BY app, b""",
        [start, width, start, end, *params, *leaders],
    )
    series: dict[str, list[float | None]] = {k: [None] * buckets for k in [*leaders, ""]}
    for app, b, replicas in rows:
        series[app][int(b)] = float(replicas)
    names = [*leaders, ""] if any(v is not None for v in series[""]) else leaders
    return {
        "time": [start + (i + 0.5) * width for i in range(buckets)],
        "series": [{"key": k, "label": k.split("/", 1)[1] if k else "others", "replicas": series[k]} for k in names],
    }


def daily_usage(
    store: HistoryStore, start: float, end: float, *, filters: Filters = ALL, pricing: Pricing = NO_PRICES
) -> list[dict[str, Any]]:
    """Replica-seconds (and cost) per object per UTC day in [start, end]: the CSV export. A step is counted on
    the day it starts; the days of one object add up to its `fleet_usage` replica-seconds."""
    where, params = filters.where(store)
    price = "o.cost_per_replica_hour" if store.column("cost_per_replica_hour") != "NULL" else "NULL"
    rows = store.query(
        _usage_cte(f"SELECT key FROM objects WHERE {where}")
        + f"""
SELECT CAST(q.time / 86400 AS INTEGER) * 86400 AS day, o.kind, o.namespace, o.name, SUM(q.current * q.dt), {price}
FROM q JOIN objects o ON o.key = q.key GROUP BY q.key, day ORDER BY day, o.namespace, o.name, o.kind""",
        [start, end, *params, 2 * BUCKET],
    )
    out = []
    for day, kind, ns, name, used, annotated in rows:
        p = pricing.price(ns, annotated)
        out.append(
            {
                "day": float(day),
                "kind": kind,
                "namespace": ns,
                "name": name,
                "replica_seconds": float(used or 0.0),
                "price": p,
                "cost": cost(float(used or 0.0), p),
            }
        )
    return out
