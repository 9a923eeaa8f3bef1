"""What each object did over time: per poll, its triggers and replicas, in SQLite, written off the scaling loop.

`HistoryObserver.poll` only appends to a bounded in-memory queue (a full queue drops the point and counts it,
never blocks); `HistoryObserver.run` writes batches in a worker thread. `HistoryStore(None)` is the same store
in memory (SQLite `:memory:`), for an operator without a volume.

Downsampling: raw points older than `raw_window` (1 h) become one point per `bucket` (60 s): replicas and
trigger values are averaged, `peak` keeps the highest current replica count, `active` is 1 if any poll in
the minute was active, and a trigger keeps its last target and last error. Points older than `retention`
(7 days) and their events are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import sqlite3
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebb.observe.catalog import ObjectInfo
from ebb.observe.events import PROBLEM_REASON, EventRecord
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent

DEFAULT_RETENTION = 7 * 86400.0
RAW_WINDOW = 3600.0
BUCKET = 60.0
DEFAULT_MAX_POINTS = 600
DEFAULT_QUEUE = 10_000

_OBJECT_COLUMNS = (
    "key",
    "kind",
    "namespace",
    "name",
    "target",
    "min_replicas",
    "max_replicas",
    "trigger_types",
    "time",
    "active",
    "paused",
    "desired",
    "current",
    "ready",
    "triggers",
    "last_scale",
    "state",
    "cost_per_replica_hour",
    "reason",
)
#: Columns added after the first release: added to an older database on open (read-only opens read them as NULL).
_ADDED_COLUMNS = {"state": "TEXT", "cost_per_replica_hour": "REAL", "reason": "TEXT"}
#: An object's state in the overview (from its last poll).
STATES = ("active", "idle", "paused", "fallback", "error")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, kind TEXT, namespace TEXT, name TEXT,
    target TEXT, min_replicas INTEGER, max_replicas INTEGER, trigger_types TEXT,
    time REAL, active INTEGER, paused INTEGER, desired INTEGER, current INTEGER, ready INTEGER,
    triggers TEXT, last_scale REAL, state TEXT, cost_per_replica_hour REAL, reason TEXT
);
CREATE TABLE IF NOT EXISTS points (
    key TEXT NOT NULL, time REAL NOT NULL, resolution REAL NOT NULL,
    active REAL, desired REAL, current REAL, ready REAL, peak REAL, triggers TEXT
);
CREATE INDEX IF NOT EXISTS points_key_time ON points (key, time);
CREATE INDEX IF NOT EXISTS points_res_time ON points (resolution, time);
CREATE TABLE IF NOT EXISTS events (
    time REAL NOT NULL, key TEXT, kind TEXT, namespace TEXT, name TEXT, type TEXT, reason TEXT, message TEXT
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_key_time ON events (key, time);
"""


def _trigger_json(record: PollRecord) -> list[dict[str, Any]]:
    return [
        {
            "metric": t.metric_name,
            "name": t.trigger_name,
            "value": t.value,
            "target": t.target,
            "metric_type": t.metric_type,
            "active": t.active,
            "error": t.error,
        }
        for t in record.triggers
    ]


def _aggregate_triggers(rows: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Average each trigger's value over several points; keep the last target, any activity, the last error."""
    merged: dict[str, dict[str, Any]] = {}
    values: dict[str, list[float]] = {}
    for triggers in rows:
        for t in triggers:
            m = merged.setdefault(t["metric"], {**t, "active": False, "error": None})
            m["target"], m["metric_type"], m["name"] = t["target"], t.get("metric_type"), t.get("name")
            m["active"] = m["active"] or bool(t.get("active"))
            if t.get("error"):
                m["error"] = t["error"]
            if t.get("value") is not None:
                values.setdefault(t["metric"], []).append(float(t["value"]))
    for metric, m in merged.items():
        vs = values.get(metric)
        m["value"] = statistics.fmean(vs) if vs else None
    return list(merged.values())


@dataclass(frozen=True)
class _Row:
    time: float
    resolution: float
    active: float
    desired: float
    current: float
    ready: float
    peak: float
    triggers: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "active": self.active,
            "desired": self.desired,
            "current": self.current,
            "ready": self.ready,
            "peak": self.peak,
            "triggers": self.triggers,
        }


def _merge(rows: Sequence[_Row], at: float, resolution: float) -> _Row:
    return _Row(
        time=at,
        resolution=resolution,
        active=max(r.active for r in rows),
        desired=statistics.fmean(r.desired for r in rows),
        current=statistics.fmean(r.current for r in rows),
        ready=statistics.fmean(r.ready for r in rows),
        peak=max(r.peak for r in rows),
        triggers=_aggregate_triggers([r.triggers for r in rows]),
    )


