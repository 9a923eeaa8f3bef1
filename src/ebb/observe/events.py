"""The local event log: one JSON line per scaling event or problem, in `.ebb/events.jsonl`, rotated by size.

A line: {"time", "kind", "namespace", "name", "object", "type" (Normal|Warning), "reason", "message"}.
Messages come from the runtime already redacted; nothing else about a trigger is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 3
#: The reason recorded for `Observer.problem` (an object that cannot be scaled at all).
PROBLEM_REASON = "ScalingProblem"


@dataclass(frozen=True)
class EventRecord:
    time: float
    kind: str
    namespace: str
    name: str
    type: str
    reason: str
    message: str

    @property
    def object(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "object": self.object}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRecord:
        return cls(
            time=float(data["time"]),
            kind=str(data.get("kind", "")),
            namespace=str(data.get("namespace", "")),
            name=str(data.get("name", "")),
            type=str(data.get("type", "Normal")),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
        )

    @classmethod
    def of(cls, ref: ObjectRef, event: ScalingEvent, now: float) -> EventRecord:
        return cls(now, ref.kind, ref.namespace, ref.name, event.type, event.reason, event.message)

    def matches(self, name: str | None) -> bool:
        """`name` may be `name`, `namespace/name` or `Kind/namespace/name`."""
        if name is None:
            return True
        return name in (self.name, f"{self.namespace}/{self.name}", self.key, self.object)


class EventLog:
    """Append-only JSON lines with size rotation (`events.jsonl` -> `events.jsonl.1` ...). Thread-safe."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()

    def append(self, record: EventRecord) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    self._rotate()
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def _rotate(self) -> None:
        for i in range(self.backups - 1, 0, -1):
            src = self._backup(i)
            if src.exists():
                os.replace(src, self._backup(i + 1))
        if self.backups > 0:
            os.replace(self.path, self._backup(1))
        else:
            self.path.unlink()

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def files(self) -> list[Path]:
        """Oldest first."""
        return [p for p in [*(self._backup(i) for i in range(self.backups, 0, -1)), self.path] if p.exists()]

    def read(
        self, since: float | None = None, until: float | None = None, name: str | None = None
    ) -> list[EventRecord]:
        """Events in [since, until], oldest first; unreadable lines are skipped."""
        return [
            r
            for path in self.files()
            for r in _parse(path)
            if (since is None or r.time >= since) and (until is None or r.time <= until) and r.matches(name)
        ]

    def tail(self, offset: int) -> tuple[list[EventRecord], int]:
        """Complete records appended to the live file since byte `offset`, and the new offset.

        A file smaller than `offset` was rotated: reading restarts at 0. A half-written last line waits.
        """
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() < offset:
                    offset = 0
                f.seek(offset)
                chunk = f.read()
        except OSError:
            return [], 0
        end = chunk.rfind(b"\n") + 1
        records = []
        for line in chunk[:end].splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                records.append(EventRecord.from_json(json.loads(line)))
        return records, offset + end


def _parse(path: Path, start: int = 0) -> Iterator[EventRecord]:
    with contextlib.suppress(OSError), path.open("r", encoding="utf-8") as f:
        f.seek(start)
        for line in f:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                yield EventRecord.from_json(json.loads(line))


class EventLogObserver(Observer):
    """Writes every ScalingEvent, and every new problem (a repeat of the same one is written once)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._last_problem: dict[ObjectRef, str] = {}
        #: Told (once per failing streak, and on recovery) when the log cannot be written.
        self.on_write_problem: Callable[[str, str], None] | None = None
        self._write_failing = False

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self._append(EventRecord.of(ref, event, now))

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if self._last_problem.get(ref) == message:
            return
        self._last_problem[ref] = message
        self._append(EventRecord.of(ref, ScalingEvent(PROBLEM_REASON, message, "Warning"), now))

    def _append(self, record: EventRecord) -> None:
        try:
            self.log.append(record)
        except OSError as exc:
            if not self._write_failing:
                self._write_failing = True
                self._tell("EventLogWriteFailed", f"cannot write the event log {self.log.path}: {exc}")
            return
        if self._write_failing:
            self._write_failing = False
            self._tell("EventLogWriteRecovered", f"the event log {self.log.path} is written again")

    def _tell(self, reason: str, message: str) -> None:
        if self.on_write_problem is not None:
            with contextlib.suppress(Exception):
                self.on_write_problem(reason, message)

    def poll(self, record: PollRecord) -> None:
        self._last_problem.pop(record.ref, None)  # it polls again: the next problem is news

    def removed(self, ref: ObjectRef) -> None:
        self._last_problem.pop(ref, None)
