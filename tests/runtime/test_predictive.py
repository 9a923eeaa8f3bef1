"""ebb.dev/predictive under `ebb run`: the forecast of a trigger's own metric joins its reading."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest

from ebb.observe.metrics import MetricsObserver
from ebb.runtime.observer import ObjectRef, Observer, Observers
from ebb.runtime.predictive import PredictiveScaler
from ebb.runtime.scaled_object import ScaledObjectLoop
from ebb.scalers.base import MetricSpec, Scaler, ScalerMetadata, ScalerReading, TriggerContext
from ebb.scaling.forecast import PredictiveSettings, parse_predictive
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import ObjectPolicy, ScalingEvent

from ._support import Recorder

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
    # lead=30m: activation looks as far ahead as the horizon (the default, 0, looks one step ahead)
    scaler = PredictiveScaler(Wave(clock), parse_predictive("horizon=30m,lead=30m"), clock=lambda: clock[0])
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


# --- through the scaling loop: predictions in every PollRecord, guard Events, metrics, observe mode ---------


class MemoryTarget:
    """A ScaleTarget that only remembers a number (no process: the loop's decisions are what is tested)."""

    def __init__(self) -> None:
        self.replicas = 0

    async def get_replicas(self) -> int:
        return self.replicas

    async def set_replicas(self, n: int) -> None:
        self.replicas = n

    def ready_replicas(self) -> int:
        return self.replicas

    async def close(self) -> None:
        self.replicas = 0


def wave_loop(raw: str, clock: list[float], observer: Observer) -> tuple[ScaledObjectLoop, Wave, MemoryTarget]:
    inner = Wave(clock)
    scaler = PredictiveScaler(inner, parse_predictive(raw), clock=lambda: clock[0])
    target = MemoryTarget()
    decider = ScaledObjectDecider(ObjectPolicy(max_replicas=20, polling_interval=60.0, cooldown_period=300.0))
    loop = ScaledObjectLoop(
        ObjectRef("ScaledObject", "default", "wave"),
        [scaler],
        target,  # type: ignore[arg-type]
        decider,
        polling_interval=60.0,
        observer=observer,
        clock=lambda: clock[0],
    )
    return loop, inner, target


async def run_loop(loop: ScaledObjectLoop, clock: list[float], until: float, every: float = 60.0) -> None:
    while clock[0] < until:
        await loop.poll_once()
        clock[0] += every


def sample(metrics: MetricsObserver, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"namespace": "default", "scaledObject": "wave", **labels})


async def test_the_loop_reports_guard_switches_as_events_and_metrics() -> None:
    clock = [0.0]
    rec = Recorder()
    metrics = MetricsObserver()
    loop, inner, _ = wave_loop("horizon=10m", clock, Observers([rec, metrics]))
    labels = {"metric": "s0-wave", "scaler": "s0-wave", "triggerIndex": "0", "type": "scaledobject"}
    await run_loop(loop, clock, 3 * DAY + 9 * 3600)
    assert rec.polls[-1].predictions and rec.polls[-1].predictions[0].metric_name == "s0-wave"
    assert sample(metrics, "ebb_predictive_guard_active", **labels) == 0
    assert sample(metrics, "ebb_predictive_forecast_value", band="upper", **labels) is not None
    before = len(rec.events)  # (the first day's flat forecasts may have switched it off and on already)
    inner.scale = 0.0  # the load vanishes: the usual morning's forecast is now far off
    disabled: list[ScalingEvent] = []
    while not disabled and clock[0] < 3 * DAY + 12 * 3600:
        await run_loop(loop, clock, clock[0] + 60.0)
        disabled = [e for _, e in rec.events[before:] if e.reason == "PredictionDisabled"]
    assert len(disabled) == 1 and disabled[0].type == "Warning" and "maxError 1" in disabled[0].message
    assert sample(metrics, "ebb_predictive_guard_active", **labels) == 1
    error = sample(metrics, "ebb_predictive_forecast_error", **labels)
    assert error is not None and error > 1.0
    await run_loop(loop, clock, 3 * DAY + 20 * 3600)
    assert "PredictionResumed" in [e.reason for _, e in rec.events[before:]]
    assert sample(metrics, "ebb_predictive_guard_active", **labels) == 0


async def test_observe_mode_exports_what_prediction_would_do_without_doing_it() -> None:
    clock = [0.0]
    rec = Recorder()
    metrics = MetricsObserver()
    loop, _, target = wave_loop("horizon=30m,mode=observe", clock, Observers([rec, metrics]))
    labels = {"metric": "s0-wave", "scaler": "s0-wave", "triggerIndex": "0", "type": "scaledobject"}
    await run_loop(loop, clock, 3 * DAY + 6 * 3600 - 20 * 60)  # 05:40 on day 4: nothing waits yet
    assert target.replicas == 0  # observe mode never acts
    would = sample(metrics, "ebb_predictive_would_be_replicas", mode="observe", **labels)
    assert would is not None and would >= 1  # ... but says the morning would have started replicas
    assert rec.polls[-1].predictions[0].mode == "observe"


async def test_hold_forecast_scales_to_zero_without_the_cooldown_when_no_work_is_forecast() -> None:
    """Evening of day 4: the wave ends at 18:00. With hold=forecast the pool stops at the first poll with
    nothing waiting and nothing forecast; without it, it waits out the 300 s cooldown."""
    stopped = {}
    for raw in ("horizon=10m,lead=0,hold=cooldown", "horizon=10m,lead=0,hold=forecast"):
        clock = [0.0]
        loop, _, target = wave_loop(raw, clock, Recorder())
        await run_loop(loop, clock, 3 * DAY + 17 * 3600)
        assert target.replicas > 0
        while target.replicas > 0:
            await run_loop(loop, clock, clock[0] + 1)
        stopped[raw] = clock[0]
    assert stopped["horizon=10m,lead=0,hold=forecast"] < stopped["horizon=10m,lead=0,hold=cooldown"] - 200
