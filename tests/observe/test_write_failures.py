"""A history or event log that cannot be written is reported as an event, once, and its recovery too."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from ebb.observe.events import EventLog, EventLogObserver
from ebb.observe.history import HistoryObserver, HistoryStore
from ebb.scaling.types import ScalingEvent

from ._records import SO, poll, trigger


def test_event_log_write_failures_are_reported_once_and_the_recovery() -> None:
    told: list[tuple[str, str]] = []
    blocker = Path("/proc/version")  # a file no one can append below
    observer = EventLogObserver(EventLog(blocker / "events.jsonl"))
    observer.on_write_problem = lambda reason, message: told.append((reason, message))
    for _ in range(3):
        observer.event(SO, ScalingEvent("X", "y"), time.time())
    assert [r for r, _ in told] == ["EventLogWriteFailed"]
    assert "events.jsonl" in told[0][1]


def test_event_log_recovery_is_reported(tmp_path: Path) -> None:
    told: list[str] = []
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    observer = EventLogObserver(EventLog(blocker / "events.jsonl"))
    observer.on_write_problem = lambda reason, message: told.append(reason)
    observer.event(SO, ScalingEvent("X", "y"), time.time())
    blocker.unlink()
    observer.event(SO, ScalingEvent("X", "y"), time.time())
    assert told == ["EventLogWriteFailed", "EventLogWriteRecovered"]
    assert [r.reason for r in EventLog(blocker / "events.jsonl").read()] == ["X"]


class _FailingStore(HistoryStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.fail = True

    def write(self, records: object, events: object = ()) -> None:  # type: ignore[override]
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        super().write(records, events)  # type: ignore[arg-type]


async def test_history_write_failures_are_reported_once_and_the_recovery(tmp_path: Path) -> None:
    store = _FailingStore(tmp_path / "history.db")
    observer = HistoryObserver(store, flush_interval=0.01)
    told: list[tuple[str, str]] = []
    observer.on_write_problem = lambda reason, message: told.append((reason, message))
    task = asyncio.create_task(observer.run())
    try:
        for _ in range(3):
            observer.poll(poll(SO, time.time(), (trigger(0, 1.0),), current=1, desired=1))
            await asyncio.sleep(0.05)
        assert [r for r, _ in told] == ["HistoryWriteFailed"]
        assert "disk I/O error" in told[0][1] and "history.db" in told[0][1]
        store.fail = False
        observer.event(SO, ScalingEvent("X", "y"), time.time())
        await asyncio.sleep(0.1)
        assert [r for r, _ in told] == ["HistoryWriteFailed", "HistoryWriteRecovered"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
