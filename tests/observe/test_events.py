"""The local event log: JSON lines, size rotation, reading by time and object, following."""

from __future__ import annotations

import json
from pathlib import Path

from ebb.observe.events import EventLog, EventLogObserver, EventRecord
from ebb.runtime.observer import ObjectRef
from ebb.scaling.types import ScalingEvent

from ._records import SO, poll, trigger

JOB = ObjectRef("ScaledJob", "batch", "reports")


def test_observer_writes_events_and_new_problems_as_json_lines(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    obs = EventLogObserver(log)
    obs.event(SO, ScalingEvent("KEDAScaleTargetActivated", "Scaled ProcessGroup shop/w from 0 to 1"), 100.0)
    obs.problem(SO, "cannot read the target", 101.0)
    obs.problem(SO, "cannot read the target", 102.0)  # a repeat
    obs.poll(poll(SO, 103.0, (trigger(0, 1.0),), current=1, desired=1))
    obs.problem(SO, "cannot read the target", 104.0)  # after a good poll it is news again
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(x["time"], x["reason"], x["type"]) for x in lines] == [
        (100.0, "KEDAScaleTargetActivated", "Normal"),
        (101.0, "ScalingProblem", "Warning"),
        (104.0, "ScalingProblem", "Warning"),
    ]
    assert lines[0]["object"] == "ScaledObject shop/orders"
    assert lines[0]["message"] == "Scaled ProcessGroup shop/w from 0 to 1"


def test_read_filters_by_time_and_object_names(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append(EventRecord.of(SO, ScalingEvent("A", "a"), 10.0))
    log.append(EventRecord.of(JOB, ScalingEvent("B", "b"), 20.0))
    log.append(EventRecord.of(SO, ScalingEvent("C", "c"), 30.0))
    assert [r.reason for r in log.read()] == ["A", "B", "C"]
    assert [r.reason for r in log.read(since=15.0)] == ["B", "C"]
    assert [r.reason for r in log.read(until=25.0)] == ["A", "B"]
    for name in ("orders", "shop/orders", "ScaledObject/shop/orders"):
        assert [r.reason for r in log.read(name=name)] == ["A", "C"]
    assert log.read(name="nothing") == []


def test_rotation_keeps_a_bounded_number_of_files_and_reads_across_them(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", max_bytes=400, backups=2)
    for i in range(30):
        log.append(EventRecord.of(SO, ScalingEvent("R", f"event {i:02d}"), float(i)))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(p.stat().st_size <= 400 for p in tmp_path.iterdir())
    times = [r.time for r in log.read()]
    assert times == sorted(times) and times[-1] == 29.0 and times[0] > 0.0  # the oldest were rotated out


def test_tail_returns_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append(EventRecord.of(SO, ScalingEvent("A", "a"), 1.0))
    first, offset = log.tail(0)
    assert [r.reason for r in first] == ["A"]
    log.append(EventRecord.of(SO, ScalingEvent("B", "b"), 2.0))
    with path.open("a") as f:
        f.write('{"time": 3, "reason": "half')  # a writer mid-line
    second, offset = log.tail(offset)
    assert [r.reason for r in second] == ["B"]
    with path.open("a") as f:
        f.write('"}\n')
    third, _ = log.tail(offset)
    assert [r.reason for r in third] == ["half"]


def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('not json\n{"no_time": 1}\n{"time": 5, "reason": "ok"}\n')
    assert [r.reason for r in EventLog(path).read()] == ["ok"]
