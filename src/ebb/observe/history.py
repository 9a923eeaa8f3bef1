"""What each object did over time: per poll, its triggers and replicas, in SQLite, written off the scaling loop.

`HistoryObserver.poll` only appends to a bounded in-memory queue (a full queue drops the point and counts it,
never blocks); `HistoryObserver.run` writes batches in a worker thread. `HistoryStore(None)` is the same store
in memory (SQLite `:memory:`), for an operator without a volume.

Downsampled tiers (`Tier`, `parse_tiers`; default `1s:1h,1m:2d,5m:60d`): a poll is written as it was read (a raw
point); after `SETTLE` seconds raw points become one point per first-tier resolution, and each tier's points older
than its `keep` become one point per the next tier's resolution; points older than the last tier's `keep` and their
events are deleted. So an object holds at most keep/resolution points per tier, whatever its polling interval.
A roll-up keeps what the forecaster and the dashboard read: per trigger the mean `value` and its `max`, the last
target and last error; replicas `desired`/`current`/`ready` as means and `peak` as the highest; `active` as the
fraction of polls that were active; `samples`, the number of polls merged (the weight of later roll-ups).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
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


@dataclass(frozen=True)
class Tier:
    """Points `resolution` seconds apart, kept until they are `keep` seconds old."""

    resolution: float
    keep: float

    def __str__(self) -> str:
        return f"{_duration_text(self.resolution)}:{_duration_text(self.keep)}"


DEFAULT_TIERS_TEXT = "1s:1h,1m:2d,5m:60d"
DEFAULT_TIERS = (Tier(1.0, 3600.0), Tier(60.0, 2 * 86400.0), Tier(300.0, 60 * 86400.0))
DEFAULT_RETENTION = DEFAULT_TIERS[-1].keep
#: Raw points younger than this stay as written (a late write still finds its neighbours unmerged).
SETTLE = 60.0
#: The step of the dashboard's gap rule (a step longer than twice this, and 2.5 polls, is ebb not running).
BUCKET = 60.0
#: At most this many points per object in one tier (keep / resolution).
MAX_TIER_POINTS = 1_000_000
MAX_TIERS = 8
DEFAULT_MAX_POINTS = 600
DEFAULT_QUEUE = 10_000

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class TierError(ValueError):
    """A history tier specification that cannot be used (the message names the tier and what was expected)."""


def _duration_text(seconds: float) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _tier_duration(text: str, where: str, what: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise TierError(
            f"{where}: {what} {text.strip()!r} is not a duration; expected a number and a unit s, m, h, d or w "
            "(e.g. 1s, 5m, 60d)"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise TierError(f"{where}: {what} must be more than 0, got {text.strip()!r}")
    return seconds


def parse_tiers(text: str) -> tuple[Tier, ...]:
    """`RESOLUTION:KEEP[,RESOLUTION:KEEP...]`, finest first, e.g. `1s:1h,1m:2d,5m:60d`; TierError otherwise."""
    if not text.strip():
        raise TierError(f"expected tiers like {DEFAULT_TIERS_TEXT} (RESOLUTION:KEEP, finest first), got nothing")
    tiers = []
    for position, part in enumerate(text.split(","), start=1):
        where = f"tier {position} ({part.strip()})"
        pieces = part.split(":")
        if len(pieces) != 2:
            raise TierError(f"{where}: expected RESOLUTION:KEEP, e.g. 1m:2d")
        tiers.append(Tier(_tier_duration(pieces[0], where, "resolution"), _tier_duration(pieces[1], where, "keep")))
    return validate_tiers(tiers)


def validate_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """`tiers` if they make a bounded chain of roll-ups; TierError naming the first tier that does not."""
    if not tiers:
        raise TierError("expected at least one tier")
    if len(tiers) > MAX_TIERS:
        raise TierError(f"expected at most {MAX_TIERS} tiers, got {len(tiers)}")
    for position, tier in enumerate(tiers, start=1):
        where = f"tier {position} ({tier})"
        if not (math.isfinite(tier.resolution) and math.isfinite(tier.keep)) or tier.resolution <= 0 or tier.keep <= 0:
            raise TierError(f"{where}: resolution and keep must be finite durations above 0")
        if tier.resolution < 1:
            raise TierError(f"{where}: resolution must be at least 1s")
        if tier.keep < tier.resolution:
            raise TierError(f"{where}: keep must be at least the resolution ({_duration_text(tier.resolution)})")
        if tier.keep / tier.resolution > MAX_TIER_POINTS:
            raise TierError(
                f"{where}: keeps {tier.keep / tier.resolution:,.0f} points per object; at most {MAX_TIER_POINTS:,} "
                "(a coarser resolution or a shorter keep)"
            )
        if position > 1:
            before = tiers[position - 2]
            if tier.resolution <= before.resolution:
                raise TierError(
                    f"{where}: resolution must be coarser than tier {position - 1}'s "
                    f"({_duration_text(before.resolution)})"
                )
            if tier.resolution % before.resolution:
                raise TierError(
                    f"{where}: resolution must be a whole multiple of tier {position - 1}'s "
                    f"({_duration_text(before.resolution)}), so that its points roll up into whole buckets"
                )
            if tier.keep <= before.keep:
                raise TierError(
                    f"{where}: keep must be longer than tier {position - 1}'s ({_duration_text(before.keep)})"
                )
    return tuple(tiers)


def with_retention(tiers: Sequence[Tier], retention: float) -> tuple[Tier, ...]:
    """`tiers` cut (or the last one stretched) so that nothing is kept longer than `retention` seconds."""
    if not retention > 0 or not math.isfinite(retention):
        raise TierError(f"retention must be a duration above 0, got {retention:g}s")
    out: list[Tier] = []
    for tier in tiers:
        if tier.resolution > retention:
            break
        out.append(Tier(tier.resolution, min(tier.keep, retention)))
        if tier.keep >= retention:
            break
    if not out:
        raise TierError(
            f"retention {_duration_text(retention)} is shorter than the finest tier's resolution ({tiers[0]})"
        )
    if out[-1].keep < retention:
        out[-1] = Tier(out[-1].resolution, retention)
    return validate_tiers(out)


def tier_sizes(tiers: Sequence[Tier], polling_interval: float) -> list[int]:
    """The most points one object holds when polled every `polling_interval` seconds: raw, then per tier."""
    sizes = [math.ceil(SETTLE / polling_interval)]
    newer = SETTLE
    for i, tier in enumerate(tiers):
        step = max(polling_interval, tier.resolution) if i == 0 else tier.resolution
        sizes.append(math.ceil(max(0.0, tier.keep - newer) / step) + 1)
        newer = tier.keep
    return sizes


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
#: The same for the points table (`samples`: polls merged into a point; NULL in an older database reads as 1).
_ADDED_POINT_COLUMNS = {"samples": "REAL"}
_POINT_COLUMNS = "key, time, resolution, active, desired, current, ready, peak, triggers, samples"
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
    active REAL, desired REAL, current REAL, ready REAL, peak REAL, triggers TEXT, samples REAL
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


def _aggregate_triggers(rows: Sequence[tuple[list[dict[str, Any]], float]]) -> list[dict[str, Any]]:
    """Each trigger's value averaged over several points (weighted by their polls) and its highest value (`max`);
    the last target, any activity, the last error. Keys without a value, and `metric_type` when it is KEDA's default
    `AverageValue`, are left out (a smaller roll-up)."""
    merged: dict[str, dict[str, Any]] = {}
    values: dict[str, list[tuple[float, float]]] = {}
    highest: dict[str, float] = {}
    for triggers, weight in rows:
        for t in triggers:
            m = merged.setdefault(t["metric"], {"metric": t["metric"]})
            for field in ("name", "target", "metric_type"):
                if t.get(field) is not None:
                    m[field] = t[field]
            if t.get("active"):
                m["active"] = True
            if t.get("error"):
                m["error"] = t["error"]
            if t.get("value") is not None:
                value = float(t["value"])
                values.setdefault(t["metric"], []).append((value, weight))
                top = t.get("max")
                top = value if top is None else max(value, float(top))
                highest[t["metric"]] = max(highest.get(t["metric"], top), top)
    for metric, m in merged.items():
        vs = values.get(metric)
        m.setdefault("target", None)
        if m.get("metric_type") == "AverageValue":  # KEDA's default for external metrics: a missing type means it
            del m["metric_type"]
        m["value"] = _significant(_weighted([v for v, _ in vs], [w for _, w in vs])) if vs else None
        if metric in highest:
            m["max"] = highest[metric]
    return list(merged.values())


def _significant(value: float) -> float:
    """A mean to 7 significant digits: 1e-7 relative is far below any metric's noise, and it is written shorter."""
    return float(f"{value:.7g}")


