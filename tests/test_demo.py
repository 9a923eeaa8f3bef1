"""`ebb demo` end to end (its quick plan): real workers, a real SQLite queue, 0 -> N -> 0."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

from rich.console import Console

from ebb.demo.run import QUICK, run_demo
from ebb.observe.history import HistoryStore


def test_quick_demo_scales_from_zero_and_back_and_does_every_job(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    state = tmp_path / "state"
    code = run_demo(console, quick=True, directory=tmp_path / "demo", live=True, state_dir=state)
    tmp_path = tmp_path / "demo"  # live is off without a terminal: the plain lines are checked below
    text = out.getvalue()
    assert code == 0, text
    conn = sqlite3.connect(tmp_path / "jobs.db")
    done, total = conn.execute("SELECT sum(status = 'done'), count(*) FROM jobs").fetchone()
    workers = {w for (w,) in conn.execute("SELECT DISTINCT worker FROM jobs")}
    conn.close()
    assert done == total == sum(n for _, n in QUICK.bursts)
    assert len(workers) >= 2, "more than one replica should have taken jobs"
    assert "KEDAScaleTargetActivated" in text and "KEDAScaleTargetDeactivated" in text
    assert "scaled 0 → N → 0" in text
    log = (tmp_path / "workers.log").read_text()
    assert "finished its last job" in log  # scale-in let workers finish (SIGTERM, then the grace period)
    assert (tmp_path / "demo.yaml").exists()
    # The demo leaves the history `ebb dashboard` shows: the object, and its replicas over time.
    store = HistoryStore(state / "history.db", readonly=True)
    try:
        (obj,) = store.objects()
        series = store.series(obj["key"], 0, time.time() + 60, max_points=10_000)
    finally:
        store.close()
    replicas = [p["desired"] for p in series["points"]]
    assert max(replicas) >= 2 and replicas[-1] == 0
    assert "KEDAScaleTargetActivated" in (state / "events.jsonl").read_text()
