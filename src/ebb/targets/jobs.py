"""The local ScaledJob target: one process per job, run to completion once, never restarted.

Jobs are named `<scaledjob>-<n>` with a counter (Kubernetes uses generateName `<scaledjob>-` and a random
suffix). Finished jobs are kept in a history bounded by successfulJobsHistoryLimit/failedJobsHistoryLimit,
the oldest dropped first, as KEDA's cleanup deletes the oldest by completion time. Jobs stopped by `close()`
are not recorded, as deleted Kubernetes Jobs leave no history.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ebb.errors import TargetError
from ebb.targets._child import Child, describe_exit, log, start_error
from ebb.targets.base import OutputSink, write_stdout


@dataclass(frozen=True)
class JobRecord:
    """A finished job. `returncode` is None when the job could not be started (see `error`)."""

    name: str
    pid: int | None
    returncode: int | None
    started_at: float
    finished_at: float
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0


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
    ) -> None:
        if not command:
            raise TargetError(f"ScaledJob {name}: command is empty")
        self.name = name
        self.argv = [*command, *args]
        self.env = dict(env or {})
        self.working_dir = working_dir
        self.termination_grace_period = termination_grace_period
        self.output: OutputSink = output or write_stdout
        #: The most recent failure to start a job; None once a start succeeds.
        self.last_error: TargetError | None = None
        self.succeeded_total = 0
        self.failed_total = 0
        self._succeeded: deque[JobRecord] = deque(maxlen=max(successful_jobs_history_limit, 0))
        self._failed: deque[JobRecord] = deque(maxlen=max(failed_jobs_history_limit, 0))
        self._running: dict[str, Child] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counter = 0
        self._closed = False

    async def start(self, n: int) -> None:
        """Start `n` jobs. A job that cannot start is recorded as failed and reported, not raised."""
        if self._closed:
            raise TargetError(f"ScaledJob {self.name}: closed")
        for _ in range(n):
            self._counter += 1
            job_name = f"{self.name}-{self._counter}"
            started = time.time()
            try:
                child = await Child.spawn(
                    self.argv,
                    env={**os.environ, **self.env, "EBB_SCALED_JOB": self.name, "EBB_JOB_NAME": job_name},
                    cwd=self.working_dir,
                    on_line=self._line_writer(job_name),
                )
            except (OSError, ValueError) as exc:
                owner = f"ScaledJob {self.name}: job {job_name}"
                self.last_error = start_error(owner, self.argv, self.working_dir, exc)
                self._say(job_name, str(self.last_error))
                self._finish(JobRecord(job_name, None, None, started, time.time(), str(self.last_error)))
                continue
            self.last_error = None
            self._running[job_name] = child
            task = asyncio.create_task(self._follow(job_name, child), name=f"ebb-job-{job_name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def running(self) -> int:
        """Jobs started and not finished."""
        return len(self._running)

    def pending(self) -> int:
        """Always 0: a local job runs as soon as it is spawned, there is no scheduling wait as for pods."""
        return 0

    def succeeded(self) -> list[JobRecord]:
        """Recent successful jobs, oldest first, at most successfulJobsHistoryLimit."""
        return list(self._succeeded)

    def failed(self) -> list[JobRecord]:
        """Recent failed jobs, oldest first, at most failedJobsHistoryLimit."""
        return list(self._failed)

    def pids(self) -> list[int]:
        return [child.pid for child in self._running.values()]

    async def close(self) -> None:
        """Stop running jobs (SIGTERM, SIGKILL after the grace period) and wait until they are gone."""
        self._closed = True
        children = list(self._running.values())
        for child in children:
            child.terminate()
        grace = self.termination_grace_period
        await asyncio.gather(*(c.stop(grace) for c in children), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, job_name: str, child: Child) -> None:
        try:
            code = await child.wait()
            self._running.pop(job_name, None)
            await child.reap()
        except asyncio.CancelledError:
            child.kill_now()
            raise
        finally:
            self._running.pop(job_name, None)
        how = describe_exit(code)
        if child.killed:
            how = f"did not exit within the {self.termination_grace_period:g}s grace period; {how}"
        self._say(job_name, how)
        if child.term_sent_at is not None or child.killed:
            return
        self._finish(JobRecord(job_name, child.pid, code, child.started_at, time.time()))

    def _finish(self, record: JobRecord) -> None:
        if record.succeeded:
            self.succeeded_total += 1
            self._succeeded.append(record)
        else:
            self.failed_total += 1
            self._failed.append(record)

    def _line_writer(self, job_name: str) -> Callable[[str], None]:
        return lambda line: self.output(job_name, line)

    def _say(self, job_name: str, message: str) -> None:
        try:
            self.output(job_name, f"ebb: {message}")
        except Exception:
            log.exception("output sink failed")
