"""`ebb.dev/predictive` under `ebb run`: each trigger's own metric, forecast from its history.

A wrapper around a trigger's scaler. Every reading is recorded (the largest value per `STEP` seconds); at each
new step the forecaster (`ebb.scaling.forecast`, walk-forward) looks `horizon` ahead. The metric served is
max(what the trigger reads, the forecast's peak over the horizon on the chosen `band`), and the trigger is active
when the point forecast over `lead` (at least the next step) is above its activation threshold: a forecast can
only add replicas earlier, and wakes the
target from zero ahead of expected work. `mode=observe` records the forecast (`last_forecast`) without acting.
A guard serves the plain reading while the recent forecast error is too high and reports each switch.
`prediction()` tells the loop (and through it metrics, Events and the dashboard) what the forecast says.

Seeding: given a `HistorySource` (ebb's history store: local tiers, or what the operator read back from
Prometheus), the first read first replays the trigger's recorded steps from before now (`SEED_WINDOW`), so a
restarted `ebb run` or a failed-over operator forecasts at its first poll instead of learning from nothing.
Walk-forward as live: the model only ever observes whole steps that ended before the current one.

`with_prediction` is the one place both runtimes (`ebb run`, the operator) apply the annotation.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ebb.errors import SpecError
from ebb.runtime.observer import ObjectRef
from ebb.scalers.base import MetricSpec, Scaler, ScalerReading
from ebb.scaling.forecast import (
    DAY,
    PREDICTIVE_ANNOTATION,
    Forecast,
    ForecastGuard,
    Prediction,
    PredictiveSettings,
    make_forecaster,
    parse_predictive,
    would_be_replicas,
)
from ebb.spec.models import ScaledObject

log = logging.getLogger("ebb.predictive")

#: History resolution of the forecast (seconds).
STEP = 60.0
#: How far back a forecaster is seeded at start: three weekly cycles (what the seasonal model reads; Holt-Winters
#: needs a day or two).
SEED_WINDOW = 21 * DAY
#: The longest a first read waits for its seed (a Prometheus read-back under way, a large history file).
SEED_TIMEOUT = 60.0
#: Past steps whose walk-forward forecast a seed hands to the forecast log (a day of steps, as the log keeps).
SEED_LOG_STEPS = 1440

GuardCallback = Callable[[bool, float], None]
#: (metric, start, end, step) -> (step start, value) of that trigger's recorded steps in [start, end), oldest first.
SeedFetch = Callable[[str, float, float, float], Awaitable[Sequence[tuple[float, float]]]]


class HistorySource(Protocol):
    """Where a forecaster is seeded from: one trigger's history on a regular grid (`HistoryStore.trigger_steps`:
    the highest value per step, steps without a point left out)."""

    async def history_steps(
        self, ref: ObjectRef, metric: str, start: float, end: float, step: float
    ) -> Sequence[tuple[float, float]]: ...


class PredictiveScaler(Scaler):
    """`inner` with a forecast added to its metric (see the module docstring)."""

    type_name = "predictive"

    def __init__(
        self,
        inner: Scaler,
        settings: PredictiveSettings,
        *,
        clock: Callable[[], float] = time.time,
        on_guard: GuardCallback | None = None,
        step: float = STEP,
        seed_from: SeedFetch | None = None,
    ) -> None:
        """`seed_from`: this trigger's history, replayed into the model at the first read (see `seed`)."""
        super().__init__(inner.ctx, inner.meta)
        self.inner = inner
        self.settings = settings
        self.clock = clock
        self.on_guard = on_guard
        self.step = step
        self.supports_push = inner.supports_push  # type: ignore[misc]
        self.model = make_forecaster(settings.model, step)
        self.guard = ForecastGuard(max_error=settings.max_error, resume_error=0.7 * settings.max_error)
        self.steps = max(1, math.ceil(settings.horizon / step)) + 1
        # at least the next step: a local process needs some time to start, which this wrapper cannot know
        self.lead_steps = max(1, math.ceil(settings.activation_lead / step)) + 1
        self.last_forecast: Forecast | None = None
        self.predicted = 0.0
        self.expected = 0.0
        self._bucket: int | None = None
        self._bucket_max: float | None = 0.0
        self._pending: float | None = None
        self._forecast_at = 0.0
        self._last_value = 0.0
        self._observed = 0
        self._seed_from = seed_from
        self._seed_lock = asyncio.Lock()
        #: Steps of real history the model was seeded with (gaps filled in are not counted); None: not seeded.
        self.seeded: int | None = None
        self._replayed: tuple[tuple[float, float, float, float, float], ...] = ()

    @property
    def timeout(self) -> float:
        return self.inner.timeout

    def metric_spec(self) -> MetricSpec:
        return self.inner.metric_spec()

    def activation_threshold(self) -> float | None:
        return self.inner.activation_threshold()

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def close(self) -> None:
        await self.inner.close()

    async def watch(self, notify: Callable[[], None]) -> None:
        await self.inner.watch(notify)

    def record(self, now: float, value: float) -> None:
        """Add one reading; at the first reading of a new step, observe the finished steps and forecast."""
        bucket = int(now // self.step)
        if self._bucket is None:
            self._bucket, self._bucket_max = bucket, value
            return
        if bucket == self._bucket:
            self._bucket_max = value if self._bucket_max is None else max(self._bucket_max, value)
            return
        if bucket < self._bucket:  # the clock went back: start this step again
            self._bucket, self._bucket_max = bucket, value
            return
        last = value if self._bucket_max is None else self._bucket_max  # a seeded step no reading fell in
        # Steps without a reading: a short run (polls further apart than a step) holds the last value; beyond
        # that (ebb was suspended), the model's own forecast fills them, as seeding does, to keep the season in phase.
        gap = bucket - self._bucket - 1
        held = min(gap, self.steps * 10)
        for actual in [last] * (1 + held):
            if self._pending is not None:
                changed = self.guard.record(self._pending, actual)
                if changed is not None and self.on_guard is not None:
                    self.on_guard(changed, self.guard.error())
            self.model.observe(actual)
            self._observed += 1
            self._pending = None
        self._fill(min(gap - held, math.ceil(SEED_WINDOW / self.step)))
        self._forecast(bucket)
        self._bucket, self._bucket_max = bucket, value

    def _fill(self, steps: int) -> None:
        """Observe `steps` steps nobody measured as the model's own forecast (up to a day of it at a time): it
        teaches the model nothing, and keeps its daily season in phase with the clock."""
        chunk = max(1, round(DAY / self.step))
        while steps > 0:
            for filler in self.model.forecast(min(steps, chunk)).mean:
                self.model.observe(filler, filled=True)
                self._observed += 1
            steps -= min(steps, chunk)

    def _forecast(self, bucket: int) -> None:
        """Look ahead from the start of step `bucket` (every step before it observed)."""
        fc = self.model.forecast(max(self.steps, self.lead_steps))
        self.last_forecast = fc
        self._pending = fc.mean[0]
        self.predicted = fc.peak(self.steps, self.settings.band)
        self.expected = fc.peak(self.lead_steps, "mean")
        self._forecast_at = bucket * self.step

    def seed(self, history: Sequence[tuple[float, float]], now: float) -> int:
        """Replay recorded history into a model that has observed nothing yet; returns the steps of real history
        it used. `history` is (time, value) (several in one step: its highest); only values before `now` are
        read, and the model observes the whole steps before now's step, as it would have live: steps without a
        value (ebb was not running) are filled with the model's own forecast, which teaches it nothing, so that
        the daily season stays in phase. The last `guard.window` real steps are checked by the guard as live
        ones are. Values from now's step so far start that step's highest value."""
        if self._observed or self._bucket is not None:
            return 0
        current = int(now // self.step)
        cells: dict[int, float] = {}
        for t, v in history:
            if not (t < now and math.isfinite(v)):
                continue
            cell = int(t // self.step)
            cells[cell] = max(v, cells.get(cell, v))
        past = sorted(c for c in cells if c < current)
        partial = cells.get(current)
        if past:
            checked = set(past[-self.guard.window :])
            logged = set(past[-SEED_LOG_STEPS:])
            replayed = []
            cell = past[0]
            while cell < current:
                value = cells.get(cell)
                if value is None:  # a gap
                    run = next((c for c in range(cell + 1, current) if c in cells), current) - cell
                    self._fill(run)
                    cell += run
                    continue
                if cell in checked or cell in logged:  # the forecast of this step, made before it is observed
                    fc = self.model.forecast(1)
                    if cell in checked:
                        self.guard.record(fc.mean[0], value)
                    if cell in logged:
                        replayed.append((cell * self.step, self.step, fc.mean[0], fc.lower[0], fc.upper[0]))
                self.model.observe(value)
                self._observed += 1
                cell += 1
            self._replayed = tuple(replayed)
            self._forecast(current)
        if partial is not None:
            self._bucket, self._bucket_max = current, partial
        elif past:
            self._bucket, self._bucket_max = current, None
        return len(past)

    async def _seed_once(self) -> None:
        """At the first read: fetch this trigger's history from `seed_from` and `seed` the model (once; a failure
        leaves the model to learn live, and is logged)."""
        if self._seed_from is None or self.seeded is not None:
            return
        async with self._seed_lock:
            if self.seeded is not None:
                return
            now = self.clock()
            name = self.inner.metric_spec().name
            try:
                async with asyncio.timeout(SEED_TIMEOUT):
                    history = await self._seed_from(name, now - SEED_WINDOW, now, self.step)
                # off the event loop: a model replays up to SEED_WINDOW / step steps (nothing else touches it yet)
                self.seeded = await asyncio.to_thread(self.seed, history, now)
            except Exception as exc:  # a history that cannot be read must not stop the trigger
                self.seeded = 0
                log.warning("%s: cannot seed the forecast from history: %s", self.ctx.trigger_ref, exc)

    async def get_metric_and_activity(self) -> ScalerReading:
        # Seeding is once, before the read and outside its timeout (a read-back from Prometheus takes longer).
        await self._seed_once()
        return await super().get_metric_and_activity()

    def prediction(self) -> Prediction | None:
        fc = self.last_forecast
        if fc is None:
            return None
        spec = self.inner.metric_spec()
        value = max(self._last_value, self.predicted)
        prediction = Prediction(
            metric_name=spec.name,
            mode=self.settings.mode,
            enabled=self.guard.enabled,
            error=self.guard.error(),
            max_error=self.settings.max_error,
            at=self._forecast_at,
            forecast=fc,
            value=value,
            replicas=would_be_replicas(value, spec.target, spec.metric_type),
            past=self._replayed,
        )
        self._replayed = ()  # handed over once
        return prediction

    def releases(self) -> bool:
        if self.settings.hold != "forecast" or self.settings.mode != "on" or not self.guard.enabled:
            return False
        if self.last_forecast is None:
            return False
        return self._last_value <= 0 and self.expected <= (self.inner.activation_threshold() or 0.0)

    async def read(self) -> ScalerReading:
        reading = await self.inner.get_metric_and_activity()
        self._last_value = reading.value
        self.record(self.clock(), reading.value)
        if self.settings.mode == "observe" or not self.guard.enabled or self.last_forecast is None:
            return reading
        activation = self.inner.activation_threshold() or 0.0
        return ScalerReading(
            value=max(reading.value, self.predicted),
            active=reading.active or self.expected > activation,
        )


def with_prediction(
    so: ScaledObject,
    scalers: list[Scaler],
    *,
    clock: Callable[[], float] = time.time,
    history: HistorySource | None = None,
    ref: ObjectRef | None = None,
) -> list[Scaler]:
    """`ebb.dev/predictive` on `so`: each non-resource trigger's scaler wrapped in a `PredictiveScaler` (seeded from
    `history` under `ref`, the object's history key, when given); `scalers` unchanged without the annotation.
    SpecError naming the annotation when it does not parse. Used by `ebb run` and the operator alike."""
    raw = so.metadata.annotations.get(PREDICTIVE_ANNOTATION)
    if raw is None:
        return scalers
    try:
        settings = parse_predictive(raw)
    except ValueError as exc:
        raise SpecError(so.ref, f"metadata.annotations[{PREDICTIVE_ANNOTATION}]", str(exc)) from None

    def seeder(source: HistorySource, key: ObjectRef) -> SeedFetch:
        async def fetch(metric: str, start: float, end: float, step: float) -> Sequence[tuple[float, float]]:
            return await source.history_steps(key, metric, start, end, step)

        return fetch

    seed_from = seeder(history, ref) if history is not None and ref is not None else None
    # Guard switches become Events in ScaledObjectLoop, for this annotation and predictkube alike.
    return [
        s
        if s.type_name in ("cpu", "memory")  # resource metrics: nothing to forecast from a queue
        else PredictiveScaler(s, settings, clock=clock, seed_from=seed_from)
        for s in scalers
    ]
