"""The history's JSON API: /api/objects, /api/objects/{kind}/{namespace}/{name}/series, /api/events.

Times are Unix seconds, or a duration back from now (`15m`, `6h`, `2d`, `90s`). Reads run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from aiohttp import web

from ebb.observe.history import DEFAULT_MAX_POINTS, HistoryStore

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


def _int(request: web.Request, name: str, default: int, upper: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected an integer, got {raw!r}") from None
    return max(1, min(value, upper))


def api_routes(store: HistoryStore, clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    async def objects(request: web.Request) -> web.Response:
        return web.json_response({"now": clock(), "objects": await asyncio.to_thread(store.objects)})

    async def series(request: web.Request) -> web.Response:
        now = clock()
        start, end = _range(request, now)
        m = request.match_info
        key = f"{m['kind']}/{m['namespace']}/{m['name']}"
        points = _int(request, "points", DEFAULT_MAX_POINTS, 5000)
        result = await asyncio.to_thread(store.series, key, start, end, points)
        if result is None:
            raise web.HTTPNotFound(text=f"no history for {m['kind']} {m['namespace']}/{m['name']}")
        return web.json_response({"now": now, **result})

    async def events(request: web.Request) -> web.Response:
        now = clock()
        start, end = _range(request, now)
        limit = _int(request, "limit", 1000, 10000)
        key = request.query.get("object") or None
        found = await asyncio.to_thread(store.events, start, end, key, limit)
        return web.json_response({"now": now, "events": [e.to_json() for e in found]})

    return [
        web.get("/api/objects", objects),
        web.get("/api/objects/{kind}/{namespace}/{name}/series", series),
        web.get("/api/events", events),
    ]
