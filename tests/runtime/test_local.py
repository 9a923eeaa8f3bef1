"""The local runtime end to end: real worker processes scaled on a real SQLite backlog."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psutil
import pytest

from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from ebb.targets.process import ProcessGroupTarget

from ._support import Recorder, eventually, make_backlog, scaled_group


def _runtime(manifest: str, recorder: Recorder, state: Path | None = None) -> LocalRuntime:
    loaded = load_text(manifest)
    assert not loaded.errors, loaded.errors
    return LocalRuntime(loaded, recorder, RuntimeOptions(state_path=state, output=lambda n, line: None))


def _target(runtime: LocalRuntime, name: str) -> ProcessGroupTarget:
    return runtime.targets[("default", name)]


def _ready(runtime: LocalRuntime, name: str) -> int:
    """Running replicas of a group; 0 until the runtime has built it."""
    target = runtime.targets.get(("default", name))
    return target.ready_replicas() if target is not None else 0


async def test_scales_real_processes_from_zero_to_n_and_back_to_zero(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=0)
    rec = Recorder()
    runtime = _runtime(scaled_group("pool", db, per_replica=2, max_replicas=4), rec)
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: len(rec.polls) >= 1, what="first poll")
        assert _target(runtime, "pool").ready_replicas() == 0

        make_backlog(db, rows=7)  # ceil(7 / 2) = 4 replicas
        await eventually(lambda: _ready(runtime, "pool") == 4, what="scale to 4")
        pids = _target(runtime, "pool").pids()
        assert all(psutil.pid_exists(p) for p in pids)
        assert "KEDAScaleTargetActivated" in rec.reasons("pool")

        make_backlog(db, rows=0)
        await eventually(lambda: _ready(runtime, "pool") == 0, what="scale back to 0")
        assert "KEDAScaleTargetDeactivated" in rec.reasons("pool")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


async def test_a_broken_object_is_reported_and_the_others_keep_scaling(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=3)
    good = scaled_group("good", db, per_replica=1, max_replicas=3)
    failing = scaled_group("failing", tmp_path / "missing.db")  # the file never exists: the scaler fails
    wrong_target = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: elsewhere}
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: cron
      metadata: {timezone: UTC, start: "0 9 * * *", end: "0 17 * * *", desiredReplicas: "2"}
"""
    rec = Recorder()
    runtime = _runtime("---\n".join([good, failing, wrong_target]), rec)
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: _ready(runtime, "good") == 3, what="good scales to 3")
        await eventually(lambda: "KEDAScalerFailed" in rec.reasons("failing"), what="failing scaler reported")
        problems = {ref.name: msg for ref, msg in rec.problems}
        assert "elsewhere" in problems
        assert "spec.scaleTargetRef" in problems["elsewhere"] and "Deployment" in problems["elsewhere"]
        assert _target(runtime, "failing").ready_replicas() == 0
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_restart_resumes_replicas_and_cooldown_without_flapping(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    state = tmp_path / "state.json"
    make_backlog(db, rows=5)
    manifest = scaled_group("svc", db, per_replica=2, max_replicas=4, cooldown=3600)
    rec = Recorder()
    first = _runtime(manifest, rec, state)
    task = asyncio.create_task(first.run())
    await eventually(lambda: _ready(first, "svc") == 3, what="scale to 3")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert state.exists()

    # The work is gone, but the cooldown (an hour) has not passed: a restarted ebb must come back at 3 and
    # stay there, not drop to 0 (or restart from 0 and climb again).
    make_backlog(db, rows=0)
    rec2 = Recorder()
    second = _runtime(manifest, rec2, state)
    task = asyncio.create_task(second.run())
    try:
        await eventually(lambda: len(rec2.polls) >= 3, what="three polls after restart")
        assert {p.desired_replicas for p in rec2.polls} <= {3, 1, 2}
        assert all(p.desired_replicas > 0 for p in rec2.polls)
        assert rec2.polls[0].current_replicas == 3
        assert "KEDAScaleTargetDeactivated" not in rec2.reasons("svc")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_scaled_job_runs_one_local_job_per_unit_of_work(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    make_backlog(db, rows=3)
    # Each job deletes one row, like a consumer taking one message.
    consume = (
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=10); "
        "c.execute('DELETE FROM work WHERE id = (SELECT min(id) FROM work)'); c.commit()"
    )
    manifest = f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: consumer}}
spec:
  pollingInterval: 1
  maxReplicaCount: 10
  jobTargetRef:
    template:
      spec:
        containers:
          - name: consumer
            command: [{__import__("sys").executable!r}, "-c", {consume!r}, {str(db)!r}]
  triggers:
    - type: sqlite
      metadata:
        databasePath: {str(db)!r}
        query: SELECT count(*) FROM work
        targetQueryValue: "1"
"""
    rec = Recorder()
    runtime = _runtime(manifest, rec)
    task = asyncio.create_task(runtime.run())

    def remaining() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT count(*) FROM work").fetchone()[0])
        finally:
            conn.close()

    try:
        await eventually(lambda: remaining() == 0, what="all work consumed by jobs")
        runner = next(iter(runtime.runners.values()))
        await eventually(lambda: runner.running() == 0, what="jobs finished")
        assert runner.succeeded_total >= 3
        assert "KEDAJobsCreated" in rec.reasons("consumer")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("value", ["0", "soon"])
async def test_bad_idle_polling_annotation_is_reported_with_the_annotation_named(tmp_path: Path, value: str) -> None:
    db = tmp_path / "work.db"
    make_backlog(db)
    rec = Recorder()
    runtime = _runtime(scaled_group("idle", db, annotations=f'ebb.dev/idle-polling-interval: "{value}"'), rec)
    await runtime.start()
    try:
        assert any("ebb.dev/idle-polling-interval" in msg for _, msg in rec.problems)
        assert not runtime.loops
    finally:
        await runtime.stop()
