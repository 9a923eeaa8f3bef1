"""The HPA arithmetic against the Kubernetes docs' worked examples and the controller's exact rules."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from ebb.scaling.hpa import (
    DEFAULT_BEHAVIOR,
    MAX_INT32,
    HorizontalAutoscaler,
    MetricSample,
    ResolvedRules,
    SampleLike,
    replicas_for_metric,
    resolve_behavior,
    to_milli,
)
from ebb.scaling.types import Behavior, LifecycleState, ScalingPolicy, ScalingRules

BIG_UP = ScalingRules(policies=(ScalingPolicy("Pods", 1000, 15),))  # no practical scale-up limit
NO_DOWN_WINDOW = ScalingRules(stabilization_window_seconds=0)
UP_10_PERCENT = ScalingRules(policies=(ScalingPolicy("Percent", 10, 60),))


def demand(replicas: float, target: float = 1.0) -> list[MetricSample]:
    """An AverageValue metric whose total asks for exactly `replicas` pods (ceil(value / target))."""
    return [MetricSample(replicas * target, target, "AverageValue", "s0-queue")]


# --- behavior defaults ------------------------------------------------------------------------------


def test_unset_behavior_resolves_to_documented_defaults() -> None:
    r = resolve_behavior(None)
    assert r.scale_up == ResolvedRules(0, "Max", (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), 0.1)
    assert r.scale_down == ResolvedRules(300, "Max", (ScalingPolicy("Percent", 100, 15),), 0.1)
    assert resolve_behavior(DEFAULT_BEHAVIOR) == r


@pytest.mark.parametrize(
    ("behavior", "expect_up", "expect_down"),
    [
        # Only the scale-down window given: its policies and select policy still default.
        (
            Behavior(scale_down=ScalingRules(stabilization_window_seconds=60)),
            ResolvedRules(0, "Max", (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), 0.1),
            ResolvedRules(60, "Max", (ScalingPolicy("Percent", 100, 15),), 0.1),
        ),
        # Policies given, window not: scale-down window comes from the controller flag (300).
        (
            Behavior(scale_down=ScalingRules(policies=(ScalingPolicy("Pods", 4, 60),), select_policy="Min")),
            ResolvedRules(0, "Max", (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), 0.1),
            ResolvedRules(300, "Min", (ScalingPolicy("Pods", 4, 60),), 0.1),
        ),
        # Per-direction tolerance (k8s >= 1.33) and a Disabled direction.
        (
            Behavior(scale_up=ScalingRules(tolerance=0.02, select_policy="Disabled")),
            ResolvedRules(0, "Disabled", (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), 0.02),
            ResolvedRules(300, "Max", (ScalingPolicy("Percent", 100, 15),), 0.1),
        ),
    ],
)
def test_partial_behavior_fills_only_missing_fields(
    behavior: Behavior, expect_up: ResolvedRules, expect_down: ResolvedRules
) -> None:
    r = resolve_behavior(behavior)
    assert (r.scale_up, r.scale_down) == (expect_up, expect_down)


# --- replica calculator -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "args", "kwargs", "expected"),
    [
        # HPA docs: 200m against 100m doubles, 50m halves (ratio on a per-replica value).
        ("docs 200m/100m doubles", (0.2, 0.1, "Value", 1), {}, 2),
        ("docs 200m/100m doubles 4", (0.2, 0.1, "Value", 4), {}, 8),
        ("docs 50m/100m halves", (0.05, 0.1, "Value", 4), {}, 2),
        # Tolerance 0.1: 1.05 -> no change; the band edges are inclusive (1.1 and 0.9 keep current).
        ("ratio 1.05 within tolerance", (105, 100, "Value", 10), {}, 10),
        ("ratio 1.1 edge still within", (110, 100, "Value", 10), {}, 10),
        ("ratio 1.11 leaves the band", (111, 100, "Value", 10), {}, 12),  # ceil(11.1)
        ("ratio 0.9 edge still within", (90, 100, "Value", 10), {}, 10),
        ("ratio 0.89 leaves the band", (89, 100, "Value", 10), {}, 9),  # ceil(8.9)
        # Value uses the ready pods, not the current count: ceil(2.0 * 5).
        ("Value times ready pods", (200, 100, "Value", 10), {"ready_replicas": 5}, 10),
        # Value from zero replicas: ceil(ratio), no tolerance (getUsageRatioReplicaCount).
        ("Value from zero", (250, 100, "Value", 0), {}, 3),
        ("Value from zero, nothing to do", (0, 100, "Value", 0), {}, 0),
        # External AverageValue: value is a total; 95 queued at 10 per pod -> 10.
        ("AverageValue total/target", (95, 10, "AverageValue", 1), {}, 10),
        # 95 / (10 * 9) = 1.055 is within tolerance of 9 pods.
        ("AverageValue within tolerance", (95, 10, "AverageValue", 9), {}, 9),
        ("AverageValue from zero", (95, 10, "AverageValue", 0), {}, 10),
        ("AverageValue to zero", (0, 10, "AverageValue", 5), {}, 0),
        # Milli precision: float 1.1 / 0.1 is 11.000000000000002 (ceil 12); as 1100m / 100m it is 11.
        ("milli precision", (1.1, 0.1, "AverageValue", 0), {}, 11),
        # Per-direction tolerances.
        ("tight up tolerance scales", (105, 100, "Value", 10), {"up_tolerance": 0.01}, 11),  # ceil(10.5)
        ("loose down tolerance holds", (85, 100, "Value", 10), {"down_tolerance": 0.2}, 10),
        ("loose up does not loosen down", (85, 100, "Value", 10), {"up_tolerance": 0.5}, 9),  # ceil(8.5)
        # Utilization: the blog's 50 replicas at 90% against 75% -> 60.
        ("Utilization blog example", (90, 75, "Utilization", 50), {}, 60),
        # Utilization is an integer percent: 85.9 -> 85; ceil(50 * 85 / 75) = 57 (58 untruncated).
        ("Utilization truncated", (85.9, 75, "Utilization", 50), {}, 57),
        ("Utilization without pods", (90, 75, "Utilization", 0), {}, 0),
        # cpu/memory AverageValue is a per-pod average: 0.2 cores per pod against 0.1 -> double.
        ("resource per-pod average", (0.2, 0.1, "AverageValue", 3), {"resource": True}, 6),
        # KEDA serves NaN, Inf and negatives as 0.
        ("NaN is zero", (math.nan, 10, "AverageValue", 3), {}, 0),
        ("negative is zero", (-5, 10, "AverageValue", 3), {}, 0),
        # No usable target: a positive value asks for everything, zero leaves the count alone.
        ("target zero positive", (5, 0, "AverageValue", 3), {}, MAX_INT32),
        ("target zero and zero value", (0, 0, "AverageValue", 3), {}, 3),
        ("huge ratio capped at int32", (1e12, 0.001, "AverageValue", 1), {}, MAX_INT32),
    ],
)
def test_replicas_for_metric(case: str, args: tuple[Any, ...], kwargs: dict[str, Any], expected: int) -> None:
    assert replicas_for_metric(*args, **kwargs) == expected, case


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        (0.0004, 0),
        (0.0005, 1),
        (0.0006, 1),
        (1.1, 1100),
        (2.5, 2500),
        (math.inf, 0),
        (math.nan, 0),
        (-1.0, 0),
    ],
)
def test_to_milli_formats_like_keda(value: float, milli: int) -> None:
    # %.3f rounds the exact binary value (0.0005 is 0.00050000000000000001...), as Go's %.3f does.
    assert to_milli(value) == milli


# --- reconcileAutoscaler ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "min_r", "max_r", "current", "samples", "expected", "reason"),
    [
        ("above max -> max", 1, 10, 15, demand(15), 10, "AboveMaxReplicas"),
        ("below min -> min", 3, 10, 1, demand(1), 3, "BelowMinReplicas"),
        ("zero with min 1 is left alone", 1, 10, 0, demand(50), 0, "ScalingDisabled"),
        ("min 0 scales from zero", 0, 10, 0, demand(3), 3, "DesiredWithinRange"),
        (
            "highest metric wins",
            1,
            100,
            1,
            [MetricSample(10, 5, "AverageValue", "a"), MetricSample(100, 5, "AverageValue", "b")],
            20,
            "DesiredWithinRange",
        ),
        (
            "missing metric: still scales up",
            1,
            100,
            4,
            [MetricSample(None, 5, "AverageValue", "a"), MetricSample(100, 5, "AverageValue", "b")],
            20,
            "DesiredWithinRange",
        ),
        (
            "missing metric: never scales down",
            1,
            100,
            4,
            [MetricSample(None, 5, "AverageValue", "a"), MetricSample(1, 5, "AverageValue", "b")],
            4,
            "FailedComputeMetricsReplicas",
        ),
        ("all metrics missing", 1, 100, 4, [MetricSample(None, 5)], 4, "FailedComputeMetricsReplicas"),
        ("no metrics at all", 1, 100, 4, [], 4, "FailedComputeMetricsReplicas"),
        ("desired above max is clamped", 1, 10, 5, demand(50), 10, "TooManyReplicas"),
        ("desired below min is clamped", 2, 10, 5, demand(0), 2, "TooFewReplicas"),
        ("plain tuples are accepted", 1, 100, 1, [(30.0, 10.0, "AverageValue")], 3, "DesiredWithinRange"),
    ],
)
def test_reconcile_rules(
    case: str, min_r: int, max_r: int, current: int, samples: list[SampleLike], expected: int, reason: str
) -> None:
    hpa = HorizontalAutoscaler(min_r, max_r, Behavior(scale_up=BIG_UP, scale_down=NO_DOWN_WINDOW))
    result = hpa.desired(samples, current, now=1000.0)
    assert (result.desired_replicas, result.reason) == (expected, reason), case


def test_reason_message_names_the_metric_above_target() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior(scale_up=BIG_UP))
    result = hpa.desired([MetricSample(50, 10, "AverageValue", "s0-redis-jobs")], 1, now=0.0)
    assert result.desired_replicas == 5
    assert "s0-redis-jobs above target" in result.message
    assert result.metric_desired_replicas == 5


# --- scale-up rate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behavior", "current", "expected", "reason"),
    [
        # Default behavior: max(+100%, +4) per 15 s. From 1: max(ceil(1*2)=2, 1+4=5) = 5.
        (Behavior(), 1, 5, "ScaleUpLimit"),
        # From 10: max(ceil(10*2)=20, 10+4=14) = 20.
        (Behavior(), 10, 20, "ScaleUpLimit"),
        # No behavior: the legacy limit max(2 * current, 4): from 1 -> 4, from 10 -> 20.
        (None, 1, 4, "ScaleUpLimit"),
        (None, 10, 20, "ScaleUpLimit"),
        # selectPolicy Min picks the smaller proposal: from 10, min(20, 14) = 14.
        (Behavior(scale_up=ScalingRules(select_policy="Min")), 10, 14, "ScaleUpLimit"),
        # Disabled: no scale-up at all.
        (Behavior(scale_up=ScalingRules(select_policy="Disabled")), 10, 10, "ScaleUpLimit"),
        # Percent rounds up: 10% of 10 is exactly 11; Kubernetes computes 50 * (1 + 10/100) in floating point,
        # 55.00000000000001, and its ceil is 56: the same arithmetic is kept.
        (Behavior(scale_up=UP_10_PERCENT), 10, 11, "ScaleUpLimit"),
        (Behavior(scale_up=UP_10_PERCENT), 50, 56, "ScaleUpLimit"),
    ],
)
def test_scale_up_limit(behavior: Behavior | None, current: int, expected: int, reason: str) -> None:
    hpa = HorizontalAutoscaler(1, 100, behavior)
    result = hpa.desired(demand(100), current, now=0.0)
    assert (result.desired_replicas, result.reason) == (expected, reason)


def test_scale_up_events_count_within_their_period_only() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior())
    assert hpa.desired(demand(100), 1, now=0.0).desired_replicas == 5  # 1 -> 5
    # 10 s later the +4 still counts: the period started at 5 - 4 = 1, so the limit is still 5.
    assert hpa.desired(demand(100), 5, now=10.0).desired_replicas == 5
    # At exactly 15 s the event is no longer strictly inside (getReplicasChangePerPeriod uses After).
    assert hpa.desired(demand(100), 5, now=14.999).desired_replicas == 5
    # From 5 with a clean period: max(10, 9) = 10.
    assert hpa.desired(demand(100), 5, now=15.0).desired_replicas == 10
    assert [c for _, c in hpa.state.scale_up_events] == [4, 5]


def test_outdated_scale_event_slot_is_reused() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior())
    hpa.desired(demand(100), 1, now=0.0)  # +4
    hpa.desired(demand(100), 5, now=100.0)  # +5, the first event is older than 15 s and gets replaced
    assert hpa.state.scale_up_events == [(100.0, 5)]


def test_legacy_path_stores_no_scale_events() -> None:
    hpa = HorizontalAutoscaler(1, 100, None)
    assert hpa.desired(demand(100), 1, now=0.0).desired_replicas == 4
    assert hpa.desired(demand(100), 4, now=1.0).desired_replicas == 8  # no memory: doubles every sync
    assert hpa.state.scale_up_events == [] and hpa.state.scale_down_events == []


# --- scale-down rate -------------------------------------------------------------------------------


def test_docs_scale_down_four_pods_or_ten_percent_per_minute() -> None:
    """Docs: Pods 4/60 s and Percent 10/60 s, the bigger change wins: 80 -> 72 (10%) ... below 40, 4 pods."""
    behavior = Behavior(
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            policies=(ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)),
        )
    )
    hpa = HorizontalAutoscaler(1, 100, behavior)
    current, seen = 80, []
    for minute in range(14):
        current = hpa.desired(demand(10), current, now=60.0 * minute).desired_replicas
        seen.append(current)
    # Each step keeps min(current - 4, int(current * 0.9)):
    # 80->72 (72<76), 72->64 (64.8), 64->57 (57.6), 57->51 (51.3), 51->45 (45.9), 45->40 (40.5),
    # 40->36 (both), 36->32 (both), 32->28 (28.8 and 28), 28->24 (24 < 25.2), 24->20, 20->16, 16->12,
    # 12->10 (the metric asks for 10, above the limit 8).
    assert seen == [72, 64, 57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]


def test_scale_down_limit_holds_within_the_period() -> None:
    behavior = Behavior(
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            policies=(ScalingPolicy("Pods", 4, 60), ScalingPolicy("Percent", 10, 60)),
        )
    )
    hpa = HorizontalAutoscaler(1, 100, behavior)
    assert hpa.desired(demand(10), 80, now=0.0).desired_replicas == 72
    # 30 s later the period still starts at 80: the limit is 72, already reached.
    held = hpa.desired(demand(10), 72, now=30.0)
    assert (held.desired_replicas, held.reason) == (72, "ScaleDownLimit")
    # At exactly 60 s the event has left the period (strict): 72 -> 64.
    assert hpa.desired(demand(10), 72, now=60.0).desired_replicas == 64


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        # Docs: Percent 10/60 and Pods 5/60 with selectPolicy Min: at most 5 pods per minute.
        (100, 95),  # max(int(100 * 0.9) = 90, 100 - 5 = 95)
        (30, 27),  # max(int(30 * 0.9) = 27, 25)
    ],
)
def test_docs_scale_down_select_policy_min(current: int, expected: int) -> None:
    behavior = Behavior(
        scale_down=ScalingRules(
            stabilization_window_seconds=0,
            select_policy="Min",
            policies=(ScalingPolicy("Percent", 10, 60), ScalingPolicy("Pods", 5, 60)),
        )
    )
    hpa = HorizontalAutoscaler(1, 100, behavior)
    assert hpa.desired(demand(1), current, now=0.0).desired_replicas == expected


def test_docs_scale_down_disabled() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior(scale_down=ScalingRules(select_policy="Disabled")))
    result = hpa.desired(demand(1), 10, now=0.0)
    assert result.desired_replicas == 10
    # Scale-up still works.
    assert hpa.desired(demand(12), 10, now=1.0).desired_replicas == 12


def test_docs_limit_scale_down_rate_ten_percent() -> None:
    behavior = Behavior(
        scale_down=ScalingRules(stabilization_window_seconds=0, policies=(ScalingPolicy("Percent", 10, 60),))
    )
    hpa = HorizontalAutoscaler(1, 100, behavior)
    assert hpa.desired(demand(1), 50, now=0.0).desired_replicas == 45  # int(50 * 0.9)


# --- stabilization ---------------------------------------------------------------------------------


def test_stabilization_window_holds_the_highest_recommendation() -> None:
    """Docs' 'change downscale stabilization window' example: 60 s."""
    hpa = HorizontalAutoscaler(1, 100, Behavior(scale_down=ScalingRules(stabilization_window_seconds=60)))
    assert hpa.desired(demand(8), 8, now=0.0).desired_replicas == 8
    held = hpa.desired(demand(3), 8, now=15.0)
    assert (held.desired_replicas, held.reason) == (8, "ScaleDownStabilized")
    assert hpa.desired(demand(4), 8, now=30.0).desired_replicas == 8
    # Just before 60 s the recommendation of 8 made at t=0 is still inside the window.
    assert hpa.desired(demand(2), 8, now=59.999).desired_replicas == 8
    # At 60 s it is out (strict After): the highest left is 4 (t=30).
    assert hpa.desired(demand(2), 8, now=60.0).desired_replicas == 4


