"""Decisions per second of the pure core: `ScaledObjectDecider.decide` and `HorizontalAutoscaler` alone.

The decider runs in direct mode with two triggers and an HPA `behavior` (stabilization windows and rate
policies, so the scale-event memory is exercised); the metric values follow a wave so that the object
activates, scales up, scales down and deactivates over and over, not one cached path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from bench._common import write_result
from ebb.scaling.hpa import HorizontalAutoscaler, MetricSample
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import Behavior, ObjectPolicy, ScalingPolicy, ScalingRules, TriggerResult

BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        stabilization_window_seconds=0,
        select_policy="Max",
        policies=(ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)),
    ),
    scale_down=ScalingRules(stabilization_window_seconds=60, policies=(ScalingPolicy("Percent", 50, 30),)),
)


def _wave(i: int) -> float:
    """A backlog that rises to 400 and falls back to 0 every 600 polls."""
    return max(0.0, 400.0 * math.sin(i * math.pi / 300))


def _rate(run: Callable[[int], object], seconds: float) -> tuple[float, int]:
    """Calls per second of run(i) over about `seconds` (after a short warm-up)."""
    for i in range(2000):
        run(i)
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for i in range(n, n + 1000):
            run(i)
        n += 1000
        if time.perf_counter() >= deadline:
            break
    return n / (time.perf_counter() - start), n


def decider_rate(seconds: float) -> tuple[float, int]:
    decider = ScaledObjectDecider(
        ObjectPolicy(min_replicas=0, max_replicas=50, polling_interval=1, cooldown_period=30, behavior=BEHAVIOR),
        mode="direct",
        obj="ScaledObject bench/decisions",
    )
    replicas = [0]

    def run(i: int) -> object:
        now = 1_000_000.0 + i  # one poll per simulated second
        value = _wave(i)
        results = (
            TriggerResult("s0-redis-jobs", target=10.0, value=value, active=value > 0),
            TriggerResult("s1-postgresql", target=20.0, value=value / 3, active=value > 30),
        )
        decision = decider.decide(results, replicas[0], now, ready_replicas=replicas[0])
        if decision.desired_replicas is not None:
            replicas[0] = decision.desired_replicas
        return decision

    return _rate(run, seconds)


def hpa_rate(seconds: float) -> tuple[float, int]:
    hpa = HorizontalAutoscaler(1, 50, BEHAVIOR)
    replicas = [1]

    def run(i: int) -> object:
        value = _wave(i) + 1
        result = hpa.desired(
            (MetricSample(value, 10.0, "AverageValue", "s0"), MetricSample(value / 3, 20.0, "AverageValue", "s1")),
            replicas[0],
            1_000_000.0 + i,
            ready_replicas=replicas[0],
        )
        replicas[0] = result.desired_replicas
        return result

    return _rate(run, seconds)


def main(seconds: float = 3.0) -> dict[str, object]:
    decider, n_decider = decider_rate(seconds)
    hpa, n_hpa = hpa_rate(seconds)
    result: dict[str, object] = {
        "method": (
            "single thread, time.perf_counter over >= `seconds` of back-to-back calls after 2000 warm-up calls; "
            "decider: direct mode, 2 triggers, HPA behavior with policies; values follow a 0..400 wave"
        ),
        "seconds": seconds,
        "decider_decisions_per_second": round(decider),
        "decider_calls": n_decider,
        "decider_microseconds_per_decision": round(1e6 / decider, 2),
        "hpa_decisions_per_second": round(hpa),
        "hpa_calls": n_hpa,
        "hpa_microseconds_per_decision": round(1e6 / hpa, 2),
    }
    write_result("decisions", result)
    print(
        f"decisions: ScaledObjectDecider {decider:,.0f}/s ({1e6 / decider:.1f} us), "
        f"HorizontalAutoscaler {hpa:,.0f}/s ({1e6 / hpa:.1f} us)"
    )
    return result


if __name__ == "__main__":
    main()
