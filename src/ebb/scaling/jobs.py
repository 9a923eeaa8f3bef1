"""ScaledJob: how many Jobs to create this poll.

Follows KEDA (kedacore/keda, main): `getScaledJobMetrics` (pkg/scaling/scale_handler.go),
`CalculateQueueLengthAndMaxValue` and `IsScaledJobActive` (pkg/scaling/scaledjob/metrics.go),
`RequestJobScale`, `getScalingDecision`, the four scaling strategies and `createJobs`
(pkg/scaling/executor/scale_jobs.go), `ScaledJob.MinReplicaCount/MaxReplicaCount`
(apis/keda/v1alpha1/scaledjob_types.go). Quirks are kept on purpose: `max` ignores an active trigger with an
empty queue, `min` picks the smallest *non-zero* queue, a `Value` target counts as 0 (no jobs from it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ebb.scaling.hpa import to_milli
from ebb.scaling.types import Condition, TriggerResult

#: ScaledJob's maxReplicaCount when unset.
DEFAULT_MAX_REPLICAS = 100

JobScalingStrategy = Literal["default", "custom", "accurate", "eager"]
MultipleScalersCalculation = Literal["max", "min", "avg", "sum"]

_GO_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class JobStrategy:
    """spec.scalingStrategy of a ScaledJob."""

    strategy: JobScalingStrategy = "default"
    custom_scaling_queue_length_deduction: int | None = None
    #: A string as in the CRD; unparsable (or unset) turns `custom` into `default`, as KEDA does.
    custom_scaling_running_job_percentage: str | None = None
    multiple_scalers_calculation: MultipleScalersCalculation = "max"


@dataclass(frozen=True)
class JobDecision:
    """What one ScaledJob poll decides. `jobs_to_create` is what to create now (0 when inactive)."""

    jobs_to_create: int
    active: bool
    #: ceil of the combined queue length (the `scaleTo` of the default, custom and accurate strategies).
    queue_length: int
    #: ceil of the combined max value (queue / target, capped at the effective max replica count).
    max_scale: int
    reason: str
    message: str = ""
    #: The strategy's limit on new Jobs, never negative.
    effective_max_scale: int = 0
    #: What the strategy asks for before the limit.
    scale_to: int = 0
    conditions: dict[str, Condition] = field(default_factory=dict)
    #: Metric names of the active triggers.
    active_triggers: tuple[str, ...] = ()


@dataclass(frozen=True)
class _ScalerMetrics:
    queue_length: float
    max_value: float
    active: bool


def _parse_percentage(raw: str | None) -> float | None:
    """Go's strconv.ParseFloat for a decimal number; None when it would fail (or is not finite)."""
    if raw is None or not _GO_FLOAT.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def replica_bounds(min_replicas: int, max_replicas: int | None) -> tuple[int, int]:
    """(MinReplicaCount, MaxReplicaCount) as KEDA derives them.

    Min is min(min, max). Max is the room above the jobs kept for min: max - min when max is set (just max
    when min > max), and 100 when max is unset (without subtracting min).
    """
    if max_replicas is None:
        return min_replicas, DEFAULT_MAX_REPLICAS
    if min_replicas > max_replicas:
        return max_replicas, max_replicas
    return min_replicas, max_replicas - min_replicas


def _combine(metrics: Sequence[_ScalerMetrics], calculation: str) -> tuple[float, float, bool]:
    """IsScaledJobActive's combination of the triggers (only active ones count)."""
    queue, max_value, active = 0.0, 0.0, False
    if calculation == "min":
        for m in metrics:
            if (queue == 0 or m.queue_length < queue) and m.active:
                queue, max_value, active = m.queue_length, m.max_value, True
    elif calculation in ("avg", "sum"):
        chosen = [m for m in metrics if m.active]
        if chosen:
            active = True
            queue = sum(m.queue_length for m in chosen)
            max_value = sum(m.max_value for m in chosen)
            if calculation == "avg":
                queue /= len(chosen)
                max_value /= len(chosen)
    else:
        for m in metrics:
            if m.queue_length > queue and m.active:
                queue, max_value, active = m.queue_length, m.max_value, True
    return queue, max_value, active


