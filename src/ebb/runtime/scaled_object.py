"""One ScaledObject's loop: read every trigger, let the core decide, apply to the target, report.

Shared by `ebb run` (a process group target) and the operator's direct mode (a /scale target).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Callable, Mapping, Sequence

from ebb.errors import EbbError, PushUnavailable, ScalerError
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.state import StateStore
from ebb.scalers.base import Scaler
from ebb.scaling.forecast import Prediction
from ebb.scaling.lifecycle import ScaledObjectDecider, pause_state
from ebb.scaling.types import Decision, ScalingEvent, TriggerResult
from ebb.targets.base import ScaleTarget

#: A push only wakes an idle object, and not more often than this (seconds): a busy stream must not turn
#: push notifications into a poll storm.
PUSH_MIN_GAP = 0.05
#: How often a push source that is not set up for push is checked again (quietly).
PUSH_RECHECK = 60.0
#: Polls of many objects are spread over at most this many seconds per object (never over more than the
#: polling interval), so that ten thousand objects do not all poll in the same instant.
SPREAD_PER_OBJECT = 0.005


def spread_offset(index: int, count: int, interval: float) -> float:
    """When the `index`-th of `count` objects first polls: evenly over min(interval, 5 ms per object)."""
    return min(float(interval), SPREAD_PER_OBJECT * count) * index / max(1, count)


async def read_trigger(scaler: Scaler) -> TriggerResult:
    """One trigger's reading as the core wants it; a failure is a result with `error`, never an exception."""
    name = scaler.ctx.trigger_name
    try:
        await scaler.prepare()
        spec = scaler.metric_spec()
    except EbbError as exc:
        return TriggerResult(
            metric_name=f"s{scaler.ctx.trigger_index}-{scaler.ctx.trigger_type}",
            target=0.0,
            metric_type=scaler.ctx.metric_type,
            error=getattr(exc, "message", str(exc)),
            trigger_name=name,
        )
    resource = spec.source == "Resource"
    started = time.perf_counter()
    try:
        reading = await scaler.get_metric_and_activity()
    except ScalerError as exc:
        return TriggerResult(
            metric_name=spec.name,
            target=spec.target,
            metric_type=spec.metric_type,
            error=exc.message,
            trigger_name=name,
            resource=resource,
            read_seconds=time.perf_counter() - started,
        )
    return TriggerResult(
        metric_name=spec.name,
        target=spec.target,
        metric_type=spec.metric_type,
        value=reading.value,
        active=reading.active,
        trigger_name=name,
        resource=resource,
        read_seconds=time.perf_counter() - started,
    )


def rescale_event(current: int, desired: int, decision: Decision, results: Sequence[TriggerResult]) -> ScalingEvent:
    """An HPA-style event for a 1..N change, with the metric values behind it."""
    metrics = ", ".join(
        f"{r.metric_name}={r.value:g}/{r.target:g}" if r.value is not None else f"{r.metric_name}=error"
        for r in results
    )
    return ScalingEvent(
        "SuccessfulRescale",
        f"New size: {desired} (from {current}); reason: {decision.reason}"
        + (f"; metrics: {metrics}" if metrics else ""),
    )


#: How long (seconds) fewer replicas may run than desired before a ReplicasUnavailable event says why.
UNAVAILABLE_AFTER = 30.0


def not_ready_reason(target: object) -> str | None:
    """The target's own words for why replicas are missing (local targets know; others say nothing)."""
    explain = getattr(target, "not_ready_reason", None)
    if explain is None:
        return None
    try:
        reason = explain()
    except Exception:
        return None
    return reason if isinstance(reason, str) else None


async def busy_replicas(target: object) -> int | None:
    """How many replicas say they are working, from a target with busy probes (`busy_replicas()`); None when
    the target has none or cannot tell (ebb.dev/cooldown-from: last-activity reads it)."""
    count = getattr(target, "busy_replicas", None)
    if count is None:
        return None
    try:
        found = count()
        if inspect.isawaitable(found):
            found = await found
    except Exception:
        return None
    return found if isinstance(found, int) else None


