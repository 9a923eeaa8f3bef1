"""ebb.dev/predictive under `ebb run`: the forecast of a trigger's own metric joins its reading."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest

from ebb.runtime.predictive import PredictiveScaler
from ebb.scalers.base import MetricSpec, Scaler, ScalerMetadata, ScalerReading, TriggerContext
from ebb.scaling.forecast import PredictiveSettings, parse_predictive

DAY = 86400.0


class Wave(Scaler):
    """A backlog that follows a daily wave: empty at night, 100 at 12:00."""

    type_name: ClassVar[str] = "wave"
    Metadata: ClassVar[type[ScalerMetadata]] = ScalerMetadata

    def __init__(self, clock: list[float], scale: float = 1.0) -> None:
        super().__init__(TriggerContext(trigger_type="wave"), ScalerMetadata())
        self.clock = clock
        self.scale = scale

    def metric_spec(self) -> MetricSpec:
        return MetricSpec("s0-wave", 10.0)

    async def read(self) -> ScalerReading:
        t = self.clock[0]
        value = max(0.0, 100.0 * math.sin(2 * math.pi * ((t % DAY) / DAY - 0.25))) * self.scale
        return ScalerReading(value, value > 0)


async def replay(scaler: PredictiveScaler, clock: list[float], until: float, every: float = 30.0) -> ScalerReading:
    reading = ScalerReading(0.0, False)
    while clock[0] < until:
        reading = await scaler.get_metric_and_activity()
        clock[0] += every
    return reading


async def test_the_forecast_wakes_the_target_before_the_morning() -> None:
    clock = [0.0]
    scaler = PredictiveScaler(Wave(clock), parse_predictive("horizon=30m"), clock=lambda: clock[0])
    reading = await replay(scaler, clock, 3 * DAY + 6 * 3600 - 20 * 60)  # 05:40 on day 4: still empty
    assert reading.value > 0 and reading.active  # the morning is forecast


async def test_observe_mode_forecasts_without_acting() -> None:
    clock = [0.0]
    scaler = PredictiveScaler(Wave(clock), parse_predictive("horizon=30m,mode=observe"), clock=lambda: clock[0])
    reading = await replay(scaler, clock, 3 * DAY + 6 * 3600 - 20 * 60)
    assert reading.value == 0 and not reading.active
    assert scaler.last_forecast is not None and scaler.last_forecast.peak(30) > 0


async def test_the_guard_switches_prediction_off_when_the_forecast_is_wrong() -> None:
    clock = [0.0]
    inner = Wave(clock)
    switches: list[tuple[bool, float]] = []
    scaler = PredictiveScaler(
        inner,
        PredictiveSettings(horizon=600.0),
        clock=lambda: clock[0],
        on_guard=lambda on, err: switches.append((on, err)),
    )
    await replay(scaler, clock, 3 * DAY + 9 * 3600)
    inner.scale = 0.0  # the load vanishes: the forecast of the usual morning is now far off
    reading = await replay(scaler, clock, 3 * DAY + 12 * 3600)
    assert switches[0][0] is False and switches[0][1] > 1.0  # off, with the error that switched it off
    assert reading.value < 5.0  # not the stale forecast of a usual noon (100)
    # once the model has learnt the new level, the error is low again and prediction comes back
    await replay(scaler, clock, 3 * DAY + 20 * 3600)
    assert switches[-1][0] is True and scaler.guard.enabled


@pytest.mark.parametrize("raw", ["horizon=soon", "mode=maybe"])
def test_bad_annotation(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_predictive(raw)
