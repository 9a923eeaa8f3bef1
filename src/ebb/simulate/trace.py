"""Reading a workload trace: per-interval counts, per-request timestamps, or an `ebb run` history.

Every problem is a TraceError naming the file, the row (1-based, the header is row 1) and the field.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from ebb.errors import EbbError

TraceFormat = Literal["counts", "arrivals", "history"]
GapPolicy = Literal["error", "zero", "previous"]
#: A count above this per interval is refused: no real trace has it, and it would make the replay run for hours.
MAX_COUNT = 1e8
#: Arrivals traces are bucketed at this step for forecasting and for the p99 of the load.
ARRIVALS_STEP = 60.0


class TraceError(EbbError):
    """A trace the simulator cannot replay; the message names the file, row and field."""


@dataclass(frozen=True)
class Trace:
    """A trace as read: either counts per `interval` seconds, or arrival times (seconds from `start`)."""

    path: str
    format: TraceFormat
    start: float
    interval: float
    counts: npt.NDArray[np.float64] | None = None
    arrivals: npt.NDArray[np.float64] | None = None
    filled_gaps: int = 0

    @property
    def duration(self) -> float:
        if self.counts is not None:
            return float(len(self.counts)) * self.interval
        assert self.arrivals is not None
        return math.ceil((float(self.arrivals[-1]) + 1e-9) / self.interval) * self.interval

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {
            "file": self.path,
            "format": self.format,
            "start": datetime.fromtimestamp(self.start, UTC).isoformat(),
            "duration_s": self.duration,
            "interval_s": self.interval,
        }
        if self.counts is not None:
            out["rows"] = len(self.counts)
            out["total"] = float(self.counts.sum())
        if self.arrivals is not None:
            out["rows"] = len(self.arrivals)
        if self.filled_gaps:
            out["filled_gaps"] = self.filled_gaps
        return out


def _parse_time(raw: str, where: str) -> float:
    text = raw.strip()
    if not text:
        raise TraceError(f"{where}: empty timestamp")
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise TraceError(f"{where}: timestamp {raw!r} is not a finite number")
        return value
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        # Python's fromisoformat takes at most 6 fractional digits; traces often have 7.
        head, dot, frac = text.partition(".")
        try:
            stamp = datetime.fromisoformat(f"{head}.{frac[:6]}" if dot else head)
        except ValueError:
            raise TraceError(f"{where}: cannot read timestamp {raw!r} (expected ISO 8601 or Unix seconds)") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def _rows(path: Path) -> Iterator[tuple[int, list[str], list[str]]]:
    """(row number, header, row) for every data row; blank lines are skipped."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise TraceError(f"{path}: the file is empty")
            header = [h.strip() for h in header]
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                yield reader.line_num, header, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}: not a CSV file: {exc}") from None


