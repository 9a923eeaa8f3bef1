"""The fleet overview's reads: every object, a page of them with downsampled series, and what they cost.

A view costs a fixed number of SQL statements whatever the fleet's size: the page of objects (with the filtered
count), the page's points (one statement for the whole page), the page's last events, the fleet's objects and
points (for its totals), the stacked chart (summed per bucket in SQL) and the per-state counts. Never one query
per object.

Replica-seconds follow `history.replica_seconds` exactly (a step function; a step is counted up to 2.5 times the
object's median step, and at least two minutes). They are integrated in Python over one ordered stream of
(key, time, replicas) rows: measured on this machine, five times faster than the same rule in SQL window
functions (the median needs a second sort of every point).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Iterator, Sequence
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

    def where(self, store: HistoryStore, table: str = "") -> tuple[str, list[Any]]:
        """A WHERE clause over the objects table (its columns prefixed with `table`), and its parameters."""
        clauses = ["1 = 1"]
        params: list[Any] = []
        if self.namespace:
            clauses.append(f"{table}namespace = ?")
            params.append(self.namespace)
        if self.state:
            state = store.column("state")
            clauses.append(f"COALESCE({table + state if state != 'NULL' else state}, 'idle') = ?")
            params.append(self.state)
        if self.name:
            clauses.append(f"instr(lower({table}name), lower(?)) > 0")
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


@dataclass
class _Usage:
    used: float = 0.0
    covered: float = 0.0
    peak: float = 0.0
    at_max: float = 0.0
    points: int = 0


def _steps(rows: Sequence[tuple[Any, ...]]) -> Iterator[tuple[tuple[Any, ...], float | None]]:
    """Each row (key, time, ..., resolution last) with its counted step (None for the last):
    history.replica_seconds' rule, a step counted up to max(2 minutes, 2.5 x the median step, 2.5 x a rolled-up
    point's resolution)."""
    steps = [b[1] - a[1] for a, b in itertools.pairwise(rows)]
    cap = max(2 * BUCKET, 2.5 * statistics.median(steps)) if steps else 0.0
    for i, row in enumerate(rows):
        yield row, (min(steps[i], max(cap, 2.5 * float(row[-1] or 0.0))) if i < len(steps) else None)


