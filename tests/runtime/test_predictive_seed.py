"""Seeding ebb.dev/predictive from history: a restarted runtime's forecaster is the one it had before the restart.

The model is replayed from what the history recorded (walk-forward: only what happened before now), so a
seeded scaler forecasts what a scaler that ran all along forecasts. End to end with a real `ebb run` and its
SQLite history file: `test_predictive_seed_run.py`; with the operator and a real Prometheus:
`tests/kube/test_predictive_seed.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from ebb.errors import SpecError
from ebb.runtime.observer import ObjectRef
from ebb.runtime.predictive import PredictiveScaler, with_prediction
from ebb.scalers.base import MetricSpec, Scaler, ScalerReading
from ebb.scaling.forecast import parse_predictive
from ebb.spec.loader import load_text
from ebb.spec.models import ScaledObject

from .test_predictive import DAY, Wave

SETTINGS = "horizon=30m,lead=30m"


class Recording(Scaler):
    """`inner`'s readings, each also written down with its time: what the history store records per poll."""

    def __init__(self, inner: Wave, clock: list[float]) -> None:
        super().__init__(inner.ctx, inner.meta)
        self.inner, self.clock = inner, clock
        self.history: list[tuple[float, float]] = []

    def metric_spec(self) -> MetricSpec:
        return self.inner.metric_spec()

    async def read(self) -> ScalerReading:
        reading = await self.inner.read()
        self.history.append((self.clock[0], reading.value))
        return reading


LIVE_FORECASTS: dict[float, tuple[float, float, float]] = {}


async def live_run(until: float, every: float = 30.0) -> tuple[PredictiveScaler, list[tuple[float, float]]]:
    """A scaler that ran from 0 to `until`, polled every `every` seconds, and the history it left. Each step's
    forecast as it made it live (point, lower, upper of its next step) goes to LIVE_FORECASTS by step start."""
    clock = [0.0]
    recording = Recording(Wave(clock), clock)
    scaler = PredictiveScaler(recording, parse_predictive(SETTINGS), clock=lambda: clock[0])
    LIVE_FORECASTS.clear()
    while clock[0] < until:
        await scaler.get_metric_and_activity()
        p = scaler.prediction()
        if p is not None:
            LIVE_FORECASTS[p.at] = (p.forecast.mean[0], p.forecast.lower[0], p.forecast.upper[0])
        clock[0] += every
    return scaler, recording.history


def fresh(clock: list[float], history: Sequence[tuple[float, float]] | None = None) -> PredictiveScaler:
    async def fetch(metric: str, start: float, end: float, step: float) -> Sequence[tuple[float, float]]:
        assert metric == "s0-wave" and end == clock[0] and start < end - 7 * DAY and step == 60.0
        return list(history or [])

    return PredictiveScaler(
        Wave(clock), parse_predictive(SETTINGS), clock=lambda: clock[0], seed_from=fetch if history else None
    )


