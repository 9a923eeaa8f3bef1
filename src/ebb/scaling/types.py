"""Plain data the decision core takes and returns. No pydantic, no I/O: the core stays a pure function.

The spec layer converts manifests into these; the runtime and the operator feed observations in and
apply the decisions that come out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["AverageValue", "Value", "Utilization"]
PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
FallbackBehavior = Literal[
    "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower", "scalingModifiers"
]
ConditionStatus = Literal["True", "False", "Unknown"]
EventType = Literal["Normal", "Warning"]
CooldownFrom = Literal["last-active-poll", "last-activity"]


# --- HPA behavior (autoscaling/v2 HorizontalPodAutoscalerBehavior) -------------------------------


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction of HPA behavior. None means "the Kubernetes default for this direction"."""

    stabilization_window_seconds: int | None = None
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


# --- Object policy (what the spec says, in the core's terms) --------------------------------------


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior = "static"


@dataclass(frozen=True)
class ScalingModifiers:
    formula: str
    target: float
    activation_target: float = 0.0
    metric_type: MetricType = "AverageValue"


@dataclass(frozen=True)
class ObjectPolicy:
    """A ScaledObject's scaling rules with KEDA's defaults already filled in."""

    min_replicas: int = 0
    max_replicas: int = 100
    idle_replicas: int | None = None
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    fallback: Fallback | None = None
    behavior: Behavior | None = None
    modifiers: ScalingModifiers | None = None
    #: Unix time the object was created (for initialCooldownPeriod).
    created_at: float = 0.0
    #: What cooldownPeriod counts from: KEDA's last poll that found a trigger active ("last-active-poll"), or
    #: the last time work was seen, a busy replica included ("last-activity", ebb.dev/cooldown-from).
    cooldown_from: CooldownFrom = "last-active-poll"


@dataclass(frozen=True)
class PauseState:
    """Parsed autoscaling.keda.sh/* annotations."""

    paused: bool = False
    paused_replicas: int | None = None
    paused_scale_in: bool = False
    paused_scale_out: bool = False
    force_activation: bool = False


# --- Observations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerResult:
    """One trigger's outcome for one poll. `error` set means the scaler failed and `value` is None."""

    metric_name: str
    target: float
    metric_type: MetricType = "AverageValue"
    value: float | None = None
    active: bool = False
    error: str | None = None
    #: The trigger's `name` in the spec (what formulas refer to), if it has one.
    trigger_name: str | None = None
    #: cpu/memory triggers: always active, not counted for fallback, HPA resource metrics.
    resource: bool = False
    #: How long the scaler took to answer, in seconds (None when it was not asked: a bad spec).
    read_seconds: float | None = None


# --- Decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    status: ConditionStatus
    reason: str
    message: str = ""


@dataclass(frozen=True)
class ScalingEvent:
    """Something worth telling a person (a Kubernetes Event, a line in the local event log)."""

    reason: str
    message: str
    type: EventType = "Normal"


@dataclass(frozen=True)
class MetricHealth:
    number_of_failures: int = 0
    status: Literal["Happy", "Failing"] = "Happy"


@dataclass
class LifecycleState:
    """What the core remembers between polls. Persisted so a restart of ebb does not flap."""

    last_active_time: float | None = None
    #: The last poll that saw work: a trigger active (errors in others notwithstanding) or a busy replica.
    last_activity_time: float | None = None
    health: dict[str, MetricHealth] = field(default_factory=dict)
    fallback_active: bool = False
    was_active: bool | None = None
    paused: bool = False
    #: HPA stabilization memory: (timestamp, unstabilized recommendation).
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    #: HPA scale events: (timestamp, replica change), by direction.
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    """The outcome of one poll.

    `desired_replicas` is None when the core leaves the target alone (paused without a replica count,
    or HPA mode where 1..N belongs to the HPA). `metric_values` are what the HPA should be served
    (after fallback substitution and formulas), keyed by metric name.
    """

    desired_replicas: int | None
    active: bool
    reason: str
    conditions: dict[str, Condition] = field(default_factory=dict)
    events: tuple[ScalingEvent, ...] = ()
    metric_values: dict[str, float] = field(default_factory=dict)
    health: dict[str, MetricHealth] = field(default_factory=dict)
    last_active_time: float | None = None
