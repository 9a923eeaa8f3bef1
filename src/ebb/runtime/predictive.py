"""`ebb.dev/predictive` under `ebb run`: each trigger's own metric, forecast from its history.

A wrapper around a trigger's scaler. Every reading is recorded (the largest value per `STEP` seconds); at each
new step the forecaster (`ebb.scaling.forecast`, walk-forward) looks `horizon` ahead. The metric served is
max(what the trigger reads, the forecast's peak over the horizon on the chosen `band`), and the trigger is active
when the point forecast over `lead` (at least the next step) is above its activation threshold: a forecast can
only add replicas earlier, and wakes the
target from zero ahead of expected work. `mode=observe` records the forecast (`last_forecast`) without acting.
A guard serves the plain reading while the recent forecast error is too high and reports each switch.
`prediction()` tells the loop (and through it metrics, Events and the dashboard) what the forecast says.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ebb.scalers.base import MetricSpec, Scaler, ScalerReading
from ebb.scaling.forecast import (
    Forecast,
    ForecastGuard,
    Prediction,
    PredictiveSettings,
    make_forecaster,
    would_be_replicas,
)

#: History resolution of the forecast (seconds).
STEP = 60.0

GuardCallback = Callable[[bool, float], None]


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
    ) -> None:
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
        self._bucket_max = 0.0
        self._pending: float | None = None
        self._forecast_at = 0.0
        self._last_value = 0.0

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
            self._bucket_max = max(self._bucket_max, value)
            return
        if bucket < self._bucket:  # the clock went back: start this step again
            self._bucket, self._bucket_max = bucket, value
            return
        finished = [self._bucket_max] + [self._bucket_max] * min(bucket - self._bucket - 1, self.steps * 10)
        for actual in finished:
            if self._pending is not None:
                changed = self.guard.record(self._pending, actual)
                if changed is not None and self.on_guard is not None:
                    self.on_guard(changed, self.guard.error())
            self.model.observe(actual)
            self._pending = None
        fc = self.model.forecast(max(self.steps, self.lead_steps))
        self.last_forecast = fc
        self._pending = fc.mean[0]
        self.predicted = fc.peak(self.steps, self.settings.band)
        self.expected = fc.peak(self.lead_steps, "mean")
        self._forecast_at = bucket * self.step
        self._bucket, self._bucket_max = bucket, value

    def prediction(self) -> Prediction | None:
        fc = self.last_forecast
        if fc is None:
            return None
        spec = self.inner.metric_spec()
        value = max(self._last_value, self.predicted)
        return Prediction(
            metric_name=spec.name,
            mode=self.settings.mode,
            enabled=self.guard.enabled,
            error=self.guard.error(),
            max_error=self.settings.max_error,
            at=self._forecast_at,
            forecast=fc,
            value=value,
            replicas=would_be_replicas(value, spec.target, spec.metric_type),
        )

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