def replica_seconds(rows: Sequence[_Row], until: float | None = None) -> tuple[float, float, float]:
    """(replica-seconds used, seconds covered, peak replicas) from points, as a step function.

    A gap longer than 2.5 polls (at least two minutes) is not counted: ebb was not running then.
    """
    if not rows:
        return 0.0, 0.0, 0.0
    steps = [b.time - a.time for a, b in itertools.pairwise(rows)]
    cap = max(2 * BUCKET, 2.5 * statistics.median(steps)) if steps else 0.0
    used = covered = 0.0
    for row, step in zip(rows, steps, strict=False):
        step = min(step, cap)
        used += row.current * step
        covered += step
    peak = max(r.peak for r in rows)
    return used, covered, peak


class HistoryStore:
    """Points, latest state and events in one SQLite database (a file, or memory when `path` is None)."""

    def __init__(
        self,
        path: Path | None,
        retention: float = DEFAULT_RETENTION,
        raw_window: float = RAW_WINDOW,
        bucket: float = BUCKET,
        readonly: bool = False,
    ) -> None:
        self.path = path
        self.retention = retention
        self.raw_window = raw_window
        self.bucket = bucket
        self._lock = threading.Lock()
        if path is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)
        elif readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        if not readonly:
            with self._db:
                self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}
        for column, sql_type in _ADDED_COLUMNS.items():
            if column not in have and not readonly and have:
                with self._db:
                    self._db.execute(f"ALTER TABLE objects ADD COLUMN {column} {sql_type}")
                have.add(column)
        #: How to read each objects column: its name, or NULL for one a read-only older database lacks.
        self._columns = [c if c in have or not have else f"NULL AS {c}" for c in _OBJECT_COLUMNS]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing (called from a worker thread) ------------------------------------------------------------

    def register(self, infos: Iterable[ObjectInfo]) -> None:
        with self._lock, self._db:
            for info in infos:
                ref = info.ref
                self._db.execute(
                    "INSERT INTO objects (key, kind, namespace, name, target, min_replicas, max_replicas, "
                    "trigger_types, cost_per_replica_hour) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET target=excluded.target, min_replicas=excluded.min_replicas, "
                    "max_replicas=excluded.max_replicas, trigger_types=excluded.trigger_types, "
                    "cost_per_replica_hour=excluded.cost_per_replica_hour",
                    (
                        ref.key,
                        ref.kind,
                        ref.namespace,
                        ref.name,
                        info.target,
                        info.min_replicas,
                        info.max_replicas,
                        json.dumps([t.type for t in info.triggers]),
                        info.cost_per_replica_hour,
                    ),
                )

    def write(self, records: Sequence[PollRecord], events: Sequence[EventRecord] = ()) -> None:
        """One transaction for a batch of polls and events."""
        with self._lock, self._db:
            for r in records:
                triggers = json.dumps(_trigger_json(r))
                active = r.decision.active if r.decision is not None else any(t.active for t in r.triggers)
                paused_cond = r.decision.conditions.get("Paused") if r.decision is not None else None
                paused = paused_cond is not None and paused_cond.status == "True"
                self._db.execute(
                    "INSERT INTO points VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?)",
                    (
                        r.ref.key,
                        r.time,
                        int(active),
                        r.desired_replicas,
                        r.current_replicas,
                        r.ready_replicas,
                        max(r.current_replicas, r.desired_replicas),
                        triggers,
                    ),
                )
                scaled = r.time if r.desired_replicas != r.current_replicas else None
                self._db.execute(
                    "INSERT INTO objects (key, kind, namespace, name, time, active, paused, desired, current, ready, "
                    "triggers, last_scale, state, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET "
                    "time=excluded.time, active=excluded.active, paused=excluded.paused, desired=excluded.desired, "
                    "current=excluded.current, ready=excluded.ready, triggers=excluded.triggers, "
                    "last_scale=COALESCE(excluded.last_scale, objects.last_scale), state=excluded.state, "
                    "reason=excluded.reason",
                    (
                        r.ref.key,
                        r.ref.kind,
                        r.ref.namespace,
                        r.ref.name,
                        r.time,
                        int(active),
                        int(paused),
                        r.desired_replicas,
                        r.current_replicas,
                        r.ready_replicas,
                        triggers,
                        scaled,
                        _state(r, active, paused),
                        r.reason,
                    ),
                )
            self._db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.time, e.key, e.kind, e.namespace, e.name, e.type, e.reason, e.message) for e in events],
            )

    def maintain(self, now: float) -> None:
        """Downsample raw points older than `raw_window` to one per bucket; delete what is past retention."""
        cutoff = math.floor((now - self.raw_window) / self.bucket) * self.bucket
        with self._lock, self._db:
            rows = self._db.execute(
                "SELECT key, time, 0, active, desired, current, ready, peak, triggers FROM points "
                "WHERE resolution = 0 AND time < ? ORDER BY key, time",
                (cutoff,),
            ).fetchall()
            buckets: dict[tuple[str, float], list[_Row]] = {}
            for key, *rest in rows:
                row = _row(rest)
                buckets.setdefault((key, math.floor(row.time / self.bucket) * self.bucket), []).append(row)
            self._db.execute("DELETE FROM points WHERE resolution = 0 AND time < ?", (cutoff,))
            self._db.executemany(
                "INSERT INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (key, m.time, m.resolution, m.active, m.desired, m.current, m.ready, m.peak, json.dumps(m.triggers))
                    for (key, start), group in buckets.items()
                    for m in [_merge(group, start, self.bucket)]
                ],
            )
            horizon = now - self.retention
            self._db.execute("DELETE FROM points WHERE time < ?", (horizon,))
            self._db.execute("DELETE FROM events WHERE time < ?", (horizon,))
            self._db.execute("DELETE FROM objects WHERE time IS NOT NULL AND time < ?", (horizon,))

    def forget(self, ref: ObjectRef) -> None:
        """The object is gone: drop its latest state (its points age out with retention)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM objects WHERE key = ?", (ref.key,))

    # --- reading ----------------------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (for the fleet overview's queries)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def column(self, name: str) -> str:
        """`name` in an objects-table SELECT, or NULL when this (older, read-only) database lacks it."""
        return name if name in self._columns else "NULL"

    def span(self) -> tuple[float, float] | None:
        """The first and last point's time, None without points (indexed: two cheap lookups per resolution)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT MIN(time), MAX(time) FROM points WHERE resolution = 0 UNION ALL "
                "SELECT MIN(time), MAX(time) FROM points WHERE resolution = ?",
                (self.bucket,),
            ).fetchall()
        found = [(float(a), float(b)) for a, b in rows if a is not None]
        if not found:
            return None
        return min(a for a, _ in found), max(b for _, b in found)

    def objects(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object (of `namespace`, if given) with its latest state, by namespace and name."""
        where, params = ("WHERE namespace = ?", (namespace,)) if namespace is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(self._columns)} FROM objects {where} ORDER BY namespace, name, kind", params
            ).fetchall()
        names = _OBJECT_COLUMNS
        out = []
        for row in rows:
            obj = dict(zip(names, row, strict=True))
            obj.setdefault("reason", None)
            obj["trigger_types"] = json.loads(obj["trigger_types"]) if obj["trigger_types"] else []
            obj["triggers"] = json.loads(obj["triggers"]) if obj["triggers"] else []
            obj["active"] = None if obj["active"] is None else bool(obj["active"])
            obj["paused"] = None if obj["paused"] is None else bool(obj["paused"])
            out.append(obj)
        return out

    def series(self, key: str, start: float, end: float, max_points: int = DEFAULT_MAX_POINTS) -> dict[str, Any] | None:
        """Points of one object in [start, end] (at most `max_points`, averaged), its events, and usage totals."""
        with self._lock:
            exists = self._db.execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone()
            raw = self._db.execute(
                "SELECT time, resolution, active, desired, current, ready, peak, triggers FROM points "
                "WHERE key = ? AND time >= ? AND time <= ? ORDER BY time",
                (key, start, end),
            ).fetchall()
        if exists is None and not raw:
            return None
        rows = [_row(r) for r in raw]
        used, covered, peak = replica_seconds(rows)
        if len(rows) > max_points > 0:
            width = (end - start) / max_points
            grouped: dict[int, list[_Row]] = {}
            for row in rows:
                grouped.setdefault(min(max_points - 1, int((row.time - start) / width)), []).append(row)
            rows = [_merge(g, g[-1].time, width) for _, g in sorted(grouped.items())]
        return {
            "key": key,
            "from": start,
            "to": end,
            "points": [r.to_json() for r in rows],
            "events": [e.to_json() for e in self.events(start, end, key=key)],
            "replica_seconds": used,
            "covered_seconds": covered,
            "peak_replicas": peak,
            "peak_replica_seconds": peak * covered,
        }

    def events(self, start: float, end: float, key: str | None = None, limit: int = 1000) -> list[EventRecord]:
        """Events in [start, end], oldest first (the newest `limit` of them)."""
        query = "SELECT time, kind, namespace, name, type, reason, message FROM events WHERE time >= ? AND time <= ?"
        params: list[Any] = [start, end]
        if key is not None:
            query += " AND key = ?"
            params.append(key)
        query += " ORDER BY time DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [EventRecord(*r) for r in reversed(rows)]


def _state(r: PollRecord, active: bool, paused: bool) -> str:
    """The overview's state of an object after a poll: paused, fallback, error, active or idle."""
    if paused:
        return "paused"
    fallback = r.decision.conditions.get("Fallback") if r.decision is not None else None
    if fallback is not None and fallback.status == "True":
        return "fallback"
    if any(t.error for t in r.triggers):
        return "error"
    return "active" if active else "idle"


def _row(r: Sequence[Any]) -> _Row:
    t, res, active, desired, current, ready, peak, triggers = r
    return _Row(
        float(t),
        float(res),
        float(active or 0),
        float(desired or 0),
        float(current or 0),
        float(ready or 0),
        float(peak or 0),
        json.loads(triggers) if triggers else [],
    )


class HistoryObserver(Observer):
    """Queues polls and events for the store; `run()` writes them in batches from a worker thread."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        queue_size: int = DEFAULT_QUEUE,
        flush_interval: float = 1.0,
        maintain_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.flush_interval = flush_interval
        self.maintain_interval = maintain_interval
        self.clock = clock
        self.on_drop = on_drop
        self.dropped = 0
        #: Told (once per failing streak, and once on recovery) when the history cannot be written.
        self.on_write_problem: Callable[[str, str], None] | None = None
        self._write_failing = False
        self._points: deque[PollRecord] = deque()
        self._events: deque[EventRecord] = deque()
        self._last_problem: dict[ObjectRef, str] = {}
        self._removed: list[ObjectRef] = []

    def _full(self) -> bool:
        if len(self._points) + len(self._events) < self.queue_size:
            return False
        self.dropped += 1
        if self.on_drop is not None:
            with contextlib.suppress(Exception):
                self.on_drop(1)
        return True

    def poll(self, record: PollRecord) -> None:
        self._last_problem.pop(record.ref, None)
        if not self._full():
            self._points.append(record)

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        if not self._full():
            self._events.append(EventRecord.of(ref, event, now))

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if self._last_problem.get(ref) == message:
            return
        self._last_problem[ref] = message
        if not self._full():
            self._events.append(EventRecord.of(ref, ScalingEvent(PROBLEM_REASON, message, "Warning"), now))

    def removed(self, ref: ObjectRef) -> None:
        self._last_problem.pop(ref, None)
        self._removed.append(ref)

    async def flush(self) -> bool:
        """Write what is queued (in a worker thread); True if there was anything to write."""
        points, self._points = list(self._points), deque()
        events, self._events = list(self._events), deque()
        removed, self._removed = self._removed, []
        if points or events:
            await asyncio.to_thread(self.store.write, points, events)
        for ref in removed:
            await asyncio.to_thread(self.store.forget, ref)
        return bool(points or events or removed)

    def _wrote(self, error: Exception | None) -> None:
        if error is not None and not self._write_failing:
            self._write_failing = True
            self._tell("HistoryWriteFailed", f"cannot write the history {self.store.path}: {error}")
        elif error is None and self._write_failing:
            self._write_failing = False
            self._tell("HistoryWriteRecovered", f"the history {self.store.path} is written again")

    def _tell(self, reason: str, message: str) -> None:
        if self.on_write_problem is not None:
            with contextlib.suppress(Exception):
                self.on_write_problem(reason, message)

    async def run(self) -> None:
        """Flush every `flush_interval`, maintain every `maintain_interval`, until cancelled (then flush)."""
        last_maintain = 0.0
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                try:
                    wrote = await self.flush()
                except (sqlite3.Error, OSError) as exc:
                    self._wrote(exc)
                else:
                    if wrote:
                        self._wrote(None)
                now = self.clock()
                if now - last_maintain >= self.maintain_interval:
                    last_maintain = now
                    with contextlib.suppress(sqlite3.Error, OSError):
                        await asyncio.to_thread(self.store.maintain, now)
        finally:
            with contextlib.suppress(sqlite3.Error, OSError):
                await asyncio.shield(self.flush())
