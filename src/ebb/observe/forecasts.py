"""The forecasts of forecasting triggers (predictkube, ebb.dev/predictive), kept in memory for the dashboard.

Per object and trigger metric: each step's forecast as it was made before that step (point and band, so the
dashboard draws it beside the values the trigger then read), and the latest forecast ahead. After a restart, the
steps a seeded forecaster replayed from history (`Prediction.past`) come first, so the band reaches back.
Bounded: at most `max_steps` past steps per trigger. Filled from PollRecords like every observer; never read by
a decision.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.forecast import Prediction

#: Past forecast steps kept per trigger (a day of 1-minute steps).
MAX_STEPS = 1440


@dataclass
class _Trigger:
    #: (step start, step length, point, lower, upper) per past step, oldest first.
    steps: deque[tuple[float, float, float, float, float]]
    latest: Prediction | None = None


@dataclass
class ForecastLog(Observer):
    """The recent forecasts per object and trigger metric; `series(key, start, end)` for the JSON API."""

    max_steps: int = MAX_STEPS
    _objects: dict[str, dict[str, _Trigger]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self, record: PollRecord) -> None:
        if not record.predictions:
            return
        with self._lock:
            triggers = self._objects.setdefault(record.ref.key, {})
            for p in record.predictions:
                t = triggers.get(p.metric_name)
                if t is None:
                    t = triggers[p.metric_name] = _Trigger(deque(maxlen=self.max_steps))
                for step in p.past:  # forecasts replayed when the model was seeded (before a restart)
                    if not t.steps or step[0] > t.steps[-1][0]:
                        t.steps.append(step)
                fc = p.forecast
                if fc.mean and (not t.steps or t.steps[-1][0] != p.at):
                    t.steps.append((p.at, fc.step, fc.mean[0], fc.lower[0], fc.upper[0]))
                t.latest = p

    def removed(self, ref: ObjectRef) -> None:
        with self._lock:
            self._objects.pop(ref.key, None)

    def series(self, key: str, start: float, end: float) -> list[dict[str, Any]]:
        """Per trigger metric: past steps overlapping [start, end] and the latest prediction (with its curve
        ahead), as JSON."""
        with self._lock:
            triggers = {name: (list(t.steps), t.latest) for name, t in self._objects.get(key, {}).items()}
        out = []
        for name, (steps, latest) in sorted(triggers.items()):
            past = [
                {"time": at, "step": step, "mean": round(m, 4), "lower": round(lo, 4), "upper": round(hi, 4)}
                for at, step, m, lo, hi in steps
                if at + step >= start and at <= end
            ]
            out.append({"metric": name, "steps": past, "latest": latest.to_json() if latest is not None else None})
        return out


__all__ = ["MAX_STEPS", "ForecastLog"]