def decide_jobs(
    results: Sequence[TriggerResult],
    running_jobs: int,
    pending_jobs: int,
    min_replicas: int,
    max_replicas: int | None,
    strategy: JobStrategy = JobStrategy(),
) -> JobDecision:
    """One ScaledJob poll. `running_jobs` are the object's Jobs not Complete/Failed; `pending_jobs` those of
    them whose pods are not running yet (see keda.md section 2)."""
    min_rc, max_rc = replica_bounds(min_replicas, max_replicas)

    per_trigger: list[_ScalerMetrics] = []
    is_error = False
    active_names: list[str] = []
    for r in results:
        if r.resource:
            continue  # cpu/memory have no external metric: ScaledJobs skip them
        if r.error is not None or r.value is None:
            is_error = True
            continue
        queue = to_milli(r.value) / 1000
        target = to_milli(r.target) / 1000 if r.metric_type == "AverageValue" else 0.0
        max_value = min(queue / target, float(max_rc)) if target != 0 else 0.0
        per_trigger.append(_ScalerMetrics(queue, max_value, r.active))
        if r.active:
            active_names.append(r.metric_name)

    queue, max_value, active = _combine(per_trigger, strategy.multiple_scalers_calculation)
    if min_rc > 0:
        active = True
    max_value = min(max_value, float(max_rc))
    queue_length = math.ceil(queue)
    max_scale = math.ceil(max_value)

    # getScalingDecision
    chosen = strategy.strategy
    if running_jobs < min_rc:
        effective = scale_to = min_rc - running_jobs
        chosen_text = "minReplicaCount"
    else:
        running = running_jobs - min_rc
        scale_to = queue_length
        percentage = _parse_percentage(strategy.custom_scaling_running_job_percentage)
        if chosen == "custom" and percentage is None:
            chosen = "default"
        chosen_text = chosen
        if chosen == "custom":
            assert percentage is not None
            deduction = strategy.custom_scaling_queue_length_deduction or 0
            effective = min(max_scale - deduction - int(running * percentage), max_rc)
        elif chosen == "accurate":
            over = max_scale + running - pending_jobs > max_rc
            effective = max_rc - running if over else max_scale - pending_jobs
        elif chosen == "eager":
            effective = min(max_rc - running - pending_jobs, max_scale)
            scale_to = max_rc
        else:
            effective = max_scale - running
    effective = max(effective, 0)

    conditions = {
        "Ready": Condition("True", "ScaledJobReady", "ScaledJob is defined correctly and is ready for scaling")
    }
    if is_error:
        if active:
            conditions["Ready"] = Condition(
                "Unknown",
                "PartialTriggerError",
                "Some triggers defined in ScaledJob are not working correctly",
            )
        else:
            conditions["Ready"] = Condition(
                "False", "TriggerError", "Triggers defined in ScaledJob are not working correctly"
            )
    if active:
        conditions["Active"] = Condition("True", "ScalerActive", "Scaling is performed because triggers are active")
    else:
        conditions["Active"] = Condition(
            "False", "ScalerNotActive", "Scaling is not performed because triggers are not active"
        )

    jobs = min(scale_to, effective) if active and effective > 0 else 0
    jobs = max(jobs, 0)
    detail = (
        f"queue length {queue_length}, max scale {max_scale}, running {running_jobs}, "
        f"pending {pending_jobs}, strategy {chosen_text}: scale to {scale_to}, at most {effective}"
    )
    if not active:
        reason, message = "ScalerNotActive", f"no active trigger; {detail}"
    elif jobs > 0:
        reason, message = "CreateJobs", f"create {jobs} jobs; {detail}"
    else:
        reason, message = "NoJobsNeeded", f"all requested jobs already exist; {detail}"
    return JobDecision(
        jobs_to_create=jobs,
        active=active,
        queue_length=queue_length,
        max_scale=max_scale,
        reason=reason,
        message=message,
        effective_max_scale=effective,
        scale_to=scale_to,
        conditions=conditions,
        active_triggers=tuple(active_names),
    )
