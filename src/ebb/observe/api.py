"""The history's JSON API: /api/objects, /api/objects/{kind}/{namespace}/{name}/series, /api/events, and the fleet
overview's /api/overview and /api/usage.csv.

Times are Unix seconds, or a duration back from now (`15m`, `6h`, `2d`, `90s`). Reads run in a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ebb.observe.cost import Pricing
from ebb.observe.forecasts import ForecastLog
from ebb.observe.history import DEFAULT_MAX_POINTS, STATES, HistoryStore
from ebb.observe.overview import Filters, daily_usage, default_range, fleet_view, overview

#: The fleet's totals and stacked chart read every object's points: a view reuses them (same filters, a range
#: whose ends moved less than that) for 15 s, or 10 times what computing them took (8 s with 10,000 objects).
FLEET_CACHE_SECONDS = 15.0
FLEET_CACHE_FACTOR = 10.0

_DURATION = re.compile(r"^-?(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `6h`, `2d` -> seconds; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"expected a duration like 90s, 15m, 6h or 2d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str | None, now: float, default: float) -> float:
    """Unix seconds, or a duration back from `now`."""
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        return now - parse_duration(text)


def _range(request: web.Request, now: float) -> tuple[float, float]:
    try:
        end = parse_time(request.query.get("to"), now, now)
        start = parse_time(request.query.get("from"), now, end - 3600.0)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if start > end:
        raise web.HTTPBadRequest(text="from must not be after to")
    return start, end


def _int(request: web.Request, name: str, default: int, upper: int, lower: int = 1) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected an integer, got {raw!r}") from None
    return max(lower, min(value, upper))


def _fleet_range(request: web.Request, store: HistoryStore, now: float) -> tuple[float, float]:
    """The request's range; without `from`, what the history holds (up to a day)."""
    if request.query.get("from"):
        return _range(request, now)
    _, end = _range(request, now)
    start, _ = default_range(store, end)
    return min(start, end), end


def _filters(request: web.Request) -> Filters:
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise web.HTTPBadRequest(text=f"state: one of {', '.join(STATES)}, got {state!r}")
    return Filters(request.query.get("namespace") or None, state, request.query.get("name") or None)


def api_routes(
    store: HistoryStore,
    clock: Callable[[], float] = time.time,
    pricing: Pricing | None = None,
    forecasts: ForecastLog | None = None,
) -> list[web.RouteDef]:
    prices = pricing or Pricing()
    #: (filters, chart points) -> (computed at, kept for, start, end, value)
    fleet_cache: dict[tuple[object, ...], tuple[float, float, float, float, dict[str, Any]]] = {}

    def cached_fleet(start: float, end: float, filters: Filters, chart_points: int, now: float) -> dict[str, Any]:
        key = (filters, chart_points)
        hit = fleet_cache.get(key)
        if hit is not None:
            at, keep, s0, e0, value = hit
            if now - at < keep and abs(start - s0) <= keep and abs(end - e0) <= keep:
                return value
        t0 = time.perf_counter()
        value = fleet_view(store, start, end, filters=filters, pricing=prices, chart_points=chart_points)
        keep = max(FLEET_CACHE_SECONDS, FLEET_CACHE_FACTOR * (time.perf_counter() - t0))
        for stale in [k for k, (t, kept, *_) in fleet_cache.items() if now - t >= kept]:
            del fleet_cache[stale]
        fleet_cache[key] = (now, keep, start, end, value)
        return value

    async def objects(request: web.Request) -> web.Response:
        namespace = request.query.get("namespace") or None
        return web.json_response({"now": clock(), "objects": await asyncio.to_thread(store.objects, namespace)})

    async def series(request: web.Request) -> web.Response:
        now = clock()
        start, end = _range(request, now)
        m = request.match_info
        key = f"{m['kind']}/{m['namespace']}/{m['name']}"
        points = _int(request, "points", DEFAULT_MAX_POINTS, 5000)
        result = await asyncio.to_thread(store.series, key, start, end, points)
        if result is None:
            raise web.HTTPNotFound(text=f"no history for {m['kind']} {m['namespace']}/{m['name']}")
        # Forecasting triggers: each step's forecast (point and band) beside the values, and the latest ahead.
        result["forecasts"] = forecasts.series(key, start, end) if forecasts is not None else []
        return web.json_response({"now": now, **result})

    async def events(request: web.Request) -> web.Response:
        now = clock()
        start, end = _range(request, now)
        limit = _int(request, "limit", 1000, 10000)
        key = request.query.get("object") or None
        found = await asyncio.to_thread(store.events, start, end, key, limit)
        return web.json_response({"now": now, "events": [e.to_json() for e in found]})

    async def fleet(request: web.Request) -> web.Response:
        now = clock()
        start, end = await asyncio.to_thread(_fleet_range, request, store, now)
        filters = _filters(request)
        offset = _int(request, "offset", 0, 10**9, lower=0)
        chart_points = _int(request, "chart_points", 200, 2000)
        limit, points = _int(request, "limit", 50, 500), _int(request, "points", 60, 600)
        result = await asyncio.to_thread(
            lambda: overview(
                store,
                start,
                end,
                filters=filters,
                pricing=prices,
                offset=offset,
                limit=limit,
                points=points,
                chart_points=chart_points,
                fleet=cached_fleet(start, end, filters, chart_points, now),
            )
        )
        return web.json_response({"now": now, **result})

    async def usage_csv(request: web.Request) -> web.Response:
        now = clock()
        start, end = await asyncio.to_thread(_fleet_range, request, store, now)
        rows = await asyncio.to_thread(daily_usage, store, start, end, filters=_filters(request), pricing=prices)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["day", "kind", "namespace", "name", "replica_seconds", "replica_hours", "price", "cost"])
        for r in rows:
            writer.writerow(
                [
                    datetime.fromtimestamp(r["day"], UTC).strftime("%Y-%m-%d"),
                    r["kind"],
                    r["namespace"],
                    r["name"],
                    f"{r['replica_seconds']:.1f}",
                    f"{r['replica_seconds'] / 3600:.4f}",
                    "" if r["price"] is None else f"{r['price']:g}",
                    "" if r["cost"] is None else f"{r['cost']:.4f}",
                ]
            )
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="ebb-usage.csv"'},
        )

    return [
        web.get("/api/overview", fleet),
        web.get("/api/usage.csv", usage_csv),
        web.get("/api/objects", objects),
        web.get("/api/objects/{kind}/{namespace}/{name}/series", series),
        web.get("/api/events", events),
    ]
