"""The local scale target: N copies of one worker command, supervised on this machine.

Each replica is a worker named `<group>-<index>` (indexes 0..n-1, so scaling down removes the highest
first). Workers are restarted with exponential backoff whenever they exit while still wanted, exit code 0
included: a process group is a long-running pool, like a Deployment's pods with restartPolicy Always.
Scaling down sends SIGTERM and, after the grace period, SIGKILL; that happens in the background, and the
terminating workers are neither counted as running nor restarted. A scale-up during termination starts the
new workers at once, so an index may briefly belong to a terminating worker and its running successor.

Restart delays carry +-20% jitter so that workers that crash together do not restart in lockstep.
Failures to start, crash loops (with the last output lines) are reported through `on_event`.

With a readinessProbe (tcpSocket or httpGet, Kubernetes' timings and thresholds) a worker counts as ready
only once its probe succeeds. With a busyProbe, scale-in asks every worker whether it is busy and stops the
idle ones first; a busy one chosen for removal is *draining*: it no longer counts as capacity, it is signalled
once its probe says idle (or after maxDrainSeconds), and a scale-out in the meantime takes it back instead of
starting a new worker. Indexes then need not stay contiguous: a new worker takes the lowest free index.
With `exitWhenIdle`, the highest indexes go first as without a probe, and SIGTERM's grace period is extended
by maxDrainSeconds (the worker finishes its current item, then exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from ebb.errors import TargetError
from ebb.spec.models import DEFAULT_MAX_DRAIN_SECONDS, BusyProbe, ContainerPort, ReadinessProbe, port_env_name
from ebb.targets import busy as busy_rules
from ebb.targets._child import Child, describe_exit, log, start_error
from ebb.targets.base import ChildRecord, EventSink, OutputSink, write_stdout
from ebb.targets.busy import BusyState, CauseReporter, describe_duration

WorkerState = Literal["starting", "running", "draining", "terminating", "backoff"]

LOOPBACK = "127.0.0.1"
#: While workers drain, "waiting for N busy worker(s)" is said again this often (seconds), and when N changes.
DRAIN_REPORT_EVERY = 60.0

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
    #: Running and, with a readinessProbe, passing it.
    ready: bool = False


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
        #: Passing its readinessProbe (always True once running when the group has none).
        self.ready = False
        self.probe_task: asyncio.Task[None] | None = None
        #: Chosen for removal (draining or terminating): an exit on its own is then no crash.
        self.leaving = False
        #: When it started draining (monotonic), while it does.
        self.draining_since: float | None = None
        #: SIGTERM's grace period for this worker, when not the group's (exitWhenIdle adds maxDrainSeconds).
        self.grace: float | None = None
        #: Stopped as idle by a busy-aware scale-in: asked again at the end of the grace period before SIGKILL
        #: (it may have taken an item between its idle answer and the SIGTERM).
        self.recheck = False

    def request_stop(self) -> None:
        self.leaving = True
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
            ready=self.state == "running" and self.ready,
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
        ports: Sequence[ContainerPort] = (),
        readiness_probe: ReadinessProbe | None = None,
        busy_probe: BusyProbe | None = None,
        max_drain_seconds: float = DEFAULT_MAX_DRAIN_SECONDS,
        drain_report_every: float = DRAIN_REPORT_EVERY,
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
        self.ports = list(ports)
        self.readiness_probe = readiness_probe
        self.busy_probe = busy_probe
        self.max_drain_seconds = max_drain_seconds
        self.drain_report_every = drain_report_every
        #: Busy workers chosen for removal, by index: running, no longer capacity, not signalled yet.
        self._draining: dict[int, _Worker] = {}
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_wakeup = asyncio.Event()
        self._scale_lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._busy_causes = CauseReporter()
        #: Called when workers start or stop draining, at once (the HTTP pool stops routing to them).
        self.listeners: list[Callable[[], None]] = []

    # --- ScaleTarget -------------------------------------------------------------------------------

    async def get_replicas(self) -> int:
        return self._desired

    async def set_replicas(self, n: int) -> None:
        """Converge to `n` workers. Waits for new workers' first start attempt, never for a termination."""
        if self._closed:
            raise TargetError(f"ProcessGroup {self.name}: closed")
        if n < 0:
            raise ValueError(f"replicas must be >= 0, got {n}")
        if self.busy_probe is not None:
            async with self._scale_lock:
                await self._set_replicas_busy_aware(n)
            return
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
        return sum(1 for w in self._workers.values() if w.state == "running" and w.ready)

    async def close(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after the grace period) and wait until all are gone.

        Draining workers are stopped too: ebb stopping is not a scale-in."""
        self._closed = True
        self._desired = 0
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        for index in sorted(self._draining, reverse=True):
            self._retire(self._draining.pop(index))
        for index in sorted(self._workers, reverse=True):
            self._retire(self._workers.pop(index))
        tasks = [w.task for w in self._terminating if w.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- for the CLI and the resource scalers -----------------------------------------------------

    def status(self) -> list[WorkerStatus]:
        """Wanted workers by index, then those draining, then those still terminating."""
        wanted = [self._workers[i].status() for i in sorted(self._workers)]
        draining = [self._draining[i].status() for i in sorted(self._draining)]
        leaving = sorted((w.status() for w in self._terminating), key=lambda s: s.index)
        return wanted + draining + leaving

    def worker_ready(self, index: int) -> bool:
        """Whether the wanted worker `index` is running and passes its readinessProbe (if any)."""
        worker = self._workers.get(index)
        return worker is not None and worker.state == "running" and worker.ready

    def draining(self) -> list[int]:
        """Indexes of the busy workers waiting to be stopped."""
        return sorted(self._draining)

    async def busy_replicas(self) -> int | None:
        """How many workers (wanted or draining) say they are busy now; None without a probe ebb can ask
        (ebb.dev/cooldown-from: last-activity reads it)."""
        if self.busy_probe is None or self.busy_probe.exit_when_idle:
            return None
        states = await self._busy_states({**self._workers, **self._draining})
        return sum(state.busy for state in states.values())

    def port_number(self, port: int | str) -> int:
        """A port (number or name of one of `ports`) for replica 0; KeyError for an unknown name."""
        if isinstance(port, int):
            return port
        for declared in self.ports:
            if declared.name == port:
                return declared.container_port
        raise KeyError(port)

    def pids(self) -> list[int]:
        """Process ids of the running workers (not of terminating ones)."""
        return [w.child.pid for _, w in sorted(self._workers.items()) if w.state == "running" and w.child is not None]

    def recent_exits(self) -> list[WorkerExit]:
        """The last worker exits, oldest first."""
        return list(self._exits)

    def children(self) -> list[ChildRecord]:
        """Every live worker process, terminating ones included (for the state file)."""
        workers = [*self._workers.values(), *self._draining.values(), *self._terminating]
        return [
            ChildRecord(w.child.pid, w.child.create_time)
            for w in workers
            if w.child is not None and w.child.returncode is None
        ]

    def kill_all(self) -> None:
        """SIGKILL every worker's process group now, terminating ones included (a second Ctrl-C)."""
        for worker in [*self._workers.values(), *self._draining.values(), *self._terminating]:
            if worker.child is not None:
                worker.child.kill()

    def not_ready_reason(self) -> str | None:
        """Why fewer workers run than wanted, in a few words; None when all wanted workers run."""
        waiting = [w for w in self._workers.values() if w.state != "running" or not w.ready]
        if not waiting:
            return None
        first = min(waiting, key=lambda w: w.index)
        if first.state == "running" and first.why is None:
            first.why = "not ready yet (readinessProbe)"
        if first.why is not None:
            more = f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else ""
            return f"{first.name}: {first.why}{more}"
        return f"{len(waiting)} worker(s) {first.state}"

    # --- busy-aware scale-in ---------------------------------------------------------------------

    async def _set_replicas_busy_aware(self, n: int) -> None:
        before = len(self._workers)
        self._desired = n
        started: list[Coroutine[Any, Any, bool]] = []
        if n > before:
            # Take back draining workers first (the busiest-looking are simply the lowest indexes here).
            for index in sorted(self._draining):
                if len(self._workers) >= n:
                    break
                worker = self._draining[index]
                child = worker.child
                if worker.task is None or worker.task.done() or child is None or child.returncode is not None:
                    continue
                del self._draining[index]
                worker.leaving = False
                worker.draining_since = None
                worker.state = "running"
                self._workers[index] = worker
            kept = len(self._workers) - before
            if kept:
                self._changed()
                self._event(
                    "DrainCancelled",
                    f"scaling {before}→{n}: kept {kept} draining worker(s) instead of starting new ones",
                )
            while len(self._workers) < n:
                worker = self._new_worker(self._free_index())
                started.append(worker.first_attempt.wait())
            self._drain_wakeup.set()
            if started:
                await asyncio.gather(*started)
            return
        if n == before:
            return
        count = before - n
        assert self.busy_probe is not None
        if self.busy_probe.exit_when_idle:
            grace = self.max_drain_seconds + self.termination_grace_period
            for index in sorted(self._workers, reverse=True)[:count]:
                worker = self._workers.pop(index)
                worker.grace = grace
                self._retire(worker)
            self._event(
                "ScalingIn",
                f"scaling {before}→{n}: asked {count} worker(s) to finish their current item and exit "
                f"(SIGKILL after {describe_duration(grace)})",
            )
            return
        states = await self._busy_states(dict(self._workers))
        victims = busy_rules.removal_order(states)[:count]
        idle = [i for i in victims if states[i].idle]
        busy = [i for i in victims if not states[i].idle]
        for index in idle:
            worker = self._workers.pop(index)
            worker.recheck = True
            self._retire(worker)
        now = time.monotonic()
        for index in busy:
            worker = self._workers.pop(index)
            worker.leaving = True
            worker.state = "draining"
            worker.draining_since = now
            self._draining[index] = worker
        self._changed()
        message = f"scaling {before}→{n}: stopped {len(idle)} idle worker(s)"
        if busy:
            message += (
                f"; waiting for {len(busy)} busy worker(s) to finish "
                f"(up to maxDrainSeconds {describe_duration(self.max_drain_seconds)})"
            )
        self._event("ScalingIn", message)
        if busy and (self._drain_task is None or self._drain_task.done()):
            self._drain_task = asyncio.create_task(self._drain(), name=f"ebb-drain-{self.name}")
        self._drain_wakeup.set()

    def _changed(self) -> None:
        for listener in self.listeners:
            try:
                listener()
            except Exception:
                log.exception("ProcessGroup %s: listener failed", self.name)

    def _new_worker(self, index: int) -> _Worker:
        worker = _Worker(index, f"{self.name}-{index}")
        worker.task = asyncio.create_task(self._supervise(worker), name=f"ebb-worker-{worker.name}")
        self._workers[index] = worker
        return worker

    def _free_index(self) -> int:
        """The lowest index no wanted, draining or terminating worker holds (so its ports are free too)."""
        taken = {*self._workers, *self._draining, *(w.index for w in self._terminating)}
        index = 0
        while index in taken:
            index += 1
        return index

    async def _busy_states(self, workers: Mapping[int, _Worker]) -> dict[int, BusyState]:
        """Each worker's busy state; one that is not running (starting, in backoff) does no work: idle."""
        indexes = list(workers)
        states = await asyncio.gather(*(self._busy_state(workers[i]) for i in indexes))
        return dict(zip(indexes, states, strict=True))

    async def _busy_state(self, worker: _Worker) -> BusyState:
        probe = self.busy_probe
        child = worker.child
        if (
            probe is None
            or child is None
            or child.returncode is not None
            or worker.state not in ("running", "draining")
        ):
            return busy_rules.IDLE
        port = self.port_number(probe.http_get.port) + worker.index if probe.http_get is not None else None
        state = await busy_rules.probe(
            probe, host=LOOPBACK, port=port, index=worker.index, working_dir=self.working_dir, session=self._client()
        )
        if state.known:
            self._busy_causes.clear(worker.name)
        elif self._busy_causes.report(worker.name, state.reason):
            self._event(
                "BusyProbeFailed",
                f"ProcessGroup {self.name}: worker {worker.name}'s busyProbe {state.reason}; counted as busy",
                "Warning",
            )
        return state

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _drain(self) -> None:
        """Until no worker drains: signal each once its probe says idle, or once maxDrainSeconds have passed."""
        try:
            await self._drain_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug here must not leave workers draining forever: fall back to stopping them now.
            log.exception("draining ProcessGroup %s failed", self.name)
            self._event("DrainFailed", f"draining failed ({type(exc).__name__}: {exc}); stopping the rest", "Warning")
            for index in sorted(self._draining, reverse=True):
                self._retire(self._draining.pop(index))

    async def _drain_loop(self) -> None:
        assert self.busy_probe is not None
        period = self.busy_probe.period_seconds
        waiting_said: int | None = None
        said_at = 0.0
        while self._draining:
            self._drain_wakeup.clear()
            states = await self._busy_states(dict(self._draining))
            now = time.monotonic()
            for index, state in states.items():
                worker = self._draining.get(index)
                if worker is None or worker.draining_since is None:
                    continue  # taken back, or gone, while it was probed
                waited = now - worker.draining_since
                if state.idle:
                    del self._draining[index]
                    worker.recheck = True
                    self._retire(worker)
                    self._event("Drained", f"worker {worker.name} is idle after {describe_duration(waited)}: stopped")
                elif waited >= self.max_drain_seconds:
                    del self._draining[index]
                    self._retire(worker)
                    self._event(
                        "DrainTimeout",
                        f"worker {worker.name} still busy after maxDrainSeconds "
                        f"{describe_duration(self.max_drain_seconds)}: SIGTERM, then SIGKILL after the "
                        f"{self.termination_grace_period:g}s grace period",
                        "Warning",
                    )
            left = [w for w in self._draining.values() if w.draining_since is not None]
            if left and (len(left) != waiting_said or now - said_at >= self.drain_report_every):
                longest = max(now - w.draining_since for w in left if w.draining_since is not None)
                self._event(
                    "Draining",
                    f"waiting for {len(left)} busy worker(s) (longest {describe_duration(longest)})",
                )
                said_at = now
            waiting_said = len(left)
            if not self._draining:
                break
            deadline = min(
                (w.draining_since + self.max_drain_seconds for w in left if w.draining_since is not None),
                default=now + period,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(period, deadline - now))):
                    await self._drain_wakeup.wait()
        self._busy_causes.forget(w.name for w in self._workers.values())

    async def _stop_rechecked(self, worker: _Worker, child: Child, grace: float) -> int:
        """SIGTERM a worker stopped as idle; at the end of the grace period ask it again: one that took an item
        between its idle answer and the SIGTERM (and finishes it, as warm shutdown does) gets up to
        maxDrainSeconds more before SIGKILL, instead of losing the item."""
        assert self.busy_probe is not None
        child.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                return await child.wait()
        probe = self.busy_probe
        port = self.port_number(probe.http_get.port) + worker.index if probe.http_get is not None else None
        state = await busy_rules.probe(
            probe, host=LOOPBACK, port=port, index=worker.index, working_dir=self.working_dir, session=self._client()
        )
        if child.returncode is None and state.busy:
            self._event(
                "DrainExtended",
                f"worker {worker.name} took an item just before its SIGTERM and is still busy after the "
                f"{grace:g}s grace period: SIGKILL after up to maxDrainSeconds "
                f"{describe_duration(self.max_drain_seconds)} more",
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_drain_seconds):
                    return await child.wait()
        return await child.stop(0)

    # --- readiness ----------------------------------------------------------------------------------

    async def _probe_readiness(self, worker: _Worker, child: Child, probe: ReadinessProbe) -> None:
        """Kubernetes' readiness rules: successThreshold passes in a row make it ready, failureThreshold
        failures in a row unready; the first probe after initialDelaySeconds, then every periodSeconds."""
        try:
            port = self.port_number(probe.port) + worker.index
        except KeyError:
            worker.why = f"readinessProbe port {probe.port!r} is not one of the group's ports"
            return
        await asyncio.sleep(probe.initial_delay_seconds)
        successes = failures = 0
        while child.returncode is None:
            error = await self._ready_once(probe, port)
            if error is None:
                successes, failures = successes + 1, 0
                if not worker.ready and successes >= probe.success_threshold:
                    worker.ready = True
                    worker.why = None
            else:
                successes, failures = 0, failures + 1
                if failures >= probe.failure_threshold or not worker.ready:
                    worker.why = f"readiness probe failed: {error}"
                if worker.ready and failures >= probe.failure_threshold:
                    worker.ready = False
                    self._event(
                        "Unhealthy",
                        f"ProcessGroup {self.name}: worker {worker.name} readiness probe failed "
                        f"{failures} times: {error}",
                        "Warning",
                    )
            await asyncio.sleep(probe.period_seconds)

    async def _ready_once(self, probe: ReadinessProbe, port: int) -> str | None:
        """One probe: None when it passed, else why not."""
        timeout = probe.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                if probe.http_get is not None:
                    url = f"http://{LOOPBACK}:{port}{probe.http_get.path}"
                    async with self._client().get(url, allow_redirects=False) as response:
                        await response.read()
                        if 200 <= response.status < 400:
                            return None
                        return f"GET {url} answered HTTP {response.status}"
                _, writer = await asyncio.open_connection(LOOPBACK, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return None
        except TimeoutError:
            return f"no answer on port {port} within {timeout:g}s"
        except (aiohttp.ClientError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return f"port {port}: {reason}"

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

    def _ports_env(self, index: int) -> dict[str, str]:
        if not self.ports:
            return {}
        env = {"PORT": str(self.ports[0].container_port + index)}
        for port in self.ports:
            if port.name is not None:
                env[port_env_name(port.name)] = str(port.container_port + index)
        return env

    def _worker_env(self, worker: _Worker) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            **self.extra_env,
            "EBB_REPLICA_INDEX": str(worker.index),
            "EBB_PROCESS_GROUP": self.name,
            **self._ports_env(worker.index),
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
                            grace = worker.grace if worker.grace is not None else self.termination_grace_period
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
            if self._draining.get(worker.index) is worker:
                del self._draining[worker.index]
                self._drain_wakeup.set()

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
        worker.ready = self.readiness_probe is None
        if self.readiness_probe is not None and not worker.stop.is_set():
            worker.probe_task = asyncio.create_task(
                self._probe_readiness(worker, child, self.readiness_probe), name=f"ebb-ready-{worker.name}"
            )
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
        if worker.probe_task is not None:
            worker.probe_task.cancel()
            worker.probe_task = None
        worker.ready = False
        # A draining worker that finishes and exits by itself is done, not crashed: it is not restarted.
        unexpected = not worker.stop.is_set() and not worker.leaving
        grace = worker.grace if worker.grace is not None else self.termination_grace_period
        if not worker.stop.is_set():
            code = await child.wait()
        elif worker.recheck and self.busy_probe is not None:
            code = await self._stop_rechecked(worker, child, grace)
        else:
            code = await child.stop(grace)
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