class Availability:
    """Turns "fewer ready than desired" lasting `after` seconds into one Warning event, and its end into one."""

    def __init__(self, after: float = UNAVAILABLE_AFTER) -> None:
        self.after = after
        self._since: float | None = None
        self._reported = False

    def check(self, desired: int, ready: int, reason: str | None, now: float) -> ScalingEvent | None:
        if ready >= desired:
            self._since = None
            if self._reported:
                self._reported = False
                return ScalingEvent("ReplicasAvailable", f"all {desired} desired replica(s) run")
            return None
        if self._since is None:
            self._since = now
        if not self._reported and now - self._since >= self.after:
            self._reported = True
            why = f": {reason}" if reason else ""
            return ScalingEvent(
                "ReplicasUnavailable",
                f"{ready} of {desired} desired replica(s) running for {now - self._since:.0f}s{why}",
                "Warning",
            )
        return None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ScaledObjectLoop:
    """Polls at pollingInterval (or at once when a push scaler signals work for an idle target)."""

    def __init__(
        self,
        ref: ObjectRef,
        scalers: Sequence[Scaler],
        target: ScaleTarget,
        decider: ScaledObjectDecider,
        *,
        polling_interval: float,
        observer: Observer,
        annotations: Mapping[str, str] | None = None,
        state: StateStore | None = None,
        idle_polling_interval: float | None = None,
        idle_replicas: int | None = None,
        start_offset: float = 0.0,
        clock: Callable[[], float] = time.time,
        unavailable_after: float = UNAVAILABLE_AFTER,
    ) -> None:
        self.ref = ref
        self.scalers = list(scalers)
        self.target = target
        self.decider = decider
        self.availability = Availability(unavailable_after)
        self.polling_interval = polling_interval
        self.idle_polling_interval = idle_polling_interval
        self.idle_replicas = idle_replicas or 0
        self.observer = observer
        self.annotations = dict(annotations or {})
        self.state = state
        self.start_offset = start_offset
        self.clock = clock
        self.last_decision: Decision | None = None
        self.last_results: tuple[TriggerResult, ...] = ()
        self._current = 0
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._deferred: asyncio.TimerHandle | None = None
        #: When the last poll that a push woke started (monotonic): the push gap counts from it.
        self._last_push_poll = 0.0
        #: Whether each forecasting trigger's guard let prediction act at the last poll (for its Events).
        self._guards: dict[str, bool] = {}

    @property
    def idle(self) -> bool:
        return self._current <= self.idle_replicas

    def notify(self) -> None:
        """Called by push scalers: poll now if the target is idle (activation must not wait for the timer).

        A push within PUSH_MIN_GAP of the start of the last poll that a push woke is deferred to the end of
        the gap, not dropped (that poll may have read the source just before the new work arrived): a stream of
        pushes polls at most once per gap. A push after a timer poll wakes the loop at once.
        """
        if not self.idle or self._woken:
            return
        wait = PUSH_MIN_GAP - (time.monotonic() - self._last_push_poll)
        if wait <= 0:
            self._wake()
        elif self._deferred is None:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._deferred_wake)

    def _deferred_wake(self) -> None:
        self._deferred = None
        if self.idle:
            self._wake()

    def _wake(self) -> None:
        if self._deferred is not None:  # this wake-up covers it
            self._deferred.cancel()
            self._deferred = None
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep_until(self, when: float) -> bool:
        """Wait until loop time `when`, or less if woken; True if woken.

        One future and one timer handle per wait: with thousands of objects, a task per wait (what
        `wait_for(event.wait())` costs) is measurable CPU and memory churn.
        """
        if not self._woken:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            handle = loop.call_at(when, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._waiter = None
        woken, self._woken = self._woken, False
        return woken

    def interval(self) -> float:
        if self.idle and self.idle_polling_interval is not None:
            return min(self.polling_interval, self.idle_polling_interval)
        return self.polling_interval

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        watchers = [asyncio.create_task(self._watch(s)) for s in self.scalers if s.supports_push]
        try:
            self._current = await self.target.get_replicas()
            next_at = loop.time() + self.start_offset
            while True:
                woke = await self._sleep_until(next_at) if next_at > loop.time() else False
                self._woken = False
                started = loop.time()
                if woke:
                    self._last_push_poll = time.monotonic()
                lateness = 0.0 if woke else max(0.0, started - next_at)
                await self.poll_once(lateness=lateness)
                interval = self.interval()
                next_at = started + interval if woke else next_at + interval
                if next_at < loop.time():  # fell behind: skip missed ticks instead of bursting
                    next_at = loop.time() + interval
        finally:
            if self._deferred is not None:
                self._deferred.cancel()
                self._deferred = None
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, scaler: Scaler) -> None:
        await watch_scaler(scaler, self.notify, self.ref, self.observer, self.clock)

    async def poll_once(self, lateness: float = 0.0) -> Decision | None:
        """Read all triggers concurrently, decide, apply. Never raises for a failing source or target."""
        t0 = time.perf_counter()
        if len(self.scalers) == 1:  # the common case, without gather's task per trigger
            results: tuple[TriggerResult, ...] = (await read_trigger(self.scalers[0]),)
        else:
            results = tuple(await asyncio.gather(*(read_trigger(s) for s in self.scalers)))
        read_seconds = time.perf_counter() - t0
        now = self.clock()
        try:
            current = await self.target.get_replicas()
        except EbbError as exc:
            self.observer.problem(self.ref, f"cannot read the target's replicas: {exc}", now)
            return None
        busy = await busy_replicas(self.target) if self.decider.policy.cooldown_from == "last-activity" else None
        predictions = self._predictions(now)
        try:
            decision = self.decider.decide(
                results,
                current,
                now,
                pause=pause_state(self.annotations),
                ready_replicas=self.target.ready_replicas(),
                busy_replicas=busy,
                cooldown_period=self._hold(results),
            )
        except EbbError as exc:
            self.observer.problem(self.ref, str(exc), now)
            return None
        desired = current if decision.desired_replicas is None else decision.desired_replicas
        if desired != current:
            try:
                applied = await self.target.set_replicas(desired)
                if isinstance(applied, int):
                    desired = applied
            except EbbError as exc:
                self.observer.problem(self.ref, f"cannot scale the target to {desired}: {exc}", now)
                desired = current
        for event in decision.events:
            self.observer.event(self.ref, event, now)
        if desired != current and current > 0 and desired > 0:
            self.observer.event(self.ref, rescale_event(current, desired, decision, results), now)
        self._current = desired
        self.last_decision = decision
        self.last_results = results
        if self.state is not None:
            self.state.save(self.ref.key, self.decider.state, desired)
        ready = self.target.ready_replicas()
        reason = not_ready_reason(self.target) if ready < desired else None
        availability = self.availability.check(desired, ready, reason, now)
        if availability is not None:
            self.observer.event(self.ref, availability, now)
        self.observer.poll(
            PollRecord(
                ref=self.ref,
                time=now,
                triggers=results,
                decision=decision,
                current_replicas=current,
                desired_replicas=desired,
                ready_replicas=ready,
                lateness=lateness,
                read_seconds=read_seconds,
                reason=reason,
                predictions=predictions,
            )
        )
        return decision

    def _predictions(self, now: float) -> tuple[Prediction, ...]:
        """Each forecasting trigger's prediction; an Event when its guard switches prediction off or on."""
        out: list[Prediction] = []
        for scaler in self.scalers:
            p = scaler.prediction()
            if p is None:
                continue
            out.append(p)
            before = self._guards.get(p.metric_name, True)
            self._guards[p.metric_name] = p.enabled
            if before == p.enabled:
                continue
            trigger = scaler.ctx.trigger_ref
            if p.enabled:
                event = ScalingEvent(
                    "PredictionResumed", f"{trigger}: recent forecast error {p.error:.2f}, prediction on again"
                )
            else:
                event = ScalingEvent(
                    "PredictionDisabled",
                    f"{trigger}: recent forecast error {p.error:.2f} > maxError {p.max_error:g}, prediction off",
                    "Warning",
                )
            self.observer.event(self.ref, event, now)
        return tuple(out)

    def _hold(self, results: Sequence[TriggerResult]) -> float | None:
        """0 (scale to zero without the cooldown) when every trigger forecasts, read 0 itself (nothing waits) and
        forecasts no work (`Scaler.releases`); else None, the policy's cooldownPeriod."""
        forecasting = [s for s in self.scalers if s.metric_spec().source != "Resource"]
        if not forecasting or not all(s.releases() for s in forecasting):
            return None
        if any(r.error is not None for r in results):
            return None
        return 0.0

    async def close(self) -> None:
        """Release every scaler's connections (bounded: a hung close never holds up shutdown)."""
        await close_scalers(self.scalers)


async def watch_scaler(
    scaler: Scaler, notify: Callable[[], None], ref: ObjectRef, observer: Observer, clock: Callable[[], float]
) -> None:
    """Keep a push scaler's `watch` running until cancelled; failures are reported and retried with backoff."""
    backoff = 1.0
    while True:
        try:
            await scaler.watch(notify)
            backoff = 1.0
        except asyncio.CancelledError:
            raise
        except PushUnavailable as exc:
            # The source works, only not for push: a hint (said once per server), then a quiet re-check now
            # and then in case the server's setting changes.
            observer.hint(ref, exc.key, exc.message, clock())
            await asyncio.sleep(PUSH_RECHECK)
        except Exception as exc:  # push is an accelerator: polling carries on without it
            observer.problem(ref, f"{scaler.ctx.trigger_ref}: push unavailable: {exc}", clock())
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)


async def close_scalers(scalers: Sequence[Scaler], grace: float = 5.0) -> None:
    async def one(s: Scaler) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.close(), grace)

    await asyncio.gather(*(one(s) for s in scalers))