def _weighted(values: Sequence[float], weights: Sequence[float]) -> float:
    total = math.fsum(weights)
    if total <= 0:
        return statistics.fmean(values)
    return math.fsum(v * w for v, w in zip(values, weights, strict=True)) / total


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
    samples: float = 1.0

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
    """One point for several: means weighted by the polls each stands for; `peak` the highest; `active` the
    fraction of polls that were active."""
    weights = [r.samples for r in rows]
    return _Row(
        time=at,
        resolution=resolution,
        active=_weighted([r.active for r in rows], weights),
        desired=_weighted([r.desired for r in rows], weights),
        current=_weighted([r.current for r in rows], weights),
        ready=_weighted([r.ready for r in rows], weights),
        peak=max(r.peak for r in rows),
        triggers=_aggregate_triggers([(r.triggers, r.samples) for r in rows]),
        samples=math.fsum(weights),
    )


def replica_seconds(rows: Sequence[_Row], until: float | None = None) -> tuple[float, float, float]:
    """(replica-seconds used, seconds covered, peak replicas) from points, as a step function.

    A gap longer than 2.5 polls (at least two minutes, and 2.5 times a rolled-up point's resolution) is not
    counted: ebb was not running then.
    """
    if not rows:
        return 0.0, 0.0, 0.0
    steps = [b.time - a.time for a, b in itertools.pairwise(rows)]
    cap = max(2 * BUCKET, 2.5 * statistics.median(steps)) if steps else 0.0
    used = covered = 0.0
    for row, step in zip(rows, steps, strict=False):
        step = min(step, max(cap, 2.5 * row.resolution))
        used += row.current * step
        covered += step
    peak = max(r.peak for r in rows)
    return used, covered, peak


