"""Failures reach the event log, not only the console: failed starts, crash loops, failed jobs, missing replicas."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from ebb.runtime.job_template import local_job_settings
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from ebb.targets.process import ProcessGroupTarget

from ._support import Recorder, eventually, make_backlog

PY = sys.executable


def _runtime(manifest: str, rec: Recorder, **options: object) -> LocalRuntime:
    loaded = load_text(manifest)
    assert not loaded.errors, loaded.errors
    opts = RuntimeOptions(state_path=None, output=lambda n, line: None, **options)  # type: ignore[arg-type]
    return LocalRuntime(loaded, rec, opts)


def _scaled(name: str, command: str, db: Path, replicas_for: int = 2) -> str:
    return f"""
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {{name: {name}}}
spec:
  command: {command}
  terminationGracePeriodSeconds: 1
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: {name}}}
  pollingInterval: 1
  minReplicaCount: {replicas_for}
  maxReplicaCount: {replicas_for}
  triggers:
    - type: sqlite
      metadata: {{databasePath: {str(db)!r}, query: SELECT count(*) FROM work, targetQueryValue: "1"}}
"""


async def _running(runtime: LocalRuntime) -> asyncio.Task[None]:
    return asyncio.create_task(runtime.run())


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_missing_binary_is_an_event_and_the_reason_in_status(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_backlog(db)
    rec = Recorder()
    runtime = _runtime(_scaled("mailer", '["/nonexistent/mailer"]', db), rec, backoff=(0.05, 0.2, 60.0))
    task = await _running(runtime)
    try:
        await eventually(lambda: "FailedStart" in rec.reasons("mailer"), what="a FailedStart event")
        await eventually(lambda: any(p.reason for p in rec.polls), what="a poll with a reason")
    finally:
        await _stop(task)
    failed = [e for ref, e in rec.events if e.reason == "FailedStart"]
    assert failed[0].type == "Warning"
    assert "/nonexistent/mailer" in failed[0].message and "No such file" in failed[0].message
    # once per worker and streak, not once per retry
    assert len(failed) == 2
    poll = next(p for p in rec.polls if p.reason)
    assert (poll.desired_replicas, poll.ready_replicas) == (2, 0)
    assert "cannot start" in (poll.reason or "")


async def test_a_crash_loop_is_an_event_with_the_last_output_lines(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_backlog(db)
    script = "import sys; print('connecting', file=sys.stderr); sys.exit('fatal: no config at /etc/mailer')"
    rec = Recorder()
    runtime = _runtime(_scaled("mailer", f"[{PY!r}, -c, {script!r}]", db, 1), rec, backoff=(0.05, 0.2, 60.0))
    task = await _running(runtime)
    try:
        await eventually(lambda: "CrashLoopBackOff" in rec.reasons("mailer"), what="a CrashLoopBackOff event")
    finally:
        await _stop(task)
    loop = next(e for ref, e in rec.events if e.reason == "CrashLoopBackOff")
    assert loop.type == "Warning"
    assert "exited with code 1" in loop.message
    assert "connecting | fatal: no config at /etc/mailer" in loop.message
    assert rec.reasons("mailer").count("WorkerExited") == 1  # the first exit of the streak, then the loop


async def test_missing_replicas_become_one_replicas_unavailable_event(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_backlog(db)
    rec = Recorder()
    runtime = _runtime(_scaled("mailer", '["/nonexistent/mailer"]', db, 1), rec, backoff=(0.05, 0.2, 60.0))
    task = await _running(runtime)
    try:
        await eventually(lambda: bool(runtime.loops), what="the loop")
        next(iter(runtime.loops.values())).availability.after = 1.5
        await eventually(lambda: "ReplicasUnavailable" in rec.reasons("mailer"), what="ReplicasUnavailable")
        await asyncio.sleep(1.5)
    finally:
        await _stop(task)
    unavailable = [e for ref, e in rec.events if e.reason == "ReplicasUnavailable"]
    assert len(unavailable) == 1
    assert "0 of 1 desired replica(s)" in unavailable[0].message and "cannot start" in unavailable[0].message


def test_restarts_of_workers_failing_together_are_spread() -> None:
    async def main() -> list[float]:
        target = ProcessGroupTarget("w", [PY, "-c", "raise SystemExit(1)"], output=lambda n, line: None)
        try:
            await target.set_replicas(8)
            await eventually(lambda: len(target.recent_exits()) >= 8, what="eight exits")
            return [e.restart_delay or 0.0 for e in target.recent_exits()[:8]]
        finally:
            await target.close()

    delays = asyncio.run(main())
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1  # without jitter every one is exactly 1.0


def _job(extra_job: str = "", script: str = "raise SystemExit(3)", pod: str = "") -> str:
    return f"""
apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {{name: nightly}}
spec:
  pollingInterval: 1
  maxReplicaCount: 1
  jobTargetRef:
{extra_job}
    template:
      spec:
{pod}
        containers:
          - name: task
            command: [{PY!r}, "-c", {script!r}]
  triggers:
    - type: cron
      metadata: {{timezone: UTC, start: "0 0 * * *", end: "59 23 * * *", desiredReplicas: "1"}}
"""


async def test_a_failing_job_is_retried_up_to_backoff_limit_then_an_event() -> None:
    rec = Recorder()
    runtime = _runtime(_job("    backoffLimit: 2", "import sys; sys.exit('bad row 7')"), rec, job_backoff=(0.05, 0.1))
    task = await _running(runtime)
    try:
        await eventually(lambda: "BackoffLimitExceeded" in rec.reasons("nightly"), what="BackoffLimitExceeded")
    finally:
        await _stop(task)
    runner = next(iter(runtime.runners.values()))
    first = runner.failed()[0]
    assert (first.attempts, first.reason) == (3, "BackoffLimitExceeded")
    event = next(e for ref, e in rec.events if e.reason == "BackoffLimitExceeded")
    assert "more than backoffLimit 2" in event.message and "bad row 7" in event.message


async def test_a_job_past_active_deadline_seconds_is_stopped_and_failed() -> None:
    rec = Recorder()
    runtime = _runtime(_job("    activeDeadlineSeconds: 1", "import time; time.sleep(60)"), rec)
    task = await _running(runtime)
    try:
        await eventually(lambda: "DeadlineExceeded" in rec.reasons("nightly"), what="DeadlineExceeded")
    finally:
        await _stop(task)
    runner = next(iter(runtime.runners.values()))
    record = runner.failed()[0]
    assert record.reason == "DeadlineExceeded" and record.finished_at - record.started_at < 10


@pytest.mark.parametrize(
    ("extra_job", "pod", "field"),
    [
        ("    parallelism: 3", "", "spec.jobTargetRef.parallelism"),
        ("    completions: 5", "", "spec.jobTargetRef.completions"),
        ("    completionMode: Indexed", "", "spec.jobTargetRef.completionMode"),
        ("    podFailurePolicy: {rules: []}", "", "spec.jobTargetRef.podFailurePolicy"),
        ("    suspend: true", "", "spec.jobTargetRef.suspend"),
        ("    backofLimit: 2", "", "spec.jobTargetRef.backofLimit"),
        (
            "",
            "        initContainers: [{name: init, image: busybox}]",
            "spec.jobTargetRef.template.spec.initContainers",
        ),
    ],
)
def test_job_template_fields_a_local_run_cannot_honour_are_refused_by_name(
    extra_job: str, pod: str, field: str
) -> None:
    loaded = load_text(_job(extra_job, pod=pod))
    assert not loaded.errors, loaded.errors
    sj = loaded.resources.scaled_jobs()[0]
    with pytest.raises(Exception, match=field.replace(".", r"\.")):
        local_job_settings(sj)


def test_honoured_job_fields_and_the_example_file() -> None:
    loaded = load_text(_job("    backoffLimit: 2\n    activeDeadlineSeconds: 300\n    ttlSecondsAfterFinished: 60"))
    settings = local_job_settings(loaded.resources.scaled_jobs()[0])
    assert (settings.backoff_limit, settings.active_deadline_seconds, settings.ttl_seconds_after_finished) == (
        2,
        300.0,
        60.0,
    )
    default = local_job_settings(load_text(_job()).resources.scaled_jobs()[0])
    assert default.backoff_limit == 6  # Kubernetes' default
    example = Path(__file__).resolve().parents[2] / "examples" / "postgres-jobs.yaml"
    from ebb.spec.loader import load_files

    sj = load_files([example]).resources.scaled_jobs()[0]
    assert local_job_settings(sj).active_deadline_seconds == 300.0


async def test_a_refused_job_field_is_a_problem_of_that_object_only() -> None:
    rec = Recorder()
    runtime = _runtime(_job("    parallelism: 3"), rec)
    await runtime.start()
    await runtime.stop()
    assert any("spec.jobTargetRef.parallelism" in message for ref, message in rec.problems)
    assert runtime.runners == {}
