"""History read back from Prometheus: what ebb itself exported, so a restarted or failed-over operator keeps it.

ebb exports each trigger's value as KEDA's `keda_scaler_metrics_value{namespace, scaledObject, metric, type}` and
the replicas as `ebb_current_replicas` / `ebb_desired_replicas{namespace, type, name}`. `read_back` is a range
query over one trigger's series (the history source a forecaster can be seeded from); `restore` fills a
`HistoryStore` with an object's triggers and replicas where the store has no point of its own. Series of several
operator pods (a failover) are merged with `max`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import aiohttp

from ebb.observe.history import HistoryStore
from ebb.runtime.observer import ObjectRef

#: Prometheus refuses a range query of more than 11,000 points per series; ebb asks for at most this many.
MAX_POINTS_PER_QUERY = 10_000
DEFAULT_TIMEOUT = 10.0
#: How far back `restore` reads by default (two weekly cycles for the forecaster), at most the store's retention.
DEFAULT_WINDOW = 14 * 86400.0
DEFAULT_STEP = 60.0


class ReadBackError(Exception):
    """Prometheus could not be asked, or answered with an error (the message says which address and why)."""


def _label(value: str) -> str:
    # A PromQL string literal: JSON's escaping of quotes and backslashes is PromQL's too.
    return json.dumps(value)


def _resource_type(kind: str) -> str:
    return "scaledjob" if kind == "ScaledJob" else "scaledobject"


def trigger_query(ref: ObjectRef, metric: str | None = None) -> str:
    """PromQL for an object's trigger values (one series per metric), or for one trigger's."""
    selector = (
        f"namespace={_label(ref.namespace)},scaledObject={_label(ref.name)},type={_label(_resource_type(ref.kind))}"
    )
    if metric is not None:
        return f"max(keda_scaler_metrics_value{{{selector},metric={_label(metric)}}})"
    return f"max by (metric) (keda_scaler_metrics_value{{{selector}}})"


def replicas_query(ref: ObjectRef, which: str) -> str:
    selector = f"namespace={_label(ref.namespace)},type={_label(_resource_type(ref.kind))},name={_label(ref.name)}"
    return f"max(ebb_{which}_replicas{{{selector}}})"


async def query_range(
    address: str,
    query: str,
    start: float,
    end: float,
    step: float,
    *,
    session: aiohttp.ClientSession | None = None,
    request_timeout: float = DEFAULT_TIMEOUT,
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    """(labels, [(time, value)...]) per series of `query` over [start, end] every `step` seconds, in chunks of at
    most `MAX_POINTS_PER_QUERY` points; NaN and infinite samples are left out."""
    if not step > 0 or not math.isfinite(step):
        raise ValueError(f"step must be a number of seconds above 0, got {step!r}")
    if end < start:
        return []
    url = address.rstrip("/") + "/api/v1/query_range"
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout))
    series: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], list[tuple[float, float]]]] = {}
    try:
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + step * (MAX_POINTS_PER_QUERY - 1))
            params = {"query": query, "start": f"{chunk_start:.3f}", "end": f"{chunk_end:.3f}", "step": f"{step:g}"}
            for labels, values in await _ask(http, url, address, params):
                entry = series.setdefault(tuple(sorted(labels.items())), (labels, []))
                entry[1].extend(values)
            chunk_start = chunk_end + step
    finally:
        if own:
            await http.close()
    return list(series.values())


async def _ask(
    http: aiohttp.ClientSession, url: str, address: str, params: dict[str, str]
) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    try:
        async with http.get(url, params=params) as resp:
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ReadBackError(f"Prometheus at {address}: cannot query: {exc or type(exc).__name__}") from None
    try:
        body: Any = json.loads(text)
    except ValueError:
        raise ReadBackError(f"Prometheus at {address}: HTTP {status}, not a Prometheus API answer") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ReadBackError(f"Prometheus at {address}: HTTP {status}: {error or 'not a Prometheus API answer'}")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise ReadBackError(f"Prometheus at {address}: expected a matrix, got {data.get('resultType')!r}")
    out = []
    for item in data.get("result") or []:
        values = []
        for t, v in item.get("values") or []:
            value = float(v)
            if math.isfinite(value):
                values.append((float(t), value))
        out.append((dict(item.get("metric") or {}), values))
    return out


async def read_back(
    address: str,
    ref: ObjectRef,
    trigger: str,
    start: float,
    end: float,
    step: float,
    *,
    session: aiohttp.ClientSession | None = None,
) -> list[tuple[float, float]]:
    """(time, value) of one trigger's metric (its `metric` label, e.g. `s0-redis-orders`) over [start, end] every
    `step` seconds, oldest first, as ebb exported it; empty when Prometheus has none. ReadBackError otherwise."""
    found = await query_range(address, trigger_query(ref, trigger), start, end, step, session=session)
    return sorted(point for _, values in found for point in values)


async def restore(
    store: HistoryStore,
    address: str,
    ref: ObjectRef,
    now: float,
    *,
    window: float = DEFAULT_WINDOW,
    step: float = DEFAULT_STEP,
    session: aiohttp.ClientSession | None = None,
) -> int:
    """Fill `store` with `ref`'s trigger values and replicas from Prometheus over the last `window` seconds (at most
    the store's retention), every `step`, where the store has no point of its own within a step. Returns how many
    points were added."""
    # On whole steps: the points fall where the store's roll-ups put their buckets.
    start = math.ceil((now - min(window, store.retention)) / step) * step
    end = math.floor(now / step) * step
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT))
    try:
        triggers = await query_range(address, trigger_query(ref), start, end, step, session=http)
        current = await query_range(address, replicas_query(ref, "current"), start, end, step, session=http)
        desired = await query_range(address, replicas_query(ref, "desired"), start, end, step, session=http)
    finally:
        if own:
            await http.close()
    points: dict[float, dict[str, Any]] = {}
    for labels, values in triggers:
        metric = labels.get("metric")
        if not metric:
            continue
        for t, v in values:
            point = points.setdefault(t, {"time": t, "triggers": []})
            point["triggers"].append({"metric": metric, "value": v, "max": v, "target": None})
    for field, found in (("current", current), ("desired", desired)):
        for _, values in found:
            for t, v in values:
                points.setdefault(t, {"time": t, "triggers": []})[field] = v
    if not points:
        return 0
    return await asyncio.to_thread(_add_missing, store, ref.key, [points[t] for t in sorted(points)], start, step)


def _add_missing(store: HistoryStore, key: str, points: Sequence[dict[str, Any]], start: float, step: float) -> int:
    """The points in a step where the store has none of its own (its own are finer and were really polled)."""
    rows = store.query("SELECT time FROM points WHERE key = ? AND time >= ?", (key, start - step))
    have = {math.floor(float(t) / step) for (t,) in rows}
    return store.add_points(key, [p for p in points if math.floor(p["time"] / step) not in have], step)