async def test_a_seeded_scaler_forecasts_what_the_one_that_ran_all_along_forecasts() -> None:
    until = 3 * DAY + 5 * 3600 + 40 * 60  # 05:40 on day 4: still empty, the morning ahead
    live, history = await live_run(until)
    assert live.last_forecast is not None
    clock = [history[-1][0] + 1.0]  # restarted within the step of the last poll
    restarted = fresh(clock, history)
    first = await restarted.get_metric_and_activity()  # the first read after the restart
    assert restarted.seeded == len({int(t // 60) for t, _ in history}) - 1  # every whole step before now
    assert restarted.last_forecast is not None
    assert restarted.last_forecast.mean == pytest.approx(live.last_forecast.mean)
    assert restarted.last_forecast.upper == pytest.approx(live.last_forecast.upper)
    assert restarted.guard.error() == pytest.approx(live.guard.error())
    assert first.value > 0 and first.active  # the morning is forecast at the first poll, the backlog is empty
    prediction = restarted.prediction()
    assert prediction is not None and prediction.value == pytest.approx(first.value)
    # The last day's forecasts, replayed walk-forward for the dashboard, are the ones the live scaler made
    assert len(prediction.past) == 1440 and prediction.past[-1][0] == (int(clock[0] // 60) - 1) * 60
    for at, step, mean, lower, upper in prediction.past:
        assert step == 60 and (mean, lower, upper) == pytest.approx(LIVE_FORECASTS[at])
    later = restarted.prediction()
    assert later is not None and later.past == ()  # handed over once


async def test_without_history_the_first_reads_have_no_forecast() -> None:
    clock = [3 * DAY + 5 * 3600 + 40 * 60]
    scaler = fresh(clock)
    reading = await scaler.get_metric_and_activity()
    assert scaler.prediction() is None and reading.value == 0 and not reading.active


async def test_seeding_reads_only_values_from_before_now() -> None:
    until = 2 * DAY + 5 * 3600
    _, history = await live_run(until)
    now = until - 3 * 3600  # 02:00: history holds three more hours, which must not be read
    past = [(t, v) for t, v in history if t < now]
    ahead = [(t, 1000.0 + v) for t, v in history if t >= now]
    with_future, without = fresh([now], [*past, *ahead]), fresh([now], past)
    await with_future.get_metric_and_activity()
    await without.get_metric_and_activity()
    assert with_future.last_forecast is not None and without.last_forecast is not None
    assert with_future.last_forecast == without.last_forecast
    assert max(with_future.last_forecast.upper) < 1000.0


async def test_a_gap_in_the_history_keeps_the_daily_season_in_phase() -> None:
    """ebb was stopped from 20:00 until 04:00 the night before: the steps it missed are filled with the model's own
    forecast, so the restart still knows when the morning comes (skipped, they would shift the season by 8 h)."""
    until = 3 * DAY + 5 * 3600 + 40 * 60
    _, history = await live_run(until)
    gap = (2 * DAY + 20 * 3600, 3 * DAY + 4 * 3600)
    clock = [until]
    scaler = fresh(clock, [(t, v) for t, v in history if not gap[0] <= t < gap[1]])
    reading = await scaler.get_metric_and_activity()
    assert scaler.seeded == int(until // 60) - 480  # every step before now but the gap's eight hours
    assert reading.active and reading.value > 0  # the morning is ahead ...
    assert scaler.last_forecast is not None and scaler.last_forecast.mean[0] < 5.0  # ... and not here yet (05:40)


async def test_history_that_cannot_be_read_leaves_the_model_to_learn_live(caplog: pytest.LogCaptureFixture) -> None:
    clock = [DAY]

    async def broken(metric: str, start: float, end: float, step: float) -> Sequence[tuple[float, float]]:
        raise OSError("disk gone")

    scaler = PredictiveScaler(Wave(clock), parse_predictive(SETTINGS), clock=lambda: clock[0], seed_from=broken)
    reading = await scaler.get_metric_and_activity()  # read as usual
    assert not math.isnan(reading.value) and scaler.seeded == 0
    assert "cannot seed the forecast from history: disk gone" in caplog.text


OBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: wave
  annotations: {{"ebb.dev/predictive": "{annotation}"}}
spec:
  scaleTargetRef: {{name: wave}}
  triggers:
    - type: cron
      metadata: {{timezone: UTC, start: "0 6 * * *", end: "0 18 * * *", desiredReplicas: "3"}}
    - type: cpu
      metricType: Utilization
      metadata: {{value: "60"}}
"""


def _object(annotation: str) -> ScaledObject:
    so = load_text(OBJECT.format(annotation=annotation)).resources.scaled_objects()[0]
    assert isinstance(so, ScaledObject)
    return so


def test_with_prediction_wraps_every_trigger_but_resource_metrics() -> None:
    so = _object("horizon=10m")
    triggers = [Wave([0.0]), Wave([0.0])]
    triggers[1].type_name = "cpu"  # type: ignore[misc]
    wrapped = with_prediction(so, list(triggers), ref=ObjectRef("ScaledObject", "default", "wave"))
    assert isinstance(wrapped[0], PredictiveScaler) and wrapped[0].inner is triggers[0]
    assert wrapped[1] is triggers[1]


def test_a_bad_annotation_names_the_object_and_the_annotation() -> None:
    with pytest.raises(SpecError) as caught:
        with_prediction(_object("horizon=soon"), [Wave([0.0])])
    assert str(caught.value) == (
        "ScaledObject default/wave: metadata.annotations[ebb.dev/predictive]: horizon: invalid value 'soon'"
    )


async def test_a_long_pause_of_a_live_run_keeps_the_daily_season_in_phase() -> None:
    """The same night, live: no read from 20:00 to 04:00 (the machine slept). The steps it missed are filled like
    a seed's gap, not dropped, so 05:40 is still known as the hour before the morning."""
    clock = [0.0]
    scaler = PredictiveScaler(Wave(clock), parse_predictive(SETTINGS), clock=lambda: clock[0])
    while clock[0] < 2 * DAY + 20 * 3600:
        await scaler.get_metric_and_activity()
        clock[0] += 30.0
    clock[0] = 3 * DAY + 4 * 3600
    while clock[0] < 3 * DAY + 5 * 3600 + 40 * 60:
        reading = await scaler.get_metric_and_activity()
        clock[0] += 30.0
    assert reading.active and reading.value > 0
    assert scaler.last_forecast is not None and scaler.last_forecast.mean[0] < 5.0
