"""The local scale target: N copies of one worker command, supervised on this machine.

Each replica is a worker named `<group>-<index>` (indexes 0..n-1, so scaling down removes the highest
first). Workers are restarted with exponential backoff whenever they exit while still wanted, exit code 0
included: a process group is a long-running pool, like a Deployment's pods with restartPolicy Always.
Scaling down sends SIGTERM and, after the grace period, SIGKILL; that happens in the background, and the
terminating workers are neither counted as running nor restarted. A scale-up during termination starts the
new workers at once, so an index may briefly belong to a terminating worker and its running successor.

Restart delays carry +-20% jitter so that workers that crash together do not restart in lockstep.
Failures to start, crash loops (with the last output lines) are reported through `on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ebb.errors import TargetError
from ebb.targets._child import Child, describe_exit, log, start_error
from ebb.targets.base import ChildRecord, EventSink, OutputSink, write_stdout

WorkerState = Literal["starting", "running", "terminating", "backoff"]

#: How many exits `recent_exits()` remembers.
EXIT_HISTORY = 100
#: Consecutive quick exits (each shorter than the backoff reset time) that make a crash loop.
CRASH_LOOP_EXITS = 3
#: Restart delays are spread by this fraction either way.
JITTER = 0.2


def jittered(delay: float, jitter: float = JITTER) -> float:
    """`delay` +-`jitter` (a fraction), so that workers failing together spread their restarts."""
    if jitter <= 0:
        return delay
    return round(delay * (1.0 + random.uniform(-jitter, jitter)), 3)


def _tail_text(lines: Sequence[str]) -> str:
    return " | ".join(lines)


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    index: int
    state: WorkerState
    pid: int | None
    restarts: int
    #: Wall-clock time the current (or last) process started; None if none ever started.
    started_at: float | None
    #: Seconds until the next start attempt, while in backoff.
    restart_delay: float | None
    last_exit_code: int | None
    #: Why the last start attempt failed, if it did.
    error: str | None


@dataclass(frozen=True)
class WorkerExit:
    """One worker process that ended. `returncode` is negative when a signal ended it."""

    name: str
    pid: int
    returncode: int
    started_at: float
    exited_at: float
    #: True when ebb had to SIGKILL it because it outlived the grace period.
    killed: bool
    #: True when it ended on its own while still wanted (a crash, or a clean exit of a pool worker).
    unexpected: bool
    #: The backoff before its restart; None when it is not restarted.
    restart_delay: float | None


class _Worker:
    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.state: WorkerState = "starting"
        self.child: Child | None = None
        self.restarts = 0
        self.restart_delay: float | None = None
        self.last_exit_code: int | None = None
        self.error: TargetError | None = None
        self.stop = asyncio.Event()
        self.first_attempt = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        #: Quick exits in a row (reset by a run longer than the backoff reset time).
        self.quick_exits = 0
        #: The last reason this worker is not running, for `ebb status`.
        self.why: str | None = None
        self.failing_start = False

    def request_stop(self) -> None:
        self.stop.set()
        self.state = "terminating"
        if self.child is not None:
            self.child.terminate()

    def status(self) -> WorkerStatus:
        child = self.child
        running = child is not None and child.returncode is None
        return WorkerStatus(
            name=self.name,
            index=self.index,
            state=self.state,
            pid=child.pid if running and child is not None else None,
            restarts=self.restarts,
            started_at=child.started_at if child is not None else None,
            restart_delay=self.restart_delay if self.state == "backoff" else None,
            last_exit_code=self.last_exit_code,
            error=str(self.error) if self.error is not None else None,
        )


class ProcessGroupTarget:
    """Supervises replicas of one command; implements `ScaleTarget`."""

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
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        backoff_reset_after: float = 60.0,
        on_event: EventSink | None = None,
        extra_env: Mapping[str, str] | None = None,
        jitter: float = JITTER,
    ) -> None:
        if not command:
            raise TargetError(f"ProcessGroup {name}: command is empty")
        self.on_event = on_event
        self.jitter = jitter
        #: ebb's own variables for every worker (the run id that marks leftovers), under the group's env.
        self.extra_env = dict(extra_env or {})
        self.name = name
        self.argv = [*command, *args]
        self.env = dict(env or {})
        self.working_dir = working_dir
        self.termination_grace_period = termination_grace_period
        self.output: OutputSink = output or write_stdout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_reset_after = backoff_reset_after
        #: The most recent failure to start a worker, for the CLI and status; None once a start succeeds.
        self.last_error: TargetError | None = None
        self._desired = 0
        self._workers: dict[int, _Worker] = {}
        self._terminating: set[_Worker] = set()
        self._exits: deque[WorkerExit] = deque(maxlen=EXIT_HISTORY)
        self._closed = False
        #: More environment per replica, by index (the HTTP interceptor gives each replica its port).
        self.replica_env: Callable[[int], Mapping[str, str]] | None = None

    # --- ScaleTarget -------------------------------------------------------------------------------

    async def get_replicas(self) -> int:
        return self._desired

    async def set_replicas(self, n: int) -> None:
        """Converge to `n` workers. Waits for new workers' first start attempt, never for a termination."""
        if self._closed:
            raise TargetError(f"ProcessGroup {self.name}: closed")
        if n < 0:
            raise ValueError(f"replicas must be >= 0, got {n}")
        self._desired = n
        for index in sorted(self._workers, reverse=True):
            if index >= n:
                self._retire(self._workers.pop(index))
        started = []
        for index in range(n):
            if index not in self._workers:
                worker = _Worker(index, f"{self.name}-{index}")
                worker.task = asyncio.create_task(self._supervise(worker), name=f"ebb-worker-{worker.name}")
                self._workers[index] = worker
                started.append(worker.first_attempt.wait())
        if started:
            await asyncio.gather(*started)

    def ready_replicas(self) -> int:
        return sum(1 for w in self._workers.values() if w.state == "running")

    async def close(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after the grace period) and wait until all are gone."""
        self._closed = True
        self._desired = 0
        for index in sorted(self._workers, reverse=True):
            self._retire(self._workers.pop(index))
        tasks = [w.task for w in self._terminating if w.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- for the CLI and the resource scalers -----------------------------------------------------

    def status(self) -> list[WorkerStatus]:
        """Wanted workers by index, then those still terminating."""
        wanted = [self._workers[i].status() for i in sorted(self._workers)]
        leaving = sorted((w.status() for w in self._terminating), key=lambda s: s.index)
        return wanted + leaving

    def pids(self) -> list[int]:
        """Process ids of the running workers (not of terminating ones)."""
        return [w.child.pid for _, w in sorted(self._workers.items()) if w.state == "running" and w.child is not None]

    def recent_exits(self) -> list[WorkerExit]:
        """The last worker exits, oldest first."""
        return list(self._exits)

    def children(self) -> list[ChildRecord]:
        """Every live worker process, terminating ones included (for the state file)."""
        workers = [*self._workers.values(), *self._terminating]
        return [
            ChildRecord(w.child.pid, w.child.create_time)
            for w in workers
            if w.child is not None and w.child.returncode is None
        ]

    def kill_all(self) -> None:
        """SIGKILL every worker's process group now, terminating ones included (a second Ctrl-C)."""
        for worker in [*self._workers.values(), *self._terminating]:
            if worker.child is not None:
                worker.child.kill()

    def not_ready_reason(self) -> str | None:
        """Why fewer workers run than wanted, in a few words; None when all wanted workers run."""
        waiting = [w for w in self._workers.values() if w.state != "running"]
        if not waiting:
            return None
        first = min(waiting, key=lambda w: w.index)
        if first.why is not None:
            more = f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else ""
            return f"{first.name}: {first.why}{more}"
        return f"{len(waiting)} worker(s) {first.state}"

    # --- internals --------------------------------------------------------------------------------

    def _retire(self, worker: _Worker) -> None:
        self._terminating.add(worker)
        worker.request_stop()

    def _say(self, worker: _Worker, message: str) -> None:
        try:
            self.output(worker.name, f"ebb: {message}")
        except Exception:
            # The sink is the caller's; its failure must not stop supervision.
            log.exception("output sink failed")

    def _worker_env(self, worker: _Worker) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            **self.extra_env,
            "EBB_REPLICA_INDEX": str(worker.index),
            "EBB_PROCESS_GROUP": self.name,
            **(self.replica_env(worker.index) if self.replica_env is not None else {}),
        }

    async def _supervise(self, worker: _Worker) -> None:
        delay = self.backoff_initial
        try:
            while not worker.stop.is_set():
                child = await self._start(worker)
                if child is not None:
                    code, unexpected = await self._watch(worker, child)
                    if not unexpected:
                        self._record_exit(worker, child, code, None)
                        how = describe_exit(code)
                        if child.killed:
                            grace = self.termination_grace_period
                            how = f"did not exit within the {grace:g}s grace period; {how}"
                        self._say(worker, how)
                        return
                    if time.monotonic() - child.started_monotonic >= self.backoff_reset_after:
                        delay = self.backoff_initial
                        worker.quick_exits = 0
                    wait = jittered(delay, self.jitter)
                    self._record_exit(worker, child, code, wait)
                    self._say(worker, f"{describe_exit(code)}; restarting in {wait:g}s")
                    self._crashed(worker, child, code, wait)
                elif worker.stop.is_set():
                    return
                else:
                    wait = jittered(delay, self.jitter)
                    self._say(worker, f"{worker.error}; retrying in {wait:g}s")
                    worker.why = f"cannot start: {worker.error}"
                    if not worker.failing_start:  # once per streak of failed starts
                        worker.failing_start = True
                        self._event("FailedStart", f"{worker.error}; retrying with backoff", "Warning")
                worker.state = "backoff"
                worker.restart_delay = wait
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await worker.stop.wait()
                if worker.stop.is_set():
                    return
                worker.restarts += 1
                delay = min(delay * 2, self.backoff_max)
        except asyncio.CancelledError:
            if worker.child is not None:
                worker.child.kill_now()
            raise
        finally:
            worker.first_attempt.set()
            self._terminating.discard(worker)

    async def _start(self, worker: _Worker) -> Child | None:
        """One start attempt; a failure is recorded on the worker and the target, never raised."""
        worker.state = "starting"
        try:
            child = await Child.spawn(
                self.argv,
                env=self._worker_env(worker),
                cwd=self.working_dir,
                on_line=lambda line: self._forward(worker, line),
            )
        except (OSError, ValueError) as exc:
            worker.error = self.last_error = start_error(
                f"ProcessGroup {self.name}: worker {worker.name}", self.argv, self.working_dir, exc
            )
            return None
        finally:
            worker.first_attempt.set()
        worker.child = child
        worker.error = self.last_error = None
        worker.why = None
        worker.failing_start = False
        # A scale-down may have arrived while the spawn was under way.
        worker.state = "terminating" if worker.stop.is_set() else "running"
        return child

    async def _watch(self, worker: _Worker, child: Child) -> tuple[int, bool]:
        """Wait until the child exits or the worker is stopped; returns (exit code, exited on its own)."""
        exited = asyncio.ensure_future(child.wait())
        stopping = asyncio.ensure_future(worker.stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            exited.cancel()
        unexpected = not worker.stop.is_set()
        code = await child.wait() if unexpected else await child.stop(self.termination_grace_period)
        await child.reap()
        worker.last_exit_code = code
        return code, unexpected

    def _record_exit(self, worker: _Worker, child: Child, code: int, restart_delay: float | None) -> None:
        self._exits.append(
            WorkerExit(
                name=worker.name,
                pid=child.pid,
                returncode=code,
                started_at=child.started_at,
                exited_at=time.time(),
                killed=child.killed,
                unexpected=restart_delay is not None,
                restart_delay=restart_delay,
            )
        )

    def _forward(self, worker: _Worker, line: str) -> None:
        self.output(worker.name, line)

    def _event(self, reason: str, message: str, type_: Literal["Normal", "Warning"] = "Normal") -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(reason, message, type_)
        except Exception:
            log.exception("event sink failed")

    def _crashed(self, worker: _Worker, child: Child, code: int, wait: float) -> None:
        """Report an unexpected exit: the first of a streak, then once when it becomes a crash loop."""
        worker.quick_exits += 1
        tail = child.output_tail
        last = f"; last output: {_tail_text(tail)}" if tail else ""
        worker.why = f"{describe_exit(code)}, restarting in {wait:g}s{last}"
        where = f"ProcessGroup {self.name}: worker {worker.name}"
        if worker.quick_exits == 1:
            self._event("WorkerExited", f"{where} {describe_exit(code)}; restarting in {wait:g}s{last}", "Warning")
        elif worker.quick_exits == CRASH_LOOP_EXITS:
            worker.why = f"crash loop ({worker.quick_exits} exits), {describe_exit(code)}{last}"
            self._event(
                "CrashLoopBackOff",
                f"{where} exited {worker.quick_exits} times in a row, last {describe_exit(code)}; "
                f"restarting with backoff{last}",
                "Warning",
            )
        elif worker.quick_exits > CRASH_LOOP_EXITS:
            worker.why = f"crash loop ({worker.quick_exits} exits), {describe_exit(code)}{last}"
