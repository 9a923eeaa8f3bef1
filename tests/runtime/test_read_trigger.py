"""read_trigger: one trigger's reading for the core, timed, never raising."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ebb.runtime.build import build_scalers
from ebb.runtime.scaled_job import trigger_failure_events
from ebb.runtime.scaled_object import close_scalers, read_trigger
from ebb.scaling.types import TriggerResult
from ebb.spec.loader import load_text

MANIFEST = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: reader
spec:
  scaleTargetRef:
    apiVersion: ebb.dev/v1alpha1
    kind: ProcessGroup
    name: reader
  triggers:
    - type: sqlite
      metadata:
        databasePath: {db}
        query: SELECT COUNT(*) FROM work
        targetQueryValue: "2"
"""


async def test_each_reading_carries_its_own_read_time(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE work (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO work DEFAULT VALUES", [()] * 3)
    conn.commit()
    conn.close()
    loaded = load_text(MANIFEST.format(db=db))
    assert not loaded.errors
    (obj,) = loaded.objects
    scalers = build_scalers(obj, loaded.resources, {})
    try:
        result = await read_trigger(scalers[0])
    finally:
        await close_scalers(scalers)
    assert (result.value, result.error) == (3.0, None)
    assert result.read_seconds is not None and result.read_seconds > 0

    db.unlink()  # the scaler now fails: still a result, still timed
    scalers = build_scalers(obj, loaded.resources, {})
    try:
        failed = await read_trigger(scalers[0])
    finally:
        await close_scalers(scalers)
    assert failed.error is not None and failed.value is None
    assert failed.read_seconds is not None


def test_a_failing_trigger_is_reported_once_and_again_when_it_recovers() -> None:
    ok = TriggerResult(metric_name="s0-redis-q", target=1.0, value=2.0)
    broken = TriggerResult(metric_name="s0-redis-q", target=1.0, error="connection refused")
    failing: set[str] = set()
    assert [e.reason for e in trigger_failure_events([ok], failing)] == []
    (event,) = trigger_failure_events([broken], failing)
    assert (event.reason, event.type) == ("KEDAScalerFailed", "Warning")
    assert event.message == "s0-redis-q: connection refused"
    assert trigger_failure_events([broken], failing) == []  # still failing: said once
    assert [e.reason for e in trigger_failure_events([ok], failing)] == ["ScalerRecovered"]
    assert failing == set()
