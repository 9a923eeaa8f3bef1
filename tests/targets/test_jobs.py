"""JobRunner (local ScaledJob) against real job processes."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ebb.errors import TargetError
from ebb.targets.jobs import JobRunner
from tests.targets._support import PY, Recorder, alive, gone, wait_until

MakeRunner = Callable[..., JobRunner]

# Even-numbered jobs succeed, odd ones fail; the number comes from the job's own name.
EXIT_BY_PARITY = "import os, sys; sys.exit(int(os.environ['EBB_JOB_NAME'].rsplit('-', 1)[1]) % 2)"


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def runner(rec: Recorder) -> AsyncIterator[MakeRunner]:
    made: list[JobRunner] = []

    def make(script: str, *, name: str = "job", grace: float = 2.0, **kwargs: Any) -> JobRunner:
        kwargs.setdefault("output", rec)
        jobs = JobRunner(name, PY, [script], termination_grace_period=grace, **kwargs)
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:
        await jobs.close()


async def test_jobs_run_once_to_completion_and_are_counted(runner: MakeRunner, rec: Recorder) -> None:
    # Each job waits for SIGUSR1, then ends with its parity as exit code.
    script = (
        "import os, signal, sys, time; e = os.environ; n = int(e['EBB_JOB_NAME'].rsplit('-', 1)[1]); "
        "signal.signal(signal.SIGUSR1, lambda *_: sys.exit(n % 2)); "
        "print(e['EBB_JOB_NAME'], e['EBB_SCALED_JOB'], e['EXTRA']); time.sleep(60)"
    )
    jobs = runner(script, name="report", env={"EXTRA": "x"})
    await jobs.start(3)
    assert jobs.running() == 3
    assert jobs.pending() == 0
    await wait_until(lambda: all(rec.of(f"report-{n}") for n in (1, 2, 3)), "all jobs to start")
    assert [rec.of(f"report-{n}")[0] for n in (1, 2, 3)] == [f"report-{n} report x" for n in (1, 2, 3)]
    pids = jobs.pids()
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    assert jobs.succeeded() == [] and jobs.failed() == []

    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    await wait_until(lambda: jobs.running() == 0, "all jobs to finish")
    assert [(r.name, r.returncode, r.succeeded) for r in jobs.succeeded()] == [("report-2", 0, True)]
    assert sorted((r.name, r.returncode) for r in jobs.failed()) == [("report-1", 1), ("report-3", 1)]
    assert (jobs.succeeded_total, jobs.failed_total) == (1, 2)
    assert all(gone(pid) for pid in pids)
    assert rec.of("report-3")[-1] == "ebb: exited with code 1"
    assert jobs.pids() == []


@pytest.mark.parametrize(
    ("successful_limit", "failed_limit", "kept_succeeded", "kept_failed"),
    [
        (2, 1, ["hist-4", "hist-6"], ["hist-5"]),
        (100, 100, ["hist-2", "hist-4", "hist-6"], ["hist-1", "hist-3", "hist-5"]),
        (0, 0, [], []),
    ],
)
async def test_history_keeps_the_newest_finished_jobs_up_to_the_limits(
    runner: MakeRunner,
    successful_limit: int,
    failed_limit: int,
    kept_succeeded: list[str],
    kept_failed: list[str],
) -> None:
    jobs = runner(
        EXIT_BY_PARITY,
        name="hist",
        successful_jobs_history_limit=successful_limit,
        failed_jobs_history_limit=failed_limit,
    )
    for _ in range(6):
        # one at a time, so that completion order (which decides what is dropped) is known
        await jobs.start(1)
        await wait_until(lambda: jobs.running() == 0, "the job to finish")
    assert [r.name for r in jobs.succeeded()] == kept_succeeded
    assert [r.name for r in jobs.failed()] == kept_failed
    assert (jobs.succeeded_total, jobs.failed_total) == (3, 3)


async def test_a_job_that_cannot_start_is_counted_failed_and_reported(rec: Recorder) -> None:
    jobs = JobRunner("nightly", ["/nonexistent/ebb-job"], ["--all"], output=rec)
    await jobs.start(2)
    assert jobs.running() == 0
    assert jobs.failed_total == 2
    assert isinstance(jobs.last_error, TargetError)
    assert "ScaledJob nightly" in str(jobs.last_error)
    assert "/nonexistent/ebb-job --all" in str(jobs.last_error)
    assert [(r.name, r.returncode) for r in jobs.failed()] == [("nightly-1", None), ("nightly-2", None)]
    assert all(r.error is not None and "No such file or directory" in r.error for r in jobs.failed())
    assert rec.of("nightly-1")[0].startswith("ebb: ScaledJob nightly: job nightly-1: cannot start")
    await jobs.close()


async def test_close_stops_running_jobs_with_the_grace_period(runner: MakeRunner, rec: Recorder) -> None:
    # job-1 ignores SIGTERM; job-2 finishes its work when asked to stop.
    script = """
import os, signal, sys, time
if os.environ['EBB_JOB_NAME'].endswith('-1'):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def finish(signum, frame):
        time.sleep(0.2)
        print('finished job')
        sys.exit(0)
    signal.signal(signal.SIGTERM, finish)
print('ready')
time.sleep(60)
"""
    jobs = runner(script, grace=0.5)
    await jobs.start(2)
    await wait_until(lambda: rec.of("job-1") == ["ready"] and rec.of("job-2") == ["ready"], "both jobs ready")
    pids = jobs.pids()

    await jobs.close()
    assert all(gone(pid) for pid in pids)
    assert jobs.running() == 0
    assert rec.of("job-1")[-1] == "ebb: did not exit within the 0.5s grace period; killed by SIGKILL"
    assert rec.of("job-2")[-2:] == ["finished job", "ebb: exited with code 0"]
    # jobs ebb stopped leave no history, as deleted Kubernetes Jobs do not
    assert jobs.succeeded() == [] and jobs.failed() == []
    with pytest.raises(TargetError, match="ScaledJob job: closed"):
        await jobs.start(1)


def test_an_empty_command_is_rejected() -> None:
    with pytest.raises(TargetError, match="ScaledJob j: command is empty"):
        JobRunner("j", [])