def _column(header: list[str], names: tuple[str, ...], default: int, path: Path, what: str) -> int:
    lowered = [h.lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    if default < len(header):
        return default
    raise TraceError(f"{path}: row 1 (header): no {what} column (expected one of {', '.join(names)})")


def read_counts(path: Path, gaps: GapPolicy = "error") -> Trace:
    """`timestamp,value` rows at a fixed interval."""
    times: list[float] = []
    values: list[float] = []
    rownums: list[int] = []
    for line, header, row in _rows(path):
        t_col = _column(header, ("timestamp", "time", "ts"), 0, path, "timestamp")
        v_col = _column(header, ("value", "count", "requests"), 1, path, "value")
        where = f"{path}: row {line}"
        if max(t_col, v_col) >= len(row):
            raise TraceError(f"{where}: expected {len(header)} fields, got {len(row)}")
        t = _parse_time(row[t_col], f"{where}, field {header[t_col]!r}")
        raw = row[v_col].strip()
        field_where = f"{where}, field {header[v_col]!r}"
        try:
            v = float(raw)
        except ValueError:
            raise TraceError(f"{field_where}: {raw!r} is not a number") from None
        if math.isnan(v):
            raise TraceError(f"{field_where}: NaN is not a count")
        if v < 0:
            raise TraceError(f"{field_where}: negative count {raw}")
        if not v <= MAX_COUNT:
            raise TraceError(f"{field_where}: {raw} is too large (at most {MAX_COUNT:g} per interval)")
        if times and t <= times[-1]:
            order = "repeats" if t == times[-1] else "goes back before"
            raise TraceError(
                f"{where}: timestamp {row[t_col].strip()!r} {order} row {rownums[-1]}'s: rows must be in time order"
            )
        times.append(t)
        values.append(v)
        rownums.append(line)
    if not times:
        raise TraceError(f"{path}: the file has a header but no rows")
    if len(times) < 2:
        raise TraceError(f"{path}: one row is not a trace: need at least two intervals")
    steps = Counter(round(b - a, 6) for a, b in itertools.pairwise(times))
    interval = float(steps.most_common(1)[0][0])
    out: list[float] = [values[0]]
    filled = 0
    for i in range(1, len(times)):
        ratio = (times[i] - times[i - 1]) / interval
        missing = round(ratio) - 1
        if abs(ratio - round(ratio)) > 1e-6:
            raise TraceError(
                f"{path}: row {rownums[i]}: {times[i] - times[i - 1]:g} s after row {rownums[i - 1]}, "
                f"not a multiple of the trace's interval ({interval:g} s)"
            )
        if missing > 0:
            if gaps == "error":
                raise TraceError(
                    f"{path}: row {rownums[i]}: a gap of {missing} missing interval(s) of {interval:g} s after "
                    f"row {rownums[i - 1]}; pass --gaps previous (repeat the last value) or --gaps zero to fill it"
                )
            fill = out[-1] if gaps == "previous" else 0.0
            out.extend([fill] * missing)
            filled += missing
        out.append(values[i])
    return Trace(str(path), "counts", times[0], interval, counts=np.asarray(out, dtype=np.float64), filled_gaps=filled)


def read_arrivals(path: Path) -> Trace:
    """One row per request; its timestamp is the first column (or one named timestamp/time)."""
    times: list[float] = []
    last_line = 0
    for line, header, row in _rows(path):
        t_col = _column(header, ("timestamp", "time", "ts", "arrival"), 0, path, "timestamp")
        where = f"{path}: row {line}"
        if t_col >= len(row):
            raise TraceError(f"{where}: expected {len(header)} fields, got {len(row)}")
        t = _parse_time(row[t_col], f"{where}, field {header[t_col]!r}")
        if times and t < times[-1]:
            raise TraceError(
                f"{where}: timestamp {row[t_col].strip()!r} goes back before row {last_line}'s: "
                "rows must be in time order"
            )
        times.append(t)
        last_line = line
    if not times:
        raise TraceError(f"{path}: the file has a header but no rows")
    start = times[0]
    arrivals = np.asarray(times, dtype=np.float64) - start
    return Trace(str(path), "arrivals", start, ARRIVALS_STEP, arrivals=arrivals)


def read_history(path: Path, obj: str | None = None) -> Trace:
    """An `ebb run` history.db: the first trigger's recorded value at each point, from every tier, at the coarsest
    resolution it holds (the highest value per interval).

    A queue trigger records its backlog, not its arrivals: replaying it as counts is an approximation of the
    load (good for its shape over days, not for per-second detail).
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise TraceError(f"{path}: cannot open the history database: {exc}") from None
    try:
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise TraceError(f"{path}: not an ebb history database: {exc}") from None
        if "points" not in tables:
            raise TraceError(f"{path}: not an ebb history database (no points table)")
        rows, coarsest = _history_rows(db, path, obj)
    finally:
        db.close()
    if len(rows) < 2:
        raise TraceError(f"{path}: fewer than two recorded points" + (f" for {obj}" if obj else ""))
    times = np.asarray([r[0] for r in rows])
    values = np.asarray([r[1] for r in rows])
    interval = max(float(np.median(np.diff(times))), coarsest)
    if not interval > 0:
        raise TraceError(f"{path}: the recorded points are not spread over time")
    n = math.floor((times[-1] - times[0]) / interval + 1e-9) + 1  # the last point in the last bin, no empty one
    idx = np.minimum(((times - times[0]) / interval).astype(int), n - 1)
    counts = np.zeros(n)
    np.maximum.at(counts, idx, values)
    return Trace(str(path), "history", float(times[0]), interval, counts=counts)


def _history_rows(db: sqlite3.Connection, path: Path, obj: str | None) -> tuple[list[tuple[float, float]], float]:
    keys = [r[0] for r in db.execute("SELECT DISTINCT key FROM points")]
    if obj is None:
        if len(keys) != 1:
            listed = ", ".join(map(str, keys)) or "none"
            raise TraceError(f"{path}: the history holds {len(keys)} objects ({listed}); it must hold exactly one")
        obj = str(keys[0])
    # Every tier (the history keeps recent points finer than old ones): the trace's interval is the coarsest.
    (coarsest,) = db.execute("SELECT MAX(resolution) FROM points WHERE key = ?", (obj,)).fetchone()
    out: list[tuple[float, float]] = []
    query = "SELECT time, triggers FROM points WHERE key = ? ORDER BY time"
    for t, raw in db.execute(query, (obj,)):
        try:
            value = float(json.loads(raw)[0]["value"])
        except (ValueError, KeyError, IndexError, TypeError):
            continue
        if math.isfinite(value) and value >= 0:
            out.append((float(t), value))
    return out, float(coarsest or 0.0)


def read_trace(path: Path, fmt: TraceFormat = "counts", gaps: GapPolicy = "error") -> Trace:
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, not a trace file")
    if fmt == "counts":
        return read_counts(path, gaps)
    if fmt == "arrivals":
        return read_arrivals(path)
    return read_history(path)
