"""The pure decision core: HPA math, ScaledObject lifecycle, formulas and ScaledJob decisions. No I/O."""

from ebb.scaling.hpa import (
    DEFAULT_BEHAVIOR,
    HorizontalAutoscaler,
    HPAResult,
    MetricSample,
    ResolvedBehavior,
    ResolvedRules,
    replicas_for_metric,
    resolve_behavior,
)
from ebb.scaling.jobs import JobDecision, JobStrategy, decide_jobs, replica_bounds
from ebb.scaling.lifecycle import COMPOSITE_METRIC, ScaledObjectDecider, pause_state
from ebb.scaling.modifiers import Formula, FormulaEvaluationError, compile_formula
from ebb.scaling.types import (
    Behavior,
    Condition,
    Decision,
    Fallback,
    LifecycleState,
    MetricHealth,
    ObjectPolicy,
    PauseState,
    ScalingEvent,
    ScalingModifiers,
    ScalingPolicy,
    ScalingRules,
    TriggerResult,
)

__all__ = [
    "COMPOSITE_METRIC",
    "DEFAULT_BEHAVIOR",
    "Behavior",
    "Condition",
    "Decision",
    "Fallback",
    "Formula",
    "FormulaEvaluationError",
    "HPAResult",
    "HorizontalAutoscaler",
    "JobDecision",
    "JobStrategy",
    "LifecycleState",
    "MetricHealth",
    "MetricSample",
    "ObjectPolicy",
    "PauseState",
    "ResolvedBehavior",
    "ResolvedRules",
    "ScaledObjectDecider",
    "ScalingEvent",
    "ScalingModifiers",
    "ScalingPolicy",
    "ScalingRules",
    "TriggerResult",
    "compile_formula",
    "decide_jobs",
    "pause_state",
    "replica_bounds",
    "replicas_for_metric",
    "resolve_behavior",
]
