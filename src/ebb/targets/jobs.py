"""The local ScaledJob target: one process per job, run to completion once, never restarted.

Jobs are named `<scaledjob>-<n>` with a counter (Kubernetes uses generateName `<scaledjob>-` and a random
suffix). Finished jobs are kept in a history bounded by successfulJobsHistoryLimit/failedJobsHistoryLimit,
the oldest dropped first, as KEDA's cleanup deletes the oldest by completion time. Jobs stopped by `close()`
are not recorded, as deleted Kubernetes Jobs leave no history.

The Job template's fields behave as a Kubernetes Job's would: a failed attempt is retried with
exponential backoff until `backoffLimit` failures are exceeded (BackoffLimitExceeded); a job running longer
than `activeDeadlineSeconds` over all its attempts is stopped and failed (DeadlineExceeded); a finished
job leaves the history `ttlSecondsAfterFinished` seconds after it finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ebb.errors import TargetError
from ebb.targets._child import Child, describe_exit, log, start_error
from ebb.targets.base import ChildRecord, EventSink, OutputSink, write_stdout
from ebb.targets.process import jittered


@dataclass(frozen=True)
class JobRecord:
    """A finished job. `returncode` is None when the job could not be started (see `error`)."""

    name: str
    pid: int | None
    returncode: int | None
    started_at: float
    finished_at: float
    error: str | None = None
    #: Why the job failed, as Kubernetes says it: BackoffLimitExceeded or DeadlineExceeded.
    reason: str | None = None
    #: How many attempts it took (1 + retries).
    attempts: int = 1

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0


class _Job:
    """One job across its attempts (Kubernetes' Job with its pods)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started_at = time.time()
        self.started_monotonic = time.monotonic()
        self.child: Child | None = None
        self.failures = 0
        self.attempts = 0
        self.last_failure: str | None = None
        self.deadline_exceeded = False


class JobRunner:
    """Starts job processes on demand and tracks them until they finish."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        working_dir: str | os.PathLike[str] | None = None,
        termination_grace_period: float = 30.0,
        output: OutputSink | None = None,
        *,
        successful_jobs_history_limit: int = 100,
        failed_jobs_history_limit: int = 100,
        backoff_limit: int = 0,
        active_deadline_seconds: float | None = None,
        ttl_seconds_after_finished: float | None = None,
        retry_backoff: tuple[float, float] = (10.0, 360.0),
        on_event: EventSink | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if not command:
            raise TargetError(f"ScaledJob {name}: command is empty")
        self.name = name
        self.argv = [*command, *args]
        self.env = dict(env or {})
        self.extra_env = dict(extra_env or {})
        self.working_dir = working_dir
        self.termination_grace_period = termination_grace_period
        self.output: OutputSink = output or write_stdout
        self.backoff_limit = backoff_limit
        self.active_deadline_seconds = active_deadline_seconds
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.retry_backoff = retry_backoff
        self.on_event = on_event
        #: The most recent failure to start a job; None once a start succeeds.
        self.last_error: TargetError | None = None
        self.succeeded_total = 0
        self.failed_total = 0
        self._succeeded: deque[JobRecord] = deque(maxlen=max(successful_jobs_history_limit, 0))
        self._failed: deque[JobRecord] = deque(maxlen=max(failed_jobs_history_limit, 0))
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = 0
        self._closed = False
        self._stopping = asyncio.Event()

    async def start(self, n: int) -> None:
        """Start `n` jobs. A job that cannot start is retried up to backoffLimit, then recorded as failed."""
        if self._closed:
            raise TargetError(f"ScaledJob {self.name}: closed")
        for _ in range(n):
            self._counter += 1
            job = _Job(f"{self.name}-{self._counter}")
            self._jobs[job.name] = job
            if not await self._attempt(job) and job.failures > self.backoff_limit:
                self._jobs.pop(job.name, None)
                self._give_up(job, "BackoffLimitExceeded")
                continue
            task = asyncio.create_task(self._follow(job), name=f"ebb-job-{job.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def running(self) -> int:
        """Jobs started and not finished (a job waiting to retry a failed attempt included)."""
        return len(self._jobs)

    def pending(self) -> int:
        """Always 0: a local job runs as soon as it is spawned, there is no scheduling wait as for pods."""
        return 0

    def succeeded(self) -> list[JobRecord]:
        """Recent successful jobs, oldest first, at most successfulJobsHistoryLimit (and within the TTL)."""
        self._expire()
        return list(self._succeeded)

    def failed(self) -> list[JobRecord]:
        """Recent failed jobs, oldest first, at most failedJobsHistoryLimit (and within the TTL)."""
        self._expire()
        return list(self._failed)

    def pids(self) -> list[int]:
        return [job.child.pid for job in self._jobs.values() if job.child is not None and job.child.returncode is None]

    def children(self) -> list[ChildRecord]:
        """Every live job process (for the state file)."""
        return [
            ChildRecord(job.child.pid, job.child.create_time)
            for job in self._jobs.values()
            if job.child is not None and job.child.returncode is None
        ]

    def kill_all(self) -> None:
        """SIGKILL every job's process group now (a second Ctrl-C)."""
        for job in self._jobs.values():
            if job.child is not None:
                job.child.kill()

    def not_ready_reason(self) -> str | None:
        """Why a job is not running right now (waiting to retry), or None."""
        waiting = [j for j in self._jobs.values() if j.child is None or j.child.returncode is not None]
        if not waiting:
            return None
        job = waiting[0]
        return f"{job.name}: retrying after {job.last_failure}"

    async def close(self) -> None:
        """Stop running jobs (SIGTERM, SIGKILL after the grace period) and wait until they are gone."""
        self._closed = True
        self._stopping.set()
        children = [j.child for j in self._jobs.values() if j.child is not None]
        for child in children:
            child.terminate()
        grace = self.termination_grace_period
        await asyncio.gather(*(c.stop(grace) for c in children), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- internals --------------------------------------------------------------------------------

    def _remaining(self, job: _Job) -> float | None:
        if self.active_deadline_seconds is None:
            return None
        return self.active_deadline_seconds - (time.monotonic() - job.started_monotonic)

    async def _attempt(self, job: _Job) -> bool:
        """Start one attempt; a failure to start counts as a failed attempt."""
        job.attempts += 1
        job.child = None
        try:
            job.child = await Child.spawn(
                self.argv,
                env={
                    **os.environ,
                    **self.extra_env,
                    **self.env,
                    "EBB_SCALED_JOB": self.name,
                    "EBB_JOB_NAME": job.name,
                },
                cwd=self.working_dir,
                on_line=self._line_writer(job.name),
            )
        except (OSError, ValueError) as exc:
            owner = f"ScaledJob {self.name}: job {job.name}"
            self.last_error = start_error(owner, self.argv, self.working_dir, exc)
            self._say(job.name, str(self.last_error))
            job.failures += 1
            job.last_failure = str(self.last_error)
            return False
        self.last_error = None
        return True

    async def _wait(self, job: _Job, child: Child) -> int:
        """The attempt's exit code; past activeDeadlineSeconds the attempt is stopped (grace, then SIGKILL)."""
        remaining = self._remaining(job)
        if remaining is not None:
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    return await child.wait()
            except TimeoutError:
                job.deadline_exceeded = True
                self._say(job.name, f"active for longer than activeDeadlineSeconds ({self.active_deadline_seconds:g}s)")
                return await child.stop(self.termination_grace_period)
        return await child.wait()

    async def _follow(self, job: _Job) -> None:
        try:
            while True:
                child = job.child
                if child is not None:
                    code = await self._wait(job, child)
                    await child.reap()
                    how = describe_exit(code)
                    if child.killed:
                        how = f"did not exit within the {self.termination_grace_period:g}s grace period; {how}"
                    self._say(job.name, how)
                    if (child.term_sent_at is not None or child.killed) and not job.deadline_exceeded:
                        return  # stopped by close(): no history, as for a deleted Job
                    if job.deadline_exceeded:
                        job.last_failure = f"{describe_exit(code)} after activeDeadlineSeconds"
                        self._give_up(job, "DeadlineExceeded", child)
                        return
                    if code == 0:
                        self._finish(
                            JobRecord(job.name, child.pid, code, job.started_at, time.time(), attempts=job.attempts)
                        )
                        return
                    tail = child.output_tail
                    job.failures += 1
                    job.last_failure = describe_exit(code) + (f"; last output: {' | '.join(tail)}" if tail else "")
                if job.failures > self.backoff_limit:
                    self._give_up(job, "BackoffLimitExceeded", child)
                    return
                initial, cap = self.retry_backoff
                delay = jittered(min(initial * 2 ** (job.failures - 1), cap))
                remaining = self._remaining(job)
                if remaining is not None and remaining <= delay:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(remaining, 0.0)):
                            await self._stopping.wait()
                    if self._closed:
                        return
                    job.deadline_exceeded = True
                    self._give_up(job, "DeadlineExceeded", child)
                    return
                self._say(job.name, f"attempt {job.attempts} failed; retrying in {delay:g}s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                if self._closed:
                    return
                await self._attempt(job)
        except asyncio.CancelledError:
            if job.child is not None:
                job.child.kill_now()
            raise
        finally:
            self._jobs.pop(job.name, None)

    def _give_up(self, job: _Job, reason: str, child: Child | None = None) -> None:
        if reason == "DeadlineExceeded":
            why = f"was active longer than activeDeadlineSeconds ({self.active_deadline_seconds:g}s)"
        else:
            why = f"failed {job.failures} time(s), more than backoffLimit {self.backoff_limit}"
        message = f"ScaledJob {self.name}: job {job.name} {why}; last: {job.last_failure}"
        record = JobRecord(
            job.name,
            child.pid if child is not None else None,
            child.returncode if child is not None else None,
            job.started_at,
            time.time(),
            error=job.last_failure,
            reason=reason,
            attempts=job.attempts,
        )
        if record.returncode == 0:  # a deadline stop that exited cleanly is still a failed job
            record = JobRecord(
                record.name,
                record.pid,
                -1,
                record.started_at,
                record.finished_at,
                record.error,
                reason,
                record.attempts,
            )
        self._finish(record)
        if self.on_event is not None:
            try:
                self.on_event(reason, message, "Warning")
            except Exception:
                log.exception("event sink failed")

    def _finish(self, record: JobRecord) -> None:
        if record.succeeded:
            self.succeeded_total += 1
            self._succeeded.append(record)
        else:
            self.failed_total += 1
            self._failed.append(record)

    def _expire(self) -> None:
        ttl = self.ttl_seconds_after_finished
        if ttl is None:
            return
        cutoff = time.time() - ttl
        for history in (self._succeeded, self._failed):
            while history and history[0].finished_at <= cutoff:
                history.popleft()

    def _line_writer(self, job_name: str) -> Callable[[str], None]:
        return lambda line: self.output(job_name, line)

    def _say(self, job_name: str, message: str) -> None:
        try:
            self.output(job_name, f"ebb: {message}")
        except Exception:
            log.exception("output sink failed")
