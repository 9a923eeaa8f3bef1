"""Forecasting a metric from its own history: history in, forecast with an uncertainty band out. No I/O.

History is a sequence of equally spaced values (one per `step` seconds, oldest first, the last one the most
recent complete step). Two models, chosen between by `ebb simulate` / `python -m bench.predictive`:

- `SeasonalQuantile`: the values at the same time of day (and of week, once a week of history exists), a few
  steps either side, give the band as quantiles; the recent level, compared with what the same seasonal
  profile predicted for the recent past, scales it (news bursts, holidays, growth).
- `HoltWinters`: additive level, trend and daily season, updated online one step at a time; the band is the
  point forecast +- a multiple of the recent one-step error.

Both are walk-forward: a forecast only ever reads the history it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

DAY = 86400.0
WEEK = 7 * DAY

ModelName = Literal["seasonal", "holt-winters"]
MODELS: tuple[ModelName, ...] = ("seasonal", "holt-winters")


@dataclass(frozen=True)
class Forecast:
    """`steps` values ahead of the history's end: step i covers [end + i*step, end + (i+1)*step)."""

    step: float
    mean: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def peak(self, steps: int, band: Literal["mean", "upper"] = "upper") -> float:
        """The largest value over the first `steps` steps (at least one)."""
        values = self.upper if band == "upper" else self.mean
        return max(values[: max(1, steps)]) if values else 0.0


class Forecaster(Protocol):
    """A model of one metric. `observe` appends one step of history (`filled`: a stand-in for a step nobody
    measured, e.g. the model's own forecast over a gap in the history, which must not count as a forecast that
    came true); `forecast` looks ahead."""

    step: float

    def observe(self, value: float, *, filled: bool = False) -> None: ...

    def forecast(self, steps: int) -> Forecast: ...


