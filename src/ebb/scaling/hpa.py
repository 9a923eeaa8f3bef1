"""The Kubernetes HorizontalPodAutoscaler's arithmetic, as a pure function of numbers and time.

Follows kubernetes/kubernetes `pkg/controller/podautoscaler` (horizontal.go, replica_calculator.go, v1.33+
with per-direction tolerances) and the API defaulting of `pkg/apis/autoscaling/v2/defaults.go`. Each function
names the Kubernetes function it follows. Times are float seconds; the HPA's memory (recommendations and
scale events) lives in the `recommendations`, `scale_up_events` and `scale_down_events` fields of a
`LifecycleState`, so it is persisted with the rest of an object's state.

Where the controller compares instants it uses Go's strict `Before`/`After`; the same strictness is kept here
and the tests pin each boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ebb.scaling.types import (
    Behavior,
    LifecycleState,
    MetricType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

#: `--horizontal-pod-autoscaler-tolerance` default.
CLUSTER_TOLERANCE = 0.1
#: `--horizontal-pod-autoscaler-downscale-stabilization` default, seconds.
DOWNSCALE_STABILIZATION_WINDOW = 300
#: scaleUpLimitFactor / scaleUpLimitMinimum of horizontal.go (used when no behavior is set).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
MAX_INT32 = 2**31 - 1

_UP_STABILIZED_MSG = "recent recommendations were lower than current one, applying the lowest recent recommendation"
_DOWN_STABILIZED_MSG = "recent recommendations were higher than current one, applying the highest recent recommendation"
_UP_POLICIES = (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15))
_DOWN_POLICIES = (ScalingPolicy("Percent", 100, 15),)

#: The behavior Kubernetes documents as the default, every field filled in.
DEFAULT_BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        stabilization_window_seconds=0,
        select_policy="Max",
        policies=_UP_POLICIES,
        tolerance=CLUSTER_TOLERANCE,
    ),
    scale_down=ScalingRules(
        stabilization_window_seconds=DOWNSCALE_STABILIZATION_WINDOW,
        select_policy="Max",
        policies=_DOWN_POLICIES,
        tolerance=CLUSTER_TOLERANCE,
    ),
)


@dataclass(frozen=True)
class ResolvedRules:
    """One direction of behavior with nothing left unset."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float

    @property
    def longest_period(self) -> int:
        """getLongestPolicyPeriod."""
        return max((p.period_seconds for p in self.policies), default=0)


@dataclass(frozen=True)
class ResolvedBehavior:
    scale_up: ResolvedRules
    scale_down: ResolvedRules


def _fill(rules: ScalingRules | None, default: ScalingRules, window: int, tolerance: float) -> ResolvedRules:
    # copyHPAScalingRules: a field the user set wins, even an empty policy list.
    given = rules or ScalingRules()
    policies = given.policies if given.policies is not None else default.policies
    stabilization = given.stabilization_window_seconds
    if stabilization is None:
        stabilization = (
            default.stabilization_window_seconds if default.stabilization_window_seconds is not None else window
        )
    return ResolvedRules(
        stabilization_window_seconds=stabilization,
        select_policy=given.select_policy or default.select_policy or "Max",
        policies=tuple(policies or ()),
        tolerance=given.tolerance if given.tolerance is not None else tolerance,
    )


def resolve_behavior(
    behavior: Behavior | None,
    *,
    tolerance: float = CLUSTER_TOLERANCE,
    downscale_stabilization_window: int = DOWNSCALE_STABILIZATION_WINDOW,
) -> ResolvedBehavior:
    """Fill unset fields with the Kubernetes defaults.

    Follows GenerateHPAScaleUpRules / GenerateHPAScaleDownRules (API defaulting) and the controller's
    maybeInitScaleDownStabilizationWindow (an unset scale-down window is the controller flag, 300 s) and
    tolerancesForHpa (an unset tolerance is the cluster-wide one). `None` resolves to `DEFAULT_BEHAVIOR`.
    """
    b = behavior or Behavior()
    up_default = ScalingRules(stabilization_window_seconds=0, select_policy="Max", policies=_UP_POLICIES)
    down_default = ScalingRules(select_policy="Max", policies=_DOWN_POLICIES)
    return ResolvedBehavior(
        scale_up=_fill(b.scale_up, up_default, 0, tolerance),
        scale_down=_fill(b.scale_down, down_default, downscale_stabilization_window, tolerance),
    )