class HistoryStore:
    """Points, latest state and events in one SQLite database (a file, or memory when `path` is None)."""

    def __init__(
        self,
        path: Path | None,
        retention: float | None = None,
        tiers: Sequence[Tier] = DEFAULT_TIERS,
        readonly: bool = False,
    ) -> None:
        """`tiers` (validated: TierError) cut or stretched to `retention` seconds when it is given."""
        tiers = validate_tiers(tiers)
        self.tiers = with_retention(tiers, retention) if retention is not None else tiers
        self.retention = self.tiers[-1].keep
        self.path = path
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
        have_points = {row[1] for row in self._db.execute("PRAGMA table_info(points)")}
        for column, sql_type in _ADDED_POINT_COLUMNS.items():
            if column not in have_points and not readonly and have_points:
                with self._db:
                    self._db.execute(f"ALTER TABLE points ADD COLUMN {column} {sql_type}")
                have_points.add(column)
        self._samples = "samples" if "samples" in have_points or not have_points else "NULL"
        #: Every resolution the points table holds (maintenance works on each with the (resolution, time) index):
        #: the tiers', raw, and any other a database written with other tiers has (read once, at open).
        self._resolutions = {0.0, *(t.resolution for t in self.tiers)}
        if not readonly:
            self._resolutions |= {float(r) for (r,) in self._db.execute("SELECT DISTINCT resolution FROM points")}

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
                    f"INSERT INTO points ({_POINT_COLUMNS}) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, 1)",
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
        """Roll raw points older than `SETTLE` into the first tier, each tier's points older than its `keep` into
        the next one (in whole buckets of the next resolution); delete what is older than the last tier's keep."""
        first = self.tiers[0].resolution
        with self._lock, self._db:
            self._roll(first, math.floor((now - SETTLE) / first) * first)
            for finer, coarser in itertools.pairwise(self.tiers):
                res = coarser.resolution
                self._roll(res, math.floor((now - finer.keep) / res) * res)
            horizon = now - self.retention
            for resolution in self._resolutions:  # one indexed range per resolution, not a scan of every point
                self._db.execute("DELETE FROM points WHERE resolution = ? AND time < ?", (resolution, horizon))
            self._db.execute("DELETE FROM events WHERE time < ?", (horizon,))
            self._db.execute("DELETE FROM objects WHERE time IS NOT NULL AND time < ?", (horizon,))

    def _roll(self, resolution: float, before: float) -> None:
        """Points finer than `resolution` and older than `before` (a bucket boundary) become one per bucket."""
        buckets: dict[tuple[str, float], list[tuple[Any, ...]]] = {}
        for finer in sorted(r for r in self._resolutions if r < resolution):
            rows = self._db.execute(
                f"SELECT key, time, resolution, active, desired, current, ready, peak, triggers, {self._samples} "
                "FROM points WHERE resolution = ? AND time < ?",
                (finer, before),
            ).fetchall()
            if not rows:
                continue
            for row in rows:
                buckets.setdefault((row[0], math.floor(row[1] / resolution) * resolution), []).append(row)
            self._db.execute("DELETE FROM points WHERE resolution = ? AND time < ?", (finer, before))
        values = []
        for (key, start), group in buckets.items():
            if len(group) == 1:  # the usual case of a finer tier than the polls: only moved to its bucket
                _, _, _, active, desired, current, ready, peak, triggers, samples = group[0]
                values.append((key, start, resolution, active, desired, current, ready, peak, triggers, samples or 1))
            else:
                rows_ = sorted((_row(r[1:]) for r in group), key=_time)
                values.append((key, *_row_values(_merge(rows_, start, resolution))))
        self._db.executemany(f"INSERT INTO points ({_POINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)

    def add_points(self, key: str, points: Sequence[dict[str, Any]], resolution: float) -> int:
        """Points read back from elsewhere (Prometheus): dicts with `time`, `triggers` and optionally `current`,
        `desired`, `active`; stored at `resolution`, so that they roll up like the store's own. Returns how many."""
        values = []
        for p in points:
            current = float(p.get("current") or 0.0)
            desired = float(p.get("desired", current) or 0.0)
            row = _Row(
                time=float(p["time"]),
                resolution=resolution,
                active=float(p.get("active") or 0.0),
                desired=desired,
                current=current,
                ready=current,
                peak=max(current, desired),
                triggers=list(p.get("triggers") or []),
            )
            values.append((key, *_row_values(row)))
        with self._lock, self._db:
            self._db.executemany(f"INSERT INTO points ({_POINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            self._resolutions.add(resolution)
        return len(values)

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
        resolutions = sorted({BUCKET, *self._resolutions})
        union = " UNION ALL ".join(["SELECT MIN(time), MAX(time) FROM points WHERE resolution = ?"] * len(resolutions))
        with self._lock:
            rows = self._db.execute(union, resolutions).fetchall()
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
                f"SELECT time, resolution, active, desired, current, ready, peak, triggers, {self._samples} "
                "FROM points WHERE key = ? AND time >= ? AND time <= ? ORDER BY time",
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

    def trigger_series(
        self, key: str, metric: str, start: float, end: float, field: str = "value"
    ) -> list[tuple[float, float]]:
        """(time, value) of one trigger's metric in [start, end], oldest first, from every tier: the history a
        forecaster is seeded from (`field="max"`: each point's highest value; a raw point's value)."""
        with self._lock:
            raw = self._db.execute(
                "SELECT time, triggers FROM points WHERE key = ? AND time >= ? AND time <= ? ORDER BY time",
                (key, start, end),
            ).fetchall()
        out: list[tuple[float, float]] = []
        for t, triggers in raw:
            for trig in json.loads(triggers) if triggers else []:
                if trig.get("metric") != metric:
                    continue
                value = trig.get("max", trig.get("value")) if field == "max" else trig.get("value")
                if value is not None:
                    out.append((float(t), float(value)))
        return out

    def trigger_steps(
        self, key: str, metric: str, start: float, end: float, step: float, field: str = "max"
    ) -> list[tuple[float, float]]:
        """One trigger's history on a regular grid: (step start, value) for each `step` in [start, end) that any
        point covers, oldest first. A point covers its own resolution (a raw one, its instant); a step takes the
        highest (`field="max"`) or the mean (`field="value"`) of the points' values covering it. What a forecaster
        that observes one value per step is seeded with; steps nothing covers (ebb was not running) are left out."""
        if not step > 0:
            raise ValueError(f"step must be above 0, got {step!r}")
        with self._lock:
            raw = self._db.execute(
                "SELECT time, resolution, triggers FROM points WHERE key = ? AND time > ? AND time < ? ORDER BY time",
                (key, start - max(t.resolution for t in self.tiers) - step, end),
            ).fetchall()
        first = math.floor(start / step)
        cells: dict[int, list[float]] = {}
        for t, resolution, triggers in raw:
            found = [x for x in (json.loads(triggers) if triggers else []) if x.get("metric") == metric]
            value = None
            if found:
                value = found[0].get("max", found[0].get("value")) if field == "max" else found[0].get("value")
            if value is None:
                continue
            lo = math.floor(float(t) / step)
            hi = max(lo, math.ceil((float(t) + float(resolution)) / step) - 1)
            for cell in range(max(lo, first), hi + 1):
                if cell * step < end:
                    cells.setdefault(cell, []).append(float(value))
        pick = max if field == "max" else statistics.fmean
        return [(cell * step, pick(values)) for cell, values in sorted(cells.items())]

    def first_point(self, key: str) -> float | None:
        """The time of `key`'s oldest point, None without any."""
        with self._lock:
            row = self._db.execute("SELECT MIN(time) FROM points WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

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
    t, res, active, desired, current, ready, peak, triggers, *rest = r
    samples = rest[0] if rest else None
    return _Row(
        float(t),
        float(res),
        float(active or 0),
        float(desired or 0),
        float(current or 0),
        float(ready or 0),
        float(peak or 0),
        json.loads(triggers) if triggers else [],
        float(samples) if samples else 1.0,
    )


def _time(row: _Row) -> float:
    return row.time


def _row_values(m: _Row) -> tuple[Any, ...]:
    """A row's columns after `key`, in `_POINT_COLUMNS` order (compact JSON: a roll-up is written many times)."""
    triggers = json.dumps(m.triggers, separators=(",", ":"))
    return (m.time, m.resolution, m.active, m.desired, m.current, m.ready, m.peak, triggers, m.samples)


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