def test_scale_up_stabilization_uses_the_lowest_recommendation() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior(scale_up=ScalingRules(stabilization_window_seconds=30)))
    assert hpa.desired(demand(2), 2, now=0.0).desired_replicas == 2
    up = hpa.desired(demand(6), 2, now=10.0)
    # The lowest recommendation of the last 30 s is 2: no scale-up yet.
    assert (up.desired_replicas, up.reason) == (2, "ScaleUpStabilized")
    assert hpa.desired(demand(6), 2, now=31.0).desired_replicas == 6


def test_legacy_stabilization_is_300s_and_inclusive_at_the_cutoff() -> None:
    hpa = HorizontalAutoscaler(1, 100, None)
    assert hpa.desired(demand(10), 10, now=0.0).desired_replicas == 10
    assert hpa.desired(demand(2), 10, now=100.0).desired_replicas == 10
    # stabilizeRecommendation drops samples strictly Before the cutoff: at 300 s the t=0 sample still counts.
    assert hpa.desired(demand(2), 10, now=300.0).desired_replicas == 10
    assert hpa.desired(demand(2), 10, now=300.5).desired_replicas == 2


def test_initial_recommendation_is_the_current_count() -> None:
    hpa = HorizontalAutoscaler(1, 100, Behavior())
    # First sync ever: the current count (6) is recorded, so the default 300 s window holds it.
    assert hpa.desired(demand(1), 6, now=0.0).desired_replicas == 6
    assert hpa.state.recommendations[0] == (0.0, 6)


def test_rebuilt_from_copied_state_decides_the_same() -> None:
    state = LifecycleState()
    hpa = HorizontalAutoscaler(1, 100, Behavior(), state=state)
    hpa.desired(demand(100), 1, now=0.0)
    hpa.desired(demand(2), 5, now=20.0)
    twin = HorizontalAutoscaler(1, 100, Behavior(), state=copy.deepcopy(state))
    a = hpa.desired(demand(100), 5, now=25.0)
    b = twin.desired(demand(100), 5, now=25.0)
    assert a == b


def test_tolerance_from_behavior_applies() -> None:
    tight = ScalingRules(tolerance=0.01, policies=BIG_UP.policies)
    hpa = HorizontalAutoscaler(1, 100, Behavior(scale_up=tight))
    assert hpa.desired([MetricSample(105, 100, "Value")], 10, now=0.0).desired_replicas == 11
    default = HorizontalAutoscaler(1, 100, Behavior(scale_up=BIG_UP))
    assert default.desired([MetricSample(105, 100, "Value")], 10, now=0.0).desired_replicas == 10