# --- replica calculator ----------------------------------------------------------------------------


def to_milli(value: float) -> int:
    """A value in the milli-units the HPA sees: KEDA formats it with `%.3f`; NaN, Inf and negatives are 0."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0
    return int(f"{value:.3f}".replace(".", ""))


def _within(ratio: float, up: float, down: float) -> bool:
    """Tolerances.isWithin."""
    return (1.0 - down) <= ratio <= (1.0 + up)


def _cap(replicas: float) -> int:
    return MAX_INT32 if replicas > MAX_INT32 else int(replicas)


def replicas_for_metric(
    value: float,
    target: float,
    metric_type: MetricType,
    current_replicas: int,
    ready_replicas: int | None = None,
    up_tolerance: float = CLUSTER_TOLERANCE,
    down_tolerance: float = CLUSTER_TOLERANCE,
    *,
    resource: bool = False,
) -> int:
    """The replica count one metric proposes.

    External metrics (`resource=False`), values in milli-units as KEDA serves them:
    - AverageValue follows GetExternalPerPodMetricReplicas: ratio = value / (target * current); within
      tolerance -> current, else ceil(value / target). With current == 0 the ratio is infinite, so
      ceil(value / target).
    - Value follows GetExternalMetricReplicas + getUsageRatioReplicaCount: ratio = value / target; within
      tolerance -> current, else ceil(ratio * ready); with current == 0 it is ceil(ratio) (scale from zero).
    Resource metrics (`resource=True`, cpu/memory) are per-pod averages (GetResourceReplicas /
    GetRawResourceReplicas without unready or missing pods): ratio = value / target and ceil(ratio * ready).
    Utilization is always such a per-pod average: `value` is the average utilization percent (truncated to an
    integer as the HPA does), `target` the percent.

    `ready` defaults to `current_replicas`. A target <= 0 cannot give a ratio: a positive value then asks for
    as many replicas as possible (MAX_INT32, the HPA clamps it to maxReplicas, as an infinite ratio does in
    Kubernetes) and a zero value leaves `current_replicas`. Without any pod (current == 0) a per-pod average
    does not exist and the answer is 0.
    """
    current = max(0, current_replicas)
    ready = current if ready_replicas is None else max(0, ready_replicas)
    per_pod = resource or metric_type == "Utilization"
    if metric_type == "Utilization":
        v = math.trunc(value) if math.isfinite(value) and value > 0 else 0
        t = target
    else:
        v = to_milli(value)
        t = float(to_milli(target)) if math.isfinite(target) else 0.0
    if not t > 0:
        return MAX_INT32 if v > 0 else current_replicas
    if per_pod:
        if current == 0:
            return 0
        ratio = v / t
        if _within(ratio, up_tolerance, down_tolerance):
            return current
        return _cap(math.ceil(ratio * ready))
    if metric_type == "Value":
        ratio = v / t
        if current == 0:
            return _cap(math.ceil(ratio))
        if _within(ratio, up_tolerance, down_tolerance):
            return current
        return _cap(math.ceil(ratio * ready))
    # AverageValue
    if current > 0 and _within(v / (t * current), up_tolerance, down_tolerance):
        return current
    return _cap(math.ceil(v / t))


# --- the controller ----------------------------------------------------------------------------------


class MetricSample(NamedTuple):
    """One metric the HPA scales on. `value` None means the metric could not be read this time."""

    value: float | None
    target: float
    metric_type: MetricType = "AverageValue"
    name: str = ""
    #: cpu/memory: the value is a per-pod average (see replicas_for_metric).
    resource: bool = False


@dataclass(frozen=True)
class HPAResult:
    """What one HPA sync decides. `reason` is the Kubernetes condition reason that explains the number.

    Reasons: ScalingDisabled, AboveMaxReplicas, BelowMinReplicas, FailedComputeMetricsReplicas,
    DesiredWithinRange, ScaleUpStabilized, ScaleDownStabilized, ScaleUpLimit, ScaleDownLimit, TooManyReplicas,
    TooFewReplicas.
    """

    desired_replicas: int
    reason: str
    message: str = ""
    #: The highest proposal over the metrics, before stabilization and rate limits (None if not computed).
    metric_desired_replicas: int | None = None


SampleLike = MetricSample | tuple[float | None, float, MetricType]


class HorizontalAutoscaler:
    """One HorizontalPodAutoscaler: reconcileAutoscaler for a single object, its memory in `state`.

    `behavior=None` is an HPA without `spec.behavior`: Kubernetes then takes the legacy path
    (normalizeDesiredReplicas: a 300 s downscale stabilization and a scale-up limit of max(2 * current, 4) per
    sync, no scale-event memory). A `Behavior` (even an empty one) takes normalizeDesiredReplicasWithBehaviors
    with the defaults filled in.
    """

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        behavior: Behavior | None = None,
        *,
        state: LifecycleState | None = None,
        tolerance: float = CLUSTER_TOLERANCE,
        downscale_stabilization_window: int = DOWNSCALE_STABILIZATION_WINDOW,
    ) -> None:
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.behavior = behavior
        self.rules = resolve_behavior(
            behavior, tolerance=tolerance, downscale_stabilization_window=downscale_stabilization_window
        )
        self.tolerance = tolerance
        self.downscale_stabilization_window = downscale_stabilization_window
        self.state = state if state is not None else LifecycleState()

    # reconcileAutoscaler -------------------------------------------------------------------------------

    def desired(
        self,
        samples: Sequence[SampleLike],
        current_replicas: int,
        now: float,
        ready_replicas: int | None = None,
    ) -> HPAResult:
        """One sync: follows reconcileAutoscaler and computeReplicasForMetrics. Records memory in `state`."""
        current = current_replicas
        st = self.state
        if not st.recommendations:  # recordInitialRecommendation
            st.recommendations.append((now, current))

        if current == 0 and self.min_replicas != 0:
            return HPAResult(0, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
        if current > self.max_replicas:
            self._store_scale_event(current, self.max_replicas, now)
            return HPAResult(self.max_replicas, "AboveMaxReplicas", "Current number of replicas above Spec.MaxReplicas")
        if current < self.min_replicas:
            self._store_scale_event(current, self.min_replicas, now)
            return HPAResult(self.min_replicas, "BelowMinReplicas", "Current number of replicas below Spec.MinReplicas")

        proposal = self._compute_replicas_for_metrics(samples, current, ready_replicas)
        if isinstance(proposal, str):
            return HPAResult(current, "FailedComputeMetricsReplicas", proposal)
        metric_desired, metric_name = proposal

        desired = max(0, metric_desired)
        if desired > current:
            rescale_reason = f"{metric_name or 'metric'} above target"
        elif desired < current:
            rescale_reason = "All metrics below target"
        else:
            rescale_reason = ""
        if self.behavior is None:
            desired, reason, message = self._normalize(current, desired, now)
        else:
            desired, reason, message = self._normalize_with_behaviors(current, desired, now)
        if desired != current:
            self._store_scale_event(current, desired, now)
            limited = "" if reason == "DesiredWithinRange" else f" ({message})"
            message = f"New size: {desired}; reason: {rescale_reason}{limited}"
        return HPAResult(desired, reason, message, metric_desired)

    def _compute_replicas_for_metrics(
        self, samples: Sequence[SampleLike], current: int, ready: int | None
    ) -> tuple[int, str] | str:
        """computeReplicasForMetrics: the highest proposal; an error string when none can be trusted."""
        up, down = self.rules.scale_up.tolerance, self.rules.scale_down.tolerance
        replicas, name, invalid = 0, "", []
        for raw in samples:
            s = raw if isinstance(raw, MetricSample) else MetricSample(*raw)
            if s.value is None:
                invalid.append(s.name or "metric")
                continue
            p = replicas_for_metric(s.value, s.target, s.metric_type, current, ready, up, down, resource=s.resource)
            if replicas == 0 or p > replicas:
                replicas, name = p, s.name
        if not samples or len(invalid) >= len(samples):
            return f"invalid metrics ({len(invalid)} invalid out of {len(samples)})"
        # With a metric missing, the HPA still scales up on the others but never down.
        if invalid and replicas < current:
            return (
                f"invalid metrics ({len(invalid)} invalid out of {len(samples)}), first error is: "
                f"no value for {invalid[0]}; not scaling down"
            )
        return replicas, name

    # legacy path (no behavior) -------------------------------------------------------------------------

    def _normalize(self, current: int, desired: int, now: float) -> tuple[int, str, str]:
        """normalizeDesiredReplicas: stabilizeRecommendation then convertDesiredReplicasWithRules."""
        stabilized = self._stabilize_legacy(desired, now)
        stab_reason = "ScaleDownStabilized" if stabilized != desired else ""
        scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if self.max_replicas > scale_up_limit:
            maximum, limit_reason = scale_up_limit, "ScaleUpLimit"
            limit_msg = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            maximum, limit_reason = self.max_replicas, "TooManyReplicas"
            limit_msg = "the desired replica count is more than the maximum replica count"
        if stabilized < self.min_replicas:
            return (
                self.min_replicas,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        if stabilized > maximum:
            return maximum, limit_reason, limit_msg
        if stab_reason:
            return (
                stabilized,
                stab_reason,
                _DOWN_STABILIZED_MSG,
            )
        return stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"

    def _stabilize_legacy(self, desired: int, now: float) -> int:
        """stabilizeRecommendation: the highest recommendation not older than the downscale window."""
        recs = self.state.recommendations
        cutoff = now - self.downscale_stabilization_window
        highest, old_index = desired, -1
        for i, (ts, rec) in enumerate(recs):
            if ts < cutoff:
                old_index = i
            elif rec > highest:
                highest = rec
        if old_index >= 0:
            recs[old_index] = (now, desired)
        else:
            recs.append((now, desired))
        return highest

    # behavior path -------------------------------------------------------------------------------------

    def _normalize_with_behaviors(self, current: int, desired: int, now: float) -> tuple[int, str, str]:
        """normalizeDesiredReplicasWithBehaviors: stabilizeRecommendationWithBehaviors, then
        convertDesiredReplicasWithBehaviorRate."""
        stabilized, stab_reason, stab_msg = self._stabilize_with_behaviors(current, desired, now)
        result, reason, message = self._convert_with_behavior_rate(current, stabilized, now)
        if reason == "DesiredWithinRange" and stabilized != desired:
            return result, stab_reason, stab_msg
        return result, reason, message

    def _stabilize_with_behaviors(self, current: int, desired: int, now: float) -> tuple[int, str, str]:
        """stabilizeRecommendationWithBehaviors: clamp between the lowest recent recommendation (scale-up
        window) and the highest one (scale-down window)."""
        recs = self.state.recommendations
        up_cutoff = now - self.rules.scale_up.stabilization_window_seconds
        down_cutoff = now - self.rules.scale_down.stabilization_window_seconds
        up_rec, down_rec, old_index = desired, desired, -1
        for i, (ts, rec) in enumerate(recs):
            if ts > up_cutoff:
                up_rec = min(rec, up_rec)
            if ts > down_cutoff:
                down_rec = max(rec, down_rec)
            if ts < up_cutoff and ts < down_cutoff:
                old_index = i
        recommendation = current
        if recommendation < up_rec:
            recommendation = up_rec
        if recommendation > down_rec:
            recommendation = down_rec
        if old_index >= 0:
            recs[old_index] = (now, desired)
        else:
            recs.append((now, desired))
        if desired >= current:
            return (
                recommendation,
                "ScaleUpStabilized",
                _UP_STABILIZED_MSG,
            )
        return (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )

    def _convert_with_behavior_rate(self, current: int, desired: int, now: float) -> tuple[int, str, str]:
        """convertDesiredReplicasWithBehaviorRate."""
        up_events, down_events = self.state.scale_up_events, self.state.scale_down_events
        if desired > current:
            limit = scale_up_limit(current, up_events, down_events, self.rules.scale_up, now)
            limit = max(limit, current)  # no further scale-up until the events age out
            if self.max_replicas > limit:
                maximum, reason = limit, "ScaleUpLimit"
                message = "the desired replica count is increasing faster than the maximum scale rate"
            else:
                maximum, reason = self.max_replicas, "TooManyReplicas"
                message = "the desired replica count is more than the maximum replica count"
            if desired > maximum:
                return maximum, reason, message
        elif desired < current:
            limit = scale_down_limit(current, up_events, down_events, self.rules.scale_down, now)
            limit = min(limit, current)
            if self.min_replicas < limit:
                minimum, reason = limit, "ScaleDownLimit"
                message = "the desired replica count is decreasing faster than the maximum scale rate"
            else:
                minimum, reason = self.min_replicas, "TooFewReplicas"
                message = "the desired replica count is less than the minimum replica count"
            if desired < minimum:
                return minimum, reason, message
        return desired, "DesiredWithinRange", "the desired count is within the acceptable range"

    def _store_scale_event(self, previous: int, new: int, now: float) -> None:
        """storeScaleEvent: only with a behavior; reuses the slot of an event older than the longest period.

        Kubernetes keeps a sticky `outdated` flag; here it is recomputed from the timestamp, which is the same
        unless the policies' periods were edited in between.
        """
        if self.behavior is None or new == previous:
            return
        if new > previous:
            events, change, period = (
                self.state.scale_up_events,
                new - previous,
                self.rules.scale_up.longest_period,
            )
        else:
            events, change, period = (
                self.state.scale_down_events,
                previous - new,
                self.rules.scale_down.longest_period,
            )
        cutoff = now - period
        old_index = -1
        for i, (ts, _) in enumerate(events):
            if ts < cutoff:
                old_index = i
        if old_index >= 0:
            events[old_index] = (now, change)
        else:
            events.append((now, change))


def replicas_change_in_period(period_seconds: int, events: Sequence[tuple[float, int]], now: float) -> int:
    """getReplicasChangePerPeriod: the sum of changes strictly newer than `now - period`."""
    cutoff = now - period_seconds
    return sum(change for ts, change in events if ts > cutoff)


def scale_up_limit(
    current: int,
    up_events: Sequence[tuple[float, int]],
    down_events: Sequence[tuple[float, int]],
    rules: ResolvedRules,
    now: float,
) -> int:
    """calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    use_min = rules.select_policy == "Min"
    result = MAX_INT32 if use_min else -(2**31)
    for policy in rules.policies:
        added = replicas_change_in_period(policy.period_seconds, up_events, now)
        deleted = replicas_change_in_period(policy.period_seconds, down_events, now)
        start = current - added + deleted
        if policy.type == "Pods":
            proposed = start + policy.value
        else:
            # Rounded up, else a small Percent would never add a replica.
            proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
        result = min(result, proposed) if use_min else max(result, proposed)
    return result


def scale_down_limit(
    current: int,
    up_events: Sequence[tuple[float, int]],
    down_events: Sequence[tuple[float, int]],
    rules: ResolvedRules,
    now: float,
) -> int:
    """calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now."""
    if rules.select_policy == "Disabled":
        return current
    use_min = rules.select_policy == "Min"
    result = -(2**31) if use_min else MAX_INT32
    for policy in rules.policies:
        added = replicas_change_in_period(policy.period_seconds, up_events, now)
        deleted = replicas_change_in_period(policy.period_seconds, down_events, now)
        start = current - added + deleted
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(float(start) * (1 - float(policy.value) / 100))
        # For scale-down the smallest change is the highest count.
        result = max(result, proposed) if use_min else min(result, proposed)
    return result