def _by_key(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    for key, group in itertools.groupby(rows, key=lambda r: r[0]):
        yield key, list(group)


def _integrate(rows: Sequence[tuple[Any, ...]], max_replicas: int | None) -> _Usage:
    """Rows (key, time, current, peak, ...) of one object, oldest first."""
    u = _Usage(points=len(rows))
    mx = max_replicas or 0
    for (_, _, current, peak, *_), dt in _steps(rows):
        u.peak = max(u.peak, float(peak or 0.0))
        if dt is None:
            continue
        u.used += float(current or 0.0) * dt
        u.covered += dt
        if mx > 0 and (current or 0) >= mx:
            u.at_max += dt
    return u


def _fleet_integrals(
    store: HistoryStore, start: float, end: float, keys_sql: str, params: Sequence[Any], maxima: dict[str, Any]
) -> dict[str, _Usage]:
    """`_integrate` for many objects at once, mostly in SQL.

    SQLite sums each object's steps per replica count (one window, LEAD, and a GROUP BY). While no step is longer
    than two minutes, the cap (at least two minutes) never applies and those sums are exact; the objects with a
    longer step (a gap) are integrated from their points, which needs their median step.
    """
    rows = store.query(
        "SELECT key, current, SUM(step), MAX(peak), COUNT(*), MAX(step) FROM ("
        "  SELECT key, current, peak, LEAD(time) OVER (PARTITION BY key ORDER BY time) - time AS step FROM points"
        f"  WHERE key IN ({keys_sql}) AND time >= ? AND time <= ?"
        ") GROUP BY key, current",
        [*params, start, end],
    )
    out: dict[str, _Usage] = {}
    gaps: list[str] = []
    for key, group in itertools.groupby(rows, key=lambda r: r[0]):
        levels = list(group)
        if any((r[5] or 0.0) > 2 * BUCKET for r in levels):
            gaps.append(key)
            continue
        mx = maxima.get(key) or 0
        u = out[key] = _Usage()
        for _, current, steps, peak, n, _ in levels:
            steps = float(steps or 0.0)
            u.used += float(current or 0.0) * steps
            u.covered += steps
            u.peak = max(u.peak, float(peak or 0.0))
            u.points += int(n)
            if mx > 0 and (current or 0) >= mx:
                u.at_max += steps
    if gaps:
        marks = ", ".join("?" * len(gaps))
        for key, points in _by_key(_points(store, start, end, marks, gaps, value=False)):
            out[key] = _integrate(points, maxima.get(key))
    return out


def _points(store: HistoryStore, start: float, end: float, keys_sql: str, params: Sequence[Any], value: bool) -> Any:
    """(key, time, current, peak[, main trigger value], resolution) of the selected keys in [start, end], by key
    and time."""
    extra = ", json_extract(triggers, '$[0].value')" if value else ""
    return store.query(
        f"SELECT key, time, current, peak{extra}, resolution FROM points WHERE key IN ({keys_sql}) "
        "AND time >= ? AND time <= ? ORDER BY key, time",
        [*params, start, end],
    )


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
    fleet: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One page of the (filtered) fleet with series, the fleet's totals and its stacked replicas chart (`fleet`:
    those two, as `fleet_view` computed them, when the caller keeps them from an earlier view)."""
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
        for key, rows in _by_key(_points(store, start, end, marks, keys, value=True)):
            o = objects[key]
            usage = _integrate(rows, o["max_replicas"])
            o["replica_seconds"], o["covered_seconds"] = usage.used, usage.covered
            o["peak_replicas"], o["max_hit_seconds"] = usage.peak, usage.at_max
            mx = o["max_replicas"] or 0
            buckets: dict[int, list[tuple[Any, ...]]] = {}
            for row in rows:
                buckets.setdefault(min(points - 1, int((row[1] - start) / width)), []).append(row)
            spark = o["spark"]
            for _, group in sorted(buckets.items()):
                values = [float(r[4]) for r in group if r[4] is not None]
                spark["time"].append(group[-1][1])
                spark["replicas"].append(statistics.fmean(float(r[2] or 0.0) for r in group))
                spark["value"].append(statistics.fmean(values) if values else None)
                spark["max_hit"].append(mx > 0 and max(float(r[3] or 0.0) for r in group) >= mx)

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

    if fleet is None:
        fleet = fleet_view(store, start, end, filters=filters, pricing=pricing, chart_points=chart_points, top=top)
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
        "stacked": fleet["stacked"],
    }


def fleet_view(
    store: HistoryStore,
    start: float,
    end: float,
    *,
    filters: Filters = ALL,
    pricing: Pricing = NO_PRICES,
    chart_points: int = 200,
    top: int = 8,
) -> dict[str, Any]:
    """The (filtered) fleet's totals and its stacked chart: the part of a view that reads every object's points."""
    where, params = filters.where(store)
    usage = fleet_usage(store, start, end, filters=filters, pricing=pricing)
    stacked = _stacked(store, start, end, where, params, usage["per_object"], chart_points, top)
    return {"totals": usage["totals"], "stacked": stacked}


def fleet_usage(
    store: HistoryStore, start: float, end: float, *, filters: Filters = ALL, pricing: Pricing = NO_PRICES
) -> dict[str, Any]:
    """Replica-seconds, covered time, peak and cost of every (filtered) object in [start, end], and their sums."""
    where, params = filters.where(store)
    meta = {
        key: (ns, mx, annotated)
        for key, ns, mx, annotated in store.query(
            f"SELECT key, namespace, max_replicas, {store.column('cost_per_replica_hour')} FROM objects WHERE {where}",
            params,
        )
    }
    keys_sql = f"SELECT key FROM objects WHERE {where}"
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
    for key, u in _fleet_integrals(store, start, end, keys_sql, params, {k: m[1] for k, m in meta.items()}).items():
        ns, mx, annotated = meta[key]
        used, covered, peak, at_max = u.used, u.covered, u.peak, u.at_max
        money = _money(used, covered, peak, mx, pricing.price(ns, annotated))
        per_object[key] = {
            "replica_seconds": used,
            "covered_seconds": covered,
            "peak_replicas": peak,
            "max_hit_seconds": at_max,
            "max_replicas": mx,
            "points": u.points,
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
    meta = {
        key: (kind, ns, name, annotated)
        for key, kind, ns, name, annotated in store.query(
            f"SELECT key, kind, namespace, name, {store.column('cost_per_replica_hour')} FROM objects WHERE {where}",
            params,
        )
    }
    days: dict[tuple[str, float], float] = {}
    for key, rows in _by_key(_points(store, start, end, f"SELECT key FROM objects WHERE {where}", params, False)):
        for row, dt in _steps(rows):
            if dt is not None:
                day = (row[1] // 86400) * 86400
                days[key, day] = days.get((key, day), 0.0) + float(row[2] or 0.0) * dt
    out = []
    for (key, day), used in sorted(days.items(), key=lambda kv: (kv[0][1], meta[kv[0][0]][1], meta[kv[0][0]][2])):
        kind, ns, name, annotated = meta[key]
        p = pricing.price(ns, annotated)
        out.append(
            {
                "day": float(day),
                "kind": kind,
                "namespace": ns,
                "name": name,
                "replica_seconds": used,
                "price": p,
                "cost": cost(used, p),
            }
        )
    return out
