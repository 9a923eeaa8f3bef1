"""One ScaledJob's loop: read every trigger, let the core say how many Jobs to start, start them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.scaled_object import close_scalers, read_trigger, watch_scaler
from ebb.scalers.base import Scaler
from ebb.scaling.jobs import JobDecision, JobStrategy, decide_jobs
from ebb.scaling.types import ScalingEvent, TriggerResult
from ebb.targets.jobs import JobRunner


def trigger_failure_events(results: Sequence[TriggerResult], failing: set[str]) -> list[ScalingEvent]:
    """Like the ScaledObject decider: KEDAScalerFailed when a trigger starts failing, ScalerRecovered when it
    answers again. `failing` holds the metric names failing so far and is updated."""
    events: list[ScalingEvent] = []
    for r in results:
        if r.error is not None and r.metric_name not in failing:
            failing.add(r.metric_name)
            events.append(ScalingEvent("KEDAScalerFailed", f"{r.metric_name}: {r.error}", "Warning"))
        elif r.error is None and r.metric_name in failing:
            failing.discard(r.metric_name)
            events.append(ScalingEvent("ScalerRecovered", f"{r.metric_name} answers again"))
    return events


class ScaledJobLoop:
    def __init__(
        self,
        ref: ObjectRef,
        scalers: Sequence[Scaler],
        runner: JobRunner,
        *,
        polling_interval: float,
        min_replicas: int,
        max_replicas: int | None,
        strategy: JobStrategy,
        observer: Observer,
        paused: bool = False,
        start_offset: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ref = ref
        self.scalers = list(scalers)
        self.runner = runner
        self.polling_interval = polling_interval
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.strategy = strategy
        self.observer = observer
        self.paused = paused
        self.start_offset = start_offset
        self.clock = clock
        self._active: bool | None = None
        self._failing: set[str] = set()
        self._wake = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        watchers = [asyncio.create_task(self._watch(s)) for s in self.scalers if s.supports_push]
        next_at = loop.time() + self.start_offset
        try:
            while True:
                delay = next_at - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
                self._wake.clear()
                lateness = max(0.0, loop.time() - next_at)
                await self.poll_once(lateness)
                next_at = max(next_at + self.polling_interval, loop.time())
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, scaler: Scaler) -> None:
        await watch_scaler(scaler, self.notify, self.ref, self.observer, self.clock)

    async def poll_once(self, lateness: float = 0.0) -> JobDecision | None:
        if self.paused:
            return None
        t0 = time.perf_counter()
        results = tuple(await asyncio.gather(*(read_trigger(s) for s in self.scalers)))
        read_seconds = time.perf_counter() - t0
        now = self.clock()
        running = self.runner.running()
        decision = decide_jobs(
            results, running, self.runner.pending(), self.min_replicas, self.max_replicas, self.strategy
        )
        for event in trigger_failure_events(results, self._failing):
            self.observer.event(self.ref, event, now)
        if self._active is not None and decision.active != self._active:
            reason = "ScaledJobActive" if decision.active else "ScaledJobInactive"
            self.observer.event(self.ref, ScalingEvent(reason, decision.message or reason), now)
        self._active = decision.active
        if decision.jobs_to_create > 0:
            await self.runner.start(decision.jobs_to_create)
            self.observer.event(
                self.ref, ScalingEvent("KEDAJobsCreated", f"Created {decision.jobs_to_create} jobs"), now
            )
        self.observer.poll(
            PollRecord(
                ref=self.ref,
                time=now,
                triggers=results,
                decision=None,
                current_replicas=running,
                desired_replicas=running + decision.jobs_to_create,
                ready_replicas=self.runner.running(),
                lateness=lateness,
                read_seconds=read_seconds,
                reason=self.runner.not_ready_reason(),
            )
        )
        return decision

    async def close(self) -> None:
        await close_scalers(self.scalers)
