"""The forecaster: seasonal shape, level, band, walk-forward, the guard and the predictive annotation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebb.scaling.forecast import (
    ForecastGuard,
    HoltWinters,
    PredictiveSettings,
    SeasonalQuantile,
    forecast,
    make_forecaster,
    parse_predictive,
)

STEP = 300.0
PER_DAY = 288


def daily(days: int, level: float = 10.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i = np.arange(days * PER_DAY)
    values = level * (1 + np.sin(2 * np.pi * i / PER_DAY)) + rng.normal(0, noise, len(i))
    return np.maximum(values, 0.0)


@pytest.mark.parametrize("model", ["seasonal", "holt-winters"])
def test_a_daily_cycle_is_forecast(model: str) -> None:
    history = daily(10, noise=0.5)
    fc = forecast(history, STEP, steps=PER_DAY // 2, model=model)  # type: ignore[arg-type]
    truth = daily(11)[10 * PER_DAY : 10 * PER_DAY + PER_DAY // 2]
    error = np.mean(np.abs(np.asarray(fc.mean) - truth)) / np.mean(truth)
    assert error < 0.25
    assert all(lo <= m <= hi for lo, m, hi in zip(fc.lower, fc.mean, fc.upper, strict=True))


def test_the_level_correction_follows_a_burst() -> None:
    history = daily(8)
    burst = history.copy()
    burst[-6:] *= 3
    calm = forecast(history, STEP, 1).mean[0]
    hot = forecast(burst, STEP, 1).mean[0]
    assert hot > 2 * calm


def test_weekly_shape_once_a_week_is_known() -> None:
    # weekdays busy, weekends empty: the forecast for a Saturday is low once there are two weeks of history
    days = 19  # history ends on a Friday night (day 0 is a Monday)
    values = np.concatenate([np.full(PER_DAY, 10.0 if d % 7 < 5 else 0.0) for d in range(days)])
    model = SeasonalQuantile(STEP, days=1, weeks=2, spread=0)
    for v in values:
        model.observe(float(v))
    saturday = model.forecast(PER_DAY // 2)
    assert max(saturday.mean) <= 5.0


def test_empty_history_forecasts_zero() -> None:
    fc = forecast([], STEP, 3)
    assert fc.mean == (0.0, 0.0, 0.0) and fc.peak(3) == 0.0


def test_forecasts_are_walk_forward() -> None:
    """A forecast depends only on the history given: appending the future changes nothing before it."""
    values = daily(9, noise=1.0, seed=4)
    a, b = SeasonalQuantile(STEP), SeasonalQuantile(STEP)
    for v in values[: 8 * PER_DAY]:
        a.observe(float(v))
        b.observe(float(v))
    assert a.forecast(3) == b.forecast(3)


def test_holt_winters_never_goes_negative() -> None:
    model = HoltWinters(STEP)
    for v in [100.0] * 50 + [0.0] * 400:
        model.observe(v)
    fc = model.forecast(10)
    assert min(fc.mean) >= 0.0 and min(fc.lower) >= 0.0


@pytest.mark.parametrize(
    ("pairs", "enabled", "switches"),
    [
        ([(10.0, 10.0)] * 12, True, 0),  # perfect
        ([(10.0, 9.0)] * 12, True, 0),  # 10 % off
        ([(30.0, 5.0)] * 12, False, 1),  # far off: off
        ([(30.0, 5.0)] * 12 + [(5.0, 5.0)] * 12, True, 2),  # and back on once it is good again
        ([(1.0, 0.0)] * 12, True, 0),  # an empty series: the floor keeps the error relative to 1 item
    ],
)
def test_guard(pairs: list[tuple[float, float]], enabled: bool, switches: int) -> None:
    guard = ForecastGuard(window=12)
    changes = [c for p, a in pairs if (c := guard.record(p, a)) is not None]
    assert guard.enabled is enabled
    assert len(changes) == switches


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("horizon=10m", PredictiveSettings(horizon=600.0)),
        ("horizon=90s, mode=observe", PredictiveSettings(horizon=90.0, mode="observe")),
        (
            "model=holt-winters,band=mean,maxError=2",
            PredictiveSettings(model="holt-winters", band="mean", max_error=2.0),
        ),
        ("threshold=5,activation=0.5", PredictiveSettings(threshold=5.0, activation=0.5)),
        ("", PredictiveSettings()),
    ],
)
def test_parse_predictive(raw: str, expected: PredictiveSettings) -> None:
    assert parse_predictive(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("horizon=soon", "horizon: invalid value 'soon'"),
        ("horizon=0s", "horizon: invalid value '0s'"),
        ("mode=act", "mode: invalid value 'act'"),
        ("colour=blue", "unknown key 'colour'"),
        ("horizon", "expected key=value"),
        ("activation=-1", "activation: invalid value '-1'"),
    ],
)
def test_parse_predictive_errors(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_predictive(raw)


def test_make_forecaster_checks_its_step() -> None:
    with pytest.raises(ValueError, match="step"):
        make_forecaster("seasonal", math.nan)