def _as_array(values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(values, dtype=np.float64)


@dataclass
class SeasonalQuantile:
    """Seasonal quantiles with a recent-level correction.

    For a step ahead, the candidates are the values at the same phase of each of the last `days` days and
    (once there is that much history) of the weeks 2..`weeks` back, `spread` steps either side. The band is
    their `lower_q`..`upper_q` quantiles, the point their median, each multiplied by the level ratio: (sum of
    the last `level_steps` values + 1) over (sum of the seasonal medians for those steps + 1), clipped to
    [1/max_ratio, max_ratio]. Before a day of history exists the recent values are the candidates.
    """

    step: float
    days: int = 7
    weeks: int = 3
    spread: int = 1
    lower_q: float = 0.1
    upper_q: float = 0.9
    level_steps: int = 6
    max_ratio: float = 4.0

    def __post_init__(self) -> None:
        self._per_day = max(1, round(DAY / self.step))
        self._per_week = 7 * self._per_day
        self._values = np.zeros(1024, dtype=np.float64)
        self._n = 0
        self._medians: dict[int, float] = {}
        offsets = np.arange(-self.spread, self.spread + 1)
        daily = np.arange(1, self.days + 1) * self._per_day
        weekly = np.arange(2, self.weeks + 1) * self._per_week
        self._daily = (daily[:, None] - offsets[None, :]).ravel()
        self._all = np.concatenate([self._daily, (weekly[:, None] - offsets[None, :]).ravel()])

    @property
    def history(self) -> npt.NDArray[np.float64]:
        return self._values[: self._n]

    def observe(self, value: float, *, filled: bool = False) -> None:
        if self._n == len(self._values):
            self._values = np.concatenate([self._values, np.zeros(len(self._values))])
        self._values[self._n] = float(value)
        self._n += 1

    def _candidates(self, index: int) -> npt.NDArray[np.float64]:
        """Past values (before position `n`) at the same phase as position `index`."""
        n = self._n
        lags = self._all if n >= self._per_week else self._daily
        idx = index - lags
        idx = idx[(idx >= 0) & (idx < n)]
        if len(idx) == 0:
            return self._values[max(0, n - self.level_steps) : n]
        out: npt.NDArray[np.float64] = self._values[idx]
        return out

    def _median(self, index: int) -> float:
        """The seasonal median for position `index`, as it was forecast before that step was observed."""
        cached = self._medians.get(index)
        if cached is None:
            saved, self._n = self._n, min(self._n, index)
            try:
                cand = self._candidates(index)
                cached = float(np.median(cand)) if len(cand) else 0.0
            finally:
                self._n = saved
            self._medians[index] = cached
            if len(self._medians) > 4 * self.level_steps + 64:
                for k in sorted(self._medians)[: len(self._medians) // 2]:
                    del self._medians[k]
        return cached

    def forecast(self, steps: int) -> Forecast:
        n = self._n
        if n == 0:
            zeros = (0.0,) * steps
            return Forecast(self.step, zeros, zeros, zeros)
        first = max(0, n - self.level_steps)
        expected = sum(self._median(i) for i in range(first, n))
        observed = float(self._values[first:n].sum())
        ratio = min(self.max_ratio, max(1.0 / self.max_ratio, (observed + 1.0) / (expected + 1.0)))
        mean, lower, upper = [], [], []
        for k in range(steps):
            cand = self._candidates(n + k)
            lo, mid, hi = np.quantile(cand, [self.lower_q, 0.5, self.upper_q])
            if k == 0:
                self._medians[n] = float(mid)
            mean.append(float(mid) * ratio)
            lower.append(float(lo) * ratio)
            upper.append(float(hi) * ratio)
        return Forecast(self.step, tuple(mean), tuple(lower), tuple(upper))


@dataclass
class HoltWinters:
    """Additive Holt-Winters (level, trend, daily season), updated online; band = point +- z x recent error.

    Forecasts are clipped at zero (a rate or a backlog is never negative).
    """

    step: float
    alpha: float = 0.3
    beta: float = 0.01
    gamma: float = 0.2
    z: float = 1.5
    error_steps: int = 48
    level: float | None = None
    trend: float = 0.0
    season: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self._period = max(1, round(DAY / self.step))
        if not self.season:
            self.season = [0.0] * self._period

    def observe(self, value: float, *, filled: bool = False) -> None:
        value = float(value)
        phase = self.count % self._period
        self.count += 1
        if self.level is None:
            # the first day only learns the shape: level = its mean, season = each step's offset from it
            self.season[phase] = value
            if self.count == self._period:
                self.level = float(np.mean(self.season))
                self.season = [v - self.level for v in self.season]
            return
        predicted = self.level + self.trend + self.season[phase]
        if not filled:  # the band is the error of forecasts checked against real values only
            self.errors.append(abs(value - predicted))
            if len(self.errors) > self.error_steps:
                del self.errors[0]
        previous = self.level
        self.level = self.alpha * (value - self.season[phase]) + (1 - self.alpha) * (previous + self.trend)
        self.trend = self.beta * (self.level - previous) + (1 - self.beta) * self.trend
        self.season[phase] = self.gamma * (value - self.level) + (1 - self.gamma) * self.season[phase]

    def forecast(self, steps: int) -> Forecast:
        if self.level is None:  # less than a day: the recent mean, flat
            seen = self.season[: self.count]
            flat = (float(np.mean(seen[-12:])) if seen else 0.0,) * steps
            return Forecast(self.step, flat, flat, flat)
        spread = self.z * (float(np.mean(self.errors)) if self.errors else 0.0)
        mean, lower, upper = [], [], []
        for k in range(steps):
            phase = (self.count + k) % self._period
            point = max(0.0, self.level + (k + 1) * self.trend + self.season[phase])
            mean.append(point)
            lower.append(max(0.0, point - spread))
            upper.append(point + spread)
        return Forecast(self.step, tuple(mean), tuple(lower), tuple(upper))


def make_forecaster(model: ModelName, step: float) -> Forecaster:
    """A fresh model of one metric sampled every `step` seconds."""
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be a positive number of seconds, got {step!r}")
    if model == "seasonal":
        return SeasonalQuantile(step)
    if model == "holt-winters":
        return HoltWinters(step)
    raise ValueError(f"unknown forecast model {model!r}: expected one of {', '.join(MODELS)}")


def forecast(
    history: Sequence[float] | npt.NDArray[np.float64], step: float, steps: int, model: ModelName = "seasonal"
) -> Forecast:
    """One-shot: fit `model` on `history` (equally spaced, oldest first) and forecast `steps` ahead."""
    fc = make_forecaster(model, step)
    for value in _as_array(history):
        fc.observe(float(value))
    return fc.forecast(steps)


@dataclass
class ForecastGuard:
    """Switches prediction off while the recent forecast error is too high, and back on once it is low again.

    Error = sum |forecast - actual| / (sum actual + `floor` x steps) over the last `window` steps: a relative
    error that does not explode on a near-empty series. Off above `max_error`, on again below `resume_error`.
    """

    window: int = 12
    max_error: float = 1.0
    resume_error: float = 0.7
    floor: float = 1.0
    enabled: bool = True
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def record(self, predicted: float, actual: float) -> bool | None:
        """Add one step's (forecast, actual); returns the new `enabled` when it changed, else None."""
        self.pairs.append((predicted, actual))
        if len(self.pairs) > self.window:
            del self.pairs[0]
        if len(self.pairs) < self.window:
            return None
        err = self.error()
        if self.enabled and err > self.max_error:
            self.enabled = False
            return False
        if not self.enabled and err < self.resume_error:
            self.enabled = True
            return True
        return None

    def error(self) -> float:
        if not self.pairs:
            return 0.0
        abs_err = sum(abs(p - a) for p, a in self.pairs)
        return abs_err / (sum(a for _, a in self.pairs) + self.floor * len(self.pairs))


__all__ = [
    "MODELS",
    "PREDICTIVE_ANNOTATION",
    "Forecast",
    "ForecastGuard",
    "Forecaster",
    "HoltWinters",
    "ModelName",
    "Prediction",
    "PredictiveSettings",
    "SeasonalQuantile",
    "forecast",
    "make_forecaster",
    "parse_predictive",
    "would_be_replicas",
]


# --- predictive settings ------------------------------------------------------------------------------

PREDICTIVE_ANNOTATION = "ebb.dev/predictive"
PredictiveMode = Literal["on", "observe"]
HoldRule = Literal["forecast", "cooldown"]


@dataclass(frozen=True)
class PredictiveSettings:
    """How prediction joins a ScaledObject's decision (from `ebb.dev/predictive` or a predictkube trigger).

    `horizon`: how far ahead (seconds) replicas should already be ready; `mode="observe"` forecasts and
    records without acting; `model`: the forecaster; `band`: "upper" sizes on the band's top, "mean" on the
    point forecast; `threshold`/`activation`: metric per replica and activation level of the forecast
    (None: the simulator derives them from the service rate and `probability`); `probability`: wake ahead
    of work when the forecast gives at least this chance of an item within the start-up delay (Poisson:
    1 - exp(-rate x delay)); `lead`: how far ahead (seconds) activation looks (None: the horizon); `hold`:
    "forecast" scales to zero without waiting out cooldownPeriod when nothing waits and the forecast is
    below activation, "cooldown" always waits it out; `recent`/`prior`: activation blends the forecast rate
    (weight `prior` seconds) with the items seen in the last `recent` seconds (0: forecast alone).
    """

    horizon: float = 600.0
    mode: PredictiveMode = "on"
    #: Chosen by `python -m bench.predictive` (docs/performance.md): at equal replica-seconds, Holt-Winters
    #: avoided as many or more cold starts than seasonal quantiles on the traces, and updates in O(1).
    model: ModelName = "holt-winters"
    #: The defaults below were chosen by sweeps of `python -m bench.predictive` (docs/performance.md): sizing on
    #: the point forecast, activation on the next start-up delay's forecast blended with the last 5 minutes'
    #: arrivals at a 15 % chance of an item, and no cooldown when nothing waits and nothing is forecast.
    band: Literal["mean", "upper"] = "mean"
    threshold: float | None = None
    activation: float | None = None
    max_error: float = 1.0
    probability: float = 0.15
    lead: float | None = 0.0
    hold: HoldRule = "forecast"
    recent: float = 300.0
    prior: float = 300.0

    @property
    def activation_lead(self) -> float:
        return self.horizon if self.lead is None else self.lead


@dataclass(frozen=True)
class Prediction:
    """What prediction says about one trigger at one poll, for metrics, Events and the dashboard.

    `forecast` is the latest forecast of the trigger's metric (step i covers [at + i*step, at + (i+1)*step));
    `value` is the metric prediction serves (or, in observe mode, would serve): max(reading, forecast peak);
    `replicas` what that value alone asks for (AverageValue: ceil(value / target); None for Value metrics);
    `enabled` False while the guard has prediction off because the recent `error` is above `max_error`;
    `past`: see the field.
    """

    metric_name: str
    mode: PredictiveMode
    enabled: bool
    error: float
    max_error: float
    at: float
    forecast: Forecast
    value: float
    replicas: int | None
    #: Forecasts of past steps made when the model was seeded from history, walk-forward (each before its step
    #: was observed): (step start, step, point, lower, upper), oldest first; only in the first prediction after
    #: a seed, so that the dashboard's band reaches back before a restart.
    past: tuple[tuple[float, float, float, float, float], ...] = ()

    @property
    def acting(self) -> bool:
        """True when the forecast joins the decision (mode on and the guard lets it)."""
        return self.mode == "on" and self.enabled

    def to_json(self) -> dict[str, object]:
        fc = self.forecast
        return {
            "metric": self.metric_name,
            "mode": self.mode,
            "guard": "on" if self.enabled else "off",
            "error": round(self.error, 4),
            "max_error": self.max_error,
            "at": self.at,
            "step": fc.step,
            "mean": [round(v, 4) for v in fc.mean],
            "lower": [round(v, 4) for v in fc.lower],
            "upper": [round(v, 4) for v in fc.upper],
            "value": round(self.value, 4),
            "replicas": self.replicas,
        }


def would_be_replicas(value: float, target: float, metric_type: str) -> int | None:
    """Replicas an AverageValue metric of `value` asks for at `target` per replica (None for other types)."""
    if metric_type != "AverageValue" or not target > 0 or not math.isfinite(value):
        return None
    return max(0, math.ceil(value / target - 1e-9))


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def parse_predictive(raw: str) -> PredictiveSettings:
    """`horizon=10m,mode=observe,model=holt-winters,band=mean,maxError=1.5`; ValueError says which item."""
    values: dict[str, object] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f"expected key=value items separated by commas, got {item!r}")
        try:
            if key == "horizon":
                seconds = _duration(value)
                if not (0 < seconds <= 7 * DAY):
                    raise ValueError
                values["horizon"] = seconds
            elif key == "mode":
                if value not in ("on", "observe"):
                    raise ValueError
                values["mode"] = value
            elif key == "model":
                if value not in MODELS:
                    raise ValueError
                values["model"] = value
            elif key == "band":
                if value not in ("mean", "upper"):
                    raise ValueError
                values["band"] = value
            elif key == "hold":
                if value not in ("forecast", "cooldown"):
                    raise ValueError
                values["hold"] = value
            elif key in ("recent", "prior"):
                seconds = _duration(value)
                if not (0 <= seconds <= DAY) or (key == "prior" and seconds == 0):
                    raise ValueError
                values[key] = seconds
            elif key == "lead":
                seconds = _duration(value)
                if not (0 <= seconds <= 7 * DAY):
                    raise ValueError
                values["lead"] = seconds
            elif key == "probability":
                number = float(value)
                if not (0 < number < 1):
                    raise ValueError
                values["probability"] = number
            elif key in ("threshold", "activation", "maxError"):
                number = float(value)
                if not (math.isfinite(number) and number >= 0):
                    raise ValueError
                values["max_error" if key == "maxError" else key] = number
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(
                f"unknown key {key!r} (expected horizon, mode, model, band, threshold, activation, probability, "
                "lead, hold, recent, prior, maxError)"
            ) from None
        except ValueError:
            raise ValueError(f"{key}: invalid value {value!r}") from None
    return PredictiveSettings(**values)  # type: ignore[arg-type]
