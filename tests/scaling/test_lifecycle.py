"""ScaledObject lifecycle: one table per KEDA rule, each with the case that would catch it wrong."""

from __future__ import annotations

import copy

import pytest

from ebb.errors import FormulaError, SpecError
from ebb.scaling.lifecycle import COMPOSITE_METRIC, ScaledObjectDecider, cooldown_from, pause_state
from ebb.scaling.types import (
    Behavior,
    Decision,
    Fallback,
    FallbackBehavior,
    LifecycleState,
    MetricHealth,
    MetricType,
    ObjectPolicy,
    PauseState,
    ScalingModifiers,
    ScalingRules,
    TriggerResult,
)

OBJ = "ScaledObject default/worker"
TARGET = "Deployment default/worker"
FAST_DOWN = Behavior(scale_down=ScalingRules(stabilization_window_seconds=0))


def trig(
    value: float | None = 0.0,
    *,
    active: bool | None = None,
    error: str | None = None,
    target: float = 10.0,
    name: str = "s0-queue",
    metric_type: MetricType = "AverageValue",
    trigger_name: str | None = None,
    resource: bool = False,
) -> TriggerResult:
    """A trigger result; by default active iff value > 0 (activation threshold 0, strictly greater)."""
    if error is not None:
        value = None
    if active is None:
        active = error is None and value is not None and value > 0
    return TriggerResult(
        metric_name=name,
        target=target,
        metric_type=metric_type,
        value=value,
        active=active,
        error=error,
        trigger_name=trigger_name,
        resource=resource,
    )


def failing(name: str = "s0-queue", **kw: object) -> TriggerResult:
    return trig(error="connection refused", name=name, **kw)  # type: ignore[arg-type]


def decider(mode: str = "hpa", **policy: object) -> ScaledObjectDecider:
    return ScaledObjectDecider(ObjectPolicy(**policy), mode=mode, obj=OBJ, target=TARGET)  # type: ignore[arg-type]


def reasons(d: Decision) -> list[str]:
    return [e.reason for e in d.events]


# --- annotations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, PauseState()),
        ({"autoscaling.keda.sh/paused": "true"}, PauseState(paused=True)),
        ({"autoscaling.keda.sh/paused": "false"}, PauseState()),
        # Go's ParseBool: these are false too...
        ({"autoscaling.keda.sh/paused": "False"}, PauseState()),
        ({"autoscaling.keda.sh/paused": "0"}, PauseState()),
        ({"autoscaling.keda.sh/paused": "f"}, PauseState()),
        # ...and anything it cannot parse counts as true.
        ({"autoscaling.keda.sh/paused": "yes"}, PauseState(paused=True)),
        ({"autoscaling.keda.sh/paused": ""}, PauseState(paused=True)),
        ({"autoscaling.keda.sh/paused-replicas": "3"}, PauseState(paused=True, paused_replicas=3)),
        ({"autoscaling.keda.sh/paused-replicas": "0"}, PauseState(paused=True, paused_replicas=0)),
        ({"autoscaling.keda.sh/paused-replicas": "+2"}, PauseState(paused=True, paused_replicas=2)),
        # paused-replicas pauses whatever `paused` says.
        (
            {"autoscaling.keda.sh/paused-replicas": "1", "autoscaling.keda.sh/paused": "false"},
            PauseState(paused=True, paused_replicas=1),
        ),
        ({"autoscaling.keda.sh/paused-scale-in": "true"}, PauseState(paused_scale_in=True)),
        ({"autoscaling.keda.sh/paused-scale-out": "true"}, PauseState(paused_scale_out=True)),
        ({"autoscaling.keda.sh/paused-scale-out": "false"}, PauseState()),
        ({"autoscaling.keda.sh/force-activation": "true"}, PauseState(force_activation=True)),
        ({"unrelated/annotation": "true"}, PauseState()),
    ],
)
def test_pause_state_parses_like_keda(annotations: dict[str, str], expected: PauseState) -> None:
    assert pause_state(annotations) == expected


@pytest.mark.parametrize("raw", ["abc", "1.5", "-1", " 3", "3 ", "", "99999999999"])
def test_bad_paused_replicas_names_the_annotation(raw: str) -> None:
    with pytest.raises(SpecError) as info:
        pause_state({"autoscaling.keda.sh/paused-replicas": raw}, OBJ)
    assert info.value.obj == OBJ
    assert info.value.field == "metadata.annotations[autoscaling.keda.sh/paused-replicas]"
    assert repr(raw) in info.value.message


# --- pause --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pause", "expected_desired", "expected_reason"),
    [
        (PauseState(paused=True), None, "ScaledObjectPaused"),
        (PauseState(paused_replicas=2), 2, "PausedReplicas"),
        # paused-replicas wins over paused.
        (PauseState(paused=True, paused_replicas=3), 3, "PausedReplicas"),
        (PauseState(paused_replicas=0), 0, "PausedReplicas"),
    ],
)
@pytest.mark.parametrize("mode", ["direct", "hpa"])
def test_pause_stops_scaling(pause: PauseState, expected_desired: int | None, expected_reason: str, mode: str) -> None:
    d = decider(mode)
    # Even an active trigger at zero replicas does not activate a paused object.
    decision = d.decide([trig(50)], 0, now=100.0, pause=pause)
    assert (decision.desired_replicas, decision.reason) == (expected_desired, expected_reason)
    assert decision.conditions["Paused"].status == "True"
    assert decision.conditions["Paused"].reason == "ScaledObjectPaused"
    assert reasons(decision) == ["ScaledObjectPaused"]
    # Paused polls do not touch health or activity.
    assert decision.health == {} and "Active" not in decision.conditions


def test_pause_and_unpause_events_only_on_transitions() -> None:
    d = decider("direct", min_replicas=1)
    paused = PauseState(paused=True)
    assert reasons(d.decide([trig(0)], 1, now=0.0, pause=paused)) == ["ScaledObjectPaused"]
    assert reasons(d.decide([trig(0)], 1, now=30.0, pause=paused)) == []
    resumed = d.decide([trig(0)], 1, now=60.0)
    assert reasons(resumed) == ["ScaledObjectUnpaused"]
    assert resumed.conditions["Paused"].status == "False"
    assert resumed.conditions["Paused"].reason == "ScaledObjectUnpaused"
    later = d.decide([trig(0)], 1, now=90.0)
    assert reasons(later) == [] and "Paused" not in later.conditions


def test_full_pause_drops_hpa_memory() -> None:
    d = decider("direct")
    d.decide([trig(30)], 1, now=0.0)
    assert d.state.recommendations
    d.decide([trig(30)], 1, now=10.0, pause=PauseState(paused=True))
    assert d.state.recommendations == [] and d.state.scale_up_events == []


@pytest.mark.parametrize(
    "pause", [PauseState(paused_scale_in=True), PauseState(paused_scale_out=True)], ids=["in", "out"]
)
def test_one_direction_pause_marks_paused_but_keeps_scaling(pause: PauseState) -> None:
    d = decider("hpa")
    decision = d.decide([trig(50)], 2, now=100.0, pause=pause)
    assert decision.conditions["Paused"].status == "True"
    assert reasons(decision) == ["ScaledObjectPaused"]
    assert decision.conditions["Active"].reason == "ScalerActive"
    assert decision.metric_values == {"s0-queue": 50}


# --- activation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "policy", "current", "triggers", "pause", "desired", "reason"),
    [
        ("active from zero -> 1", {}, 0, [trig(5)], PauseState(), 1, "KEDAScaleTargetActivated"),
        (
            "active from zero -> min",
            {"min_replicas": 3},
            0,
            [trig(5)],
            PauseState(),
            3,
            "KEDAScaleTargetActivated",
        ),
        ("inactive at zero stays", {}, 0, [trig(0)], PauseState(), None, "ScalerNotActive"),
        # Any active trigger activates (OR).
        (
            "one of two active",
            {},
            0,
            [trig(0), trig(1, name="s1-b")],
            PauseState(),
            1,
            "KEDAScaleTargetActivated",
        ),
        (
            "force-activation",
            {},
            0,
            [trig(0)],
            PauseState(force_activation=True),
            1,
            "KEDAScaleTargetActivated",
        ),
        (
            "paused-scale-out blocks 0->1",
            {},
            0,
            [trig(5)],
            PauseState(paused_scale_out=True),
            None,
            "ScaleOutPaused",
        ),
        (
            "paused-scale-in does not block 0->1",
            {},
            0,
            [trig(5)],
            PauseState(paused_scale_in=True),
            1,
            "KEDAScaleTargetActivated",
        ),
        # Idle: from idle (below min) straight to min.
        (
            "idle 0 -> min",
            {"idle_replicas": 0, "min_replicas": 2},
            0,
            [trig(5)],
            PauseState(),
            2,
            "KEDAScaleTargetActivated",
        ),
        (
            "idle 1 -> min",
            {"idle_replicas": 1, "min_replicas": 3},
            1,
            [trig(5)],
            PauseState(),
            3,
            "KEDAScaleTargetActivated",
        ),
        # Without idle, an active target above zero is the HPA's business (None in hpa mode).
        ("active above zero", {"min_replicas": 3}, 1, [trig(5)], PauseState(), None, "ScalerActive"),
    ],
)
def test_activation(
    case: str,
    policy: dict[str, object],
    current: int,
    triggers: list[TriggerResult],
    pause: PauseState,
    desired: int | None,
    reason: str,
) -> None:
    d = decider("hpa", **policy)
    decision = d.decide(triggers, current, now=100.0, pause=pause)
    assert (decision.desired_replicas, decision.reason) == (desired, reason), case


def test_activation_event_and_last_active_time() -> None:
    d = decider("hpa")
    decision = d.decide([trig(0, name="s0-a"), trig(5, name="s1-b"), trig(7, name="s2-c")], 0, now=123.0)
    assert decision.events[0].reason == "KEDAScaleTargetActivated"
    assert decision.events[0].message == f"Scaled {TARGET} from 0 to 1, triggered by s1-b;s2-c"
    assert decision.active and decision.last_active_time == 123.0
    assert decision.conditions["Active"].reason == "ScalerActive"
    assert decision.conditions["Active"].message == "Scaling is performed because triggers are active"


def test_forced_activation_message() -> None:
    d = decider("hpa")
    decision = d.decide([trig(0)], 0, now=1.0, pause=PauseState(force_activation=True))
    assert decision.events[0].message == f"Scaled {TARGET} from 0 to 1, caused by forced activation annotation"
    assert "forced by annotation" in decision.conditions["Active"].message


def test_blocked_activation_keeps_last_active_time() -> None:
    d = decider("hpa")
    decision = d.decide([trig(5)], 0, now=50.0, pause=PauseState(paused_scale_out=True))
    assert decision.last_active_time is None
    assert reasons(decision) == ["ScaledObjectPaused"]  # no KEDAScaleTargetActivated


@pytest.mark.parametrize(
    ("case", "triggers", "last_active"),
    [
        ("active, no error: refreshed", [trig(5)], 500.0),
        # KEDA does not refresh lastActiveTime when a trigger errors (PartialTriggerError branch).
        ("active with an error: kept", [trig(5), failing("s1-b")], 100.0),
        ("inactive: kept", [trig(0)], 100.0),
    ],
)
def test_last_active_time(case: str, triggers: list[TriggerResult], last_active: float) -> None:
    d = decider("hpa")
    d.state.last_active_time = 100.0
    assert d.decide(triggers, 2, now=500.0).last_active_time == last_active, case


# --- deactivation and cooldown ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "policy", "last_active", "current", "now", "desired", "reason"),
    [
        # cooldownPeriod 300 after lastActiveTime 1000: strictly after 1300.
        ("cooldown not over at the boundary", {}, 1000.0, 2, 1300.0, None, "ScalerCooldown"),
        ("cooldown over just after", {}, 1000.0, 2, 1300.001, 0, "KEDAScaleTargetDeactivated"),
        ("custom cooldown", {"cooldown_period": 10.0}, 1000.0, 2, 1010.5, 0, "KEDAScaleTargetDeactivated"),
        # Never active: initialCooldownPeriod counts from creation, strictly.
        (
            "initial cooldown boundary",
            {"created_at": 1000.0, "initial_cooldown_period": 60.0},
            None,
            2,
            1060.0,
            None,
            "ScalerCooldown",
        ),
        (
            "initial cooldown over",
            {"created_at": 1000.0, "initial_cooldown_period": 60.0},
            None,
            2,
            1060.5,
            0,
            "KEDAScaleTargetDeactivated",
        ),
        # initialCooldownPeriod does not apply once the object was active.
        (
            "initial cooldown ignored after activity",
            {"created_at": 1000.0, "initial_cooldown_period": 10_000.0},
            1000.0,
            2,
            1300.5,
            0,
            "KEDAScaleTargetDeactivated",
        ),
        # Idle: scale to idleReplicaCount, not to min or zero.
        (
            "to idle",
            {"idle_replicas": 0, "min_replicas": 2},
            1000.0,
            2,
            2000.0,
            0,
            "KEDAScaleTargetDeactivated",
        ),
        (
            "to idle 1",
            {"idle_replicas": 1, "min_replicas": 3},
            1000.0,
            4,
            2000.0,
            1,
            "KEDAScaleTargetDeactivated",
        ),
        # Already at idle (< min): left alone, not raised to min.
        (
            "idle below min stays",
            {"idle_replicas": 1, "min_replicas": 3},
            1000.0,
            1,
            2000.0,
            None,
            "ScalerNotActive",
        ),
        # min > 0 without idle: KEDA never scales below min; below min it raises to min.
        ("min > 0 is HPA's", {"min_replicas": 2}, 1000.0, 3, 2000.0, None, "ScalerNotActive"),
        ("below min raised", {"min_replicas": 2}, 1000.0, 1, 2000.0, 2, "MinReplicaCount"),
        ("at zero nothing to do", {}, 1000.0, 0, 2000.0, None, "ScalerNotActive"),
    ],
)
def test_deactivation(
    case: str,
    policy: dict[str, object],
    last_active: float | None,
    current: int,
    now: float,
    desired: int | None,
    reason: str,
) -> None:
    d = decider("hpa", **policy)
    d.state.last_active_time = last_active
    decision = d.decide([trig(0)], current, now=now)
    assert (decision.desired_replicas, decision.reason) == (desired, reason), case
    if reason == "ScalerCooldown":
        assert decision.conditions["Active"].reason == "ScalerCooldown"
    if reason == "KEDAScaleTargetDeactivated":
        assert decision.events[0].message == f"Deactivated {TARGET} from {current} to {desired}"
        assert decision.conditions["Active"].reason == "ScalerNotActive"


def test_paused_scale_in_blocks_one_to_zero() -> None:
    d = decider("hpa")
    d.state.last_active_time = 0.0
    decision = d.decide([trig(0)], 1, now=10_000.0, pause=PauseState(paused_scale_in=True))
    assert (decision.desired_replicas, decision.reason) == (None, "ScaleInPaused")


# --- errors and conditions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "policy", "triggers", "current", "desired", "ready", "active"),
    [
        ("all fine", {}, [trig(5)], 2, None, ("True", "ScaledObjectReady"), ("True", "ScalerActive")),
        (
            "active + error",
            {},
            [trig(5), failing("s1-b")],
            2,
            None,
            ("Unknown", "PartialTriggerError"),
            ("True", "ScalerActive"),
        ),
        # Inactive + error + no fallback: TriggerError, and no scale to zero although cooldown is over.
        (
            "inactive + error",
            {},
            [failing()],
            2,
            None,
            ("False", "TriggerError"),
            ("False", "ScalerNotActive"),
        ),
        # With a fallback (replicas != 0) KEDA waits for the HPA fallback instead of scaling to zero.
        (
            "inactive + error + fallback",
            {"fallback": Fallback(3, 5)},
            [failing()],
            2,
            None,
            ("True", "ScaledObjectReady"),
            ("False", "ScalerNotActive"),
        ),
        # fallback.replicas 0 does not protect: the target goes to zero.
        (
            "inactive + error + fallback 0",
            {"fallback": Fallback(3, 0)},
            [failing()],
            2,
            0,
            ("True", "ScaledObjectReady"),
            ("False", "ScalerNotActive"),
        ),
        # Activation wins even with an erroring trigger (Ready stays True on that branch).
        (
            "activation + error",
            {},
            [trig(5), failing("s1-b")],
            0,
            1,
            ("True", "ScaledObjectReady"),
            ("True", "ScalerActive"),
        ),
    ],
)
def test_errors_and_conditions(
    case: str,
    policy: dict[str, object],
    triggers: list[TriggerResult],
    current: int,
    desired: int | None,
    ready: tuple[str, str],
    active: tuple[str, str],
) -> None:
    d = decider("hpa", **policy)
    d.state.last_active_time = 0.0
    decision = d.decide(triggers, current, now=10_000.0)
    assert decision.desired_replicas == desired, case
    assert (decision.conditions["Ready"].status, decision.conditions["Ready"].reason) == ready, case
    assert (decision.conditions["Active"].status, decision.conditions["Active"].reason) == active, case


def test_failure_and_recovery_events_only_on_change() -> None:
    d = decider("hpa")
    first = d.decide([failing()], 1, now=0.0)
    assert [(e.reason, e.type) for e in first.events] == [("KEDAScalerFailed", "Warning")]
    assert first.events[0].message == "s0-queue: connection refused"
    assert first.health["s0-queue"].number_of_failures == 1
    second = d.decide([failing()], 1, now=30.0)
    assert second.events == () and second.health["s0-queue"].number_of_failures == 2
    back = d.decide([trig(5)], 1, now=60.0)
    assert reasons(back) == ["ScalerRecovered"]
    assert back.health["s0-queue"].number_of_failures == 0 and back.health["s0-queue"].status == "Happy"
    assert d.decide([trig(5)], 1, now=90.0).events == ()


def test_cpu_memory_triggers_are_not_counted() -> None:
    d = decider("hpa", fallback=Fallback(0, 5))
    cpu = trig(error="metrics unavailable", name="cpu", resource=True, metric_type="Utilization")
    decision = d.decide([cpu, trig(0)], 2, now=0.0)
    assert "cpu" not in decision.health and decision.events == ()
    assert decision.conditions["Ready"].reason == "ScaledObjectReady"
    assert decision.conditions["Fallback"].status == "False"


@pytest.mark.parametrize(
    ("triggers", "active"),
    [
        # Only cpu/memory triggers: always active.
        ([trig(0.0, name="cpu", resource=True, metric_type="Utilization", target=50, active=False)], True),
        # Mixed: the cpu trigger does not keep the object active (getScaledObjectState only counts external
        # metrics; cpu-only is the exception).
        ([trig(80, name="cpu", resource=True, metric_type="Utilization", target=50), trig(0)], False),
    ],
)
def test_cpu_memory_activity(triggers: list[TriggerResult], active: bool) -> None:
    assert decider("hpa").decide(triggers, 1, now=0.0).active is active


# --- fallback -----------------------------------------------------------------------------------------


def test_fallback_threshold_is_strictly_greater() -> None:
    d = decider("hpa", fallback=Fallback(failure_threshold=3, replicas=6))
    for poll in range(3):
        decision = d.decide([failing()], 2, now=float(poll))
        assert decision.metric_values == {}, f"failure {poll + 1} is not above the threshold"
        assert decision.conditions["Fallback"].reason == "NoFallbackFound"
    decision = d.decide([failing()], 2, now=3.0)  # 4 failures > 3
    assert decision.metric_values == {"s0-queue": 60.0}  # target 10 x 6 replicas
    assert decision.conditions["Fallback"] == decision.conditions["Fallback"].__class__(
        "True", "FallbackExists", "At least one trigger is falling back on this scaled object"
    )
    assert "ScaledObjectFallbackActivated" in reasons(decision)
    assert decision.active and decision.conditions["Ready"].reason == "ScaledObjectReady"
    assert "ScaledObjectFallbackActivated" not in reasons(d.decide([failing()], 2, now=4.0))
    recovered = d.decide([trig(0)], 2, now=5.0)
    assert reasons(recovered) == ["ScalerRecovered", "ScaledObjectFallbackDeactivated"]
    assert recovered.health["s0-queue"].number_of_failures == 0
    assert recovered.conditions["Fallback"].status == "False"


def test_failures_are_consecutive() -> None:
    d = decider("hpa", fallback=Fallback(failure_threshold=1, replicas=6))
    d.decide([failing()], 2, now=0.0)
    d.decide([trig(1)], 2, now=1.0)  # resets
    assert d.decide([failing()], 2, now=2.0).metric_values == {}  # 1 failure again, not 2


@pytest.mark.parametrize(
    ("behavior", "current", "replicas"),
    [
        ("static", 4, 6),
        ("currentReplicas", 4, 4),
        ("currentReplicasIfHigher", 4, 6),  # max(4, 6)
        ("currentReplicasIfHigher", 8, 8),  # max(8, 6)
        ("currentReplicasIfLower", 4, 4),  # min(4, 6)
        ("currentReplicasIfLower", 8, 6),  # min(8, 6)
    ],
)
def test_fallback_behaviors(behavior: FallbackBehavior, current: int, replicas: int) -> None:
    d = decider("hpa", fallback=Fallback(failure_threshold=0, replicas=6, behavior=behavior))
    decision = d.decide([failing(target=2.5)], current, now=0.0)
    assert decision.metric_values == {"s0-queue": 2.5 * replicas}


@pytest.mark.parametrize(("ready", "value"), [(2, 30.0), (3, 20.0), (None, 15.0)])
def test_fallback_value_metric_divides_by_ready_pods(ready: int | None, value: float) -> None:
    # Value target 10, fallback 6 replicas: 10 x 6 / ready (ready defaults to the current 4).
    d = decider("hpa", fallback=Fallback(failure_threshold=0, replicas=6))
    decision = d.decide([failing(metric_type="Value")], 4, now=0.0, ready_replicas=ready)
    assert decision.metric_values == {"s0-queue": value}


def test_fallback_value_metric_without_ready_pods_stays_an_error() -> None:
    d = decider("hpa", fallback=Fallback(failure_threshold=0, replicas=6))
    decision = d.decide([failing(metric_type="Value")], 4, now=0.0, ready_replicas=0)
    assert decision.metric_values == {} and not decision.active


def test_fallback_counts_as_active_and_scales_from_zero() -> None:
    policy = ObjectPolicy(fallback=Fallback(failure_threshold=0, replicas=5), behavior=Behavior())
    d = ScaledObjectDecider(policy, mode="direct", obj=OBJ)
    first = d.decide([failing()], 0, now=0.0)
    assert (first.desired_replicas, first.reason) == (1, "KEDAScaleTargetActivated")
    # Next poll the HPA reads target x 5: 5 replicas (the default behavior allows 1 -> 5).
    assert d.decide([failing()], 1, now=30.0).desired_replicas == 5


def test_fallback_with_modifiers_replaces_the_composite() -> None:
    mods = ScalingModifiers(formula="a + b", target=4.0)
    d = decider("hpa", fallback=Fallback(failure_threshold=0, replicas=3), modifiers=mods)
    decision = d.decide([failing(trigger_name="a"), trig(1, name="s1-b", trigger_name="b")], 2, now=0.0)
    assert decision.metric_values == {COMPOSITE_METRIC: 12.0}  # composite target 4 x 3


# --- scalingModifiers -------------------------------------------------------------------------------


def named(a: float | None, b: float | None) -> list[TriggerResult]:
    return [
        trig(a, name="s0-a", trigger_name="a") if a is not None else failing("s0-a", trigger_name="a"),
        trig(b, name="s1-b", trigger_name="b") if b is not None else failing("s1-b", trigger_name="b"),
    ]


@pytest.mark.parametrize(
    ("formula", "activation", "a", "b", "composite", "active"),
    [
        ("(a + b)/2", 0.0, 4.0, 6.0, 5.0, True),
        ("(a + b)/2", 5.0, 4.0, 6.0, 5.0, False),  # equal to activationTarget: not active (strictly greater)
        ("(a + b)/2", 4.9, 4.0, 6.0, 5.0, True),
        ("a > 2 ? a + b : 1", 0.0, 3.0, 6.0, 9.0, True),
        ("max(a, b)", 0.0, 0.0, 0.0, 0.0, False),
        ("a / 3", 0.0, 1.0, 0.0, 0.333, True),  # milli precision, truncated as KEDA's SetMilli(int64(v*1000))
    ],
)
def test_modifiers_composite(
    formula: str, activation: float, a: float, b: float, composite: float, active: bool
) -> None:
    mods = ScalingModifiers(formula=formula, target=2.0, activation_target=activation)
    decision = decider("hpa", modifiers=mods).decide(named(a, b), 1, now=0.0)
    assert decision.metric_values == {COMPOSITE_METRIC: composite}
    assert decision.active is active


def test_modifiers_ignore_individual_trigger_activity() -> None:
    mods = ScalingModifiers(formula="a - b", target=1.0)
    # Both triggers are active on their own, but the composite 0 is not above 0.
    decision = decider("hpa", modifiers=mods).decide(named(5, 5), 0, now=0.0)
    assert not decision.active and decision.desired_replicas is None


def test_formula_error_is_inactive_with_one_event_and_a_recovery() -> None:
    mods = ScalingModifiers(formula="a / b", target=1.0)
    d = decider("hpa", modifiers=mods)
    decision = d.decide(named(5, 0), 0, now=0.0)
    assert not decision.active and decision.metric_values == {}
    assert [(e.reason, e.type) for e in decision.events] == [("KEDAMetricSourceFailed", "Warning")]
    assert "division by zero" in decision.events[0].message
    assert d.decide(named(5, 0), 0, now=30.0).events == ()
    back = d.decide(named(5, 1), 1, now=60.0)
    assert reasons(back) == ["ScalerRecovered"] and back.active
    assert COMPOSITE_METRIC not in back.health


def test_failing_trigger_in_a_formula_is_a_metric_source_failure() -> None:
    mods = ScalingModifiers(formula="a ?? 3", target=1.0)
    decision = decider("hpa", modifiers=mods).decide(named(None, 1), 0, now=0.0)
    assert reasons(decision) == ["KEDAMetricSourceFailed"]
    # The formula still gives a value (a is nil), but an erroring trigger makes the object inactive.
    assert decision.metric_values == {COMPOSITE_METRIC: 3.0} and not decision.active


def test_scaling_modifiers_fallback_feeds_nil_into_the_formula() -> None:
    mods = ScalingModifiers(formula="a ?? b ?? 8", target=2.0)
    fb = Fallback(failure_threshold=1, replicas=4, behavior="scalingModifiers")
    d = decider("hpa", modifiers=mods, fallback=fb)
    assert d.decide(named(None, None), 1, now=0.0).metric_values == {COMPOSITE_METRIC: 8.0}
    # Second failure > threshold 1: both are nil for the formula, no longer errors: active on 8 > 0.
    decision = d.decide(named(None, None), 1, now=30.0)
    assert decision.metric_values == {COMPOSITE_METRIC: 8.0} and decision.active
    assert decision.conditions["Fallback"].status == "True"


def test_nil_formula_result_becomes_fallback_replicas() -> None:
    mods = ScalingModifiers(formula="a ?? b", target=2.0)
    fb = Fallback(failure_threshold=0, replicas=4, behavior="scalingModifiers")
    decision = decider("hpa", modifiers=mods, fallback=fb).decide(named(None, None), 1, now=0.0)
    assert decision.metric_values == {COMPOSITE_METRIC: 8.0}  # 4 replicas x target 2


def test_nil_formula_result_without_fallback_is_an_error() -> None:
    mods = ScalingModifiers(formula="a ?? nil", target=2.0)
    decision = decider("hpa", modifiers=mods).decide(named(None, 1), 1, now=0.0)
    assert decision.metric_values == {}
    assert any("no fallback is configured" in e.message for e in decision.events)


def test_bad_formula_is_a_formula_error() -> None:
    mods = ScalingModifiers(formula="a + nope", target=1.0)
    with pytest.raises(FormulaError, match="unknown name 'nope'"):
        ScaledObjectDecider(ObjectPolicy(modifiers=mods), obj=OBJ, trigger_names=["a", "b"])
    lazy = ScaledObjectDecider(ObjectPolicy(modifiers=mods), obj=OBJ)
    with pytest.raises(FormulaError, match="unknown name 'nope'"):
        lazy.decide(named(1, 1), 1, now=0.0)


# --- direct mode: the HPA part ------------------------------------------------------------------------


def test_direct_mode_activates_then_hands_over_to_the_hpa() -> None:
    d = ScaledObjectDecider(ObjectPolicy(behavior=Behavior()), mode="direct", obj=OBJ)
    first = d.decide([trig(80)], 0, now=0.0)  # 80 queued, 10 per replica
    assert (first.desired_replicas, first.reason) == (1, "KEDAScaleTargetActivated")
    # Default behavior from 1: max(2, 1 + 4) = 5.
    assert d.decide([trig(80)], 1, now=15.0).desired_replicas == 5
    assert d.decide([trig(80)], 5, now=30.0).desired_replicas == 8


def test_direct_mode_scales_within_one_to_n_during_cooldown() -> None:
    d = ScaledObjectDecider(ObjectPolicy(behavior=FAST_DOWN, min_replicas=0), mode="direct", obj=OBJ)
    d.state.last_active_time = 0.0
    # Inactive, 60 s into a 300 s cooldown: the HPA (min 1, not 0) shrinks 5 -> 1.
    decision = d.decide([trig(0)], 5, now=60.0)
    assert decision.desired_replicas == 1 and decision.conditions["Active"].reason == "ScalerCooldown"
    # After the cooldown KEDA takes it to zero.
    assert d.decide([trig(0)], 1, now=301.0).desired_replicas == 0


def test_direct_mode_paused_scale_in_disables_hpa_scale_down() -> None:
    d = ScaledObjectDecider(ObjectPolicy(behavior=FAST_DOWN), mode="direct", obj=OBJ)
    decision = d.decide([trig(10)], 5, now=0.0, pause=PauseState(paused_scale_in=True))
    assert decision.desired_replicas == 5
    assert d.decide([trig(10)], 5, now=1.0).desired_replicas == 1  # annotation removed


def test_direct_mode_paused_scale_out_disables_hpa_scale_up() -> None:
    d = ScaledObjectDecider(ObjectPolicy(behavior=Behavior()), mode="direct", obj=OBJ)
    assert d.decide([trig(80)], 2, now=0.0, pause=PauseState(paused_scale_out=True)).desired_replicas == 2


def test_direct_mode_hpa_min_is_at_least_one_and_respects_max() -> None:
    d = ScaledObjectDecider(ObjectPolicy(max_replicas=3, behavior=Behavior()), mode="direct", obj=OBJ)
    assert d.decide([trig(500)], 2, now=0.0).desired_replicas == 3
    assert d.decide([trig(500)], 7, now=1.0).desired_replicas == 3  # above max


def test_direct_mode_failing_trigger_blocks_scale_down_but_not_up() -> None:
    d = ScaledObjectDecider(ObjectPolicy(behavior=FAST_DOWN), mode="direct", obj=OBJ)
    down = d.decide([trig(1), failing("s1-b")], 6, now=0.0)
    assert down.desired_replicas == 6
    up = d.decide([trig(100), failing("s1-b")], 6, now=15.0)
    assert up.desired_replicas == 10


def test_direct_mode_cpu_utilization() -> None:
    d = ScaledObjectDecider(ObjectPolicy(min_replicas=1, behavior=Behavior()), mode="direct", obj=OBJ)
    cpu = trig(90, name="cpu", resource=True, metric_type="Utilization", target=60)
    decision = d.decide([cpu], 2, now=0.0)
    assert decision.active and decision.desired_replicas == 3  # ceil(2 * 90 / 60)
    assert decision.metric_values == {}  # resource metrics are not served by the external-metrics API


def test_hpa_mode_serves_metric_values_and_leaves_one_to_n_alone() -> None:
    d = decider("hpa", min_replicas=1)
    decision = d.decide([trig(80), trig(0, name="s1-b"), failing("s2-c")], 4, now=0.0)
    assert decision.desired_replicas is None
    assert decision.metric_values == {"s0-queue": 80, "s1-b": 0}  # the failing one is absent: serve an error


# --- restart ------------------------------------------------------------------------------------------


def test_rebuilt_from_a_copied_state_decides_the_same() -> None:
    policy = ObjectPolicy(
        min_replicas=0,
        fallback=Fallback(failure_threshold=2, replicas=3),
        behavior=Behavior(scale_down=ScalingRules(stabilization_window_seconds=60)),
        cooldown_period=120.0,
    )
    polls = [
        ([trig(50)], 0),
        ([trig(50)], 1),
        ([failing()], 5),
        ([trig(0)], 5),
        ([failing()], 5),
        ([failing()], 5),
        ([failing()], 5),
        ([trig(0)], 3),
        ([trig(0)], 3),
        ([trig(0)], 1),
    ]
    original = ScaledObjectDecider(policy, mode="direct", obj=OBJ)
    for i, (results, current) in enumerate(polls):
        twin = ScaledObjectDecider(policy, state=copy.deepcopy(original.state), mode="direct", obj=OBJ)
        now = 40.0 * i
        a = original.decide(results, current, now=now)
        b = twin.decide(results, current, now=now)
        assert a == b, f"poll {i}"
        assert twin.state == original.state


def test_restart_does_not_flap_back_to_zero_in_cooldown() -> None:
    d = decider("direct")
    d.decide([trig(50)], 0, now=0.0)  # activated, lastActiveTime 0
    restarted = ScaledObjectDecider(ObjectPolicy(), state=copy.deepcopy(d.state), mode="direct", obj=OBJ)
    # 100 s later, inactive: without the persisted lastActiveTime this would scale to zero at once.
    assert restarted.decide([trig(0)], 1, now=100.0).desired_replicas == 1
    fresh = ScaledObjectDecider(ObjectPolicy(), mode="direct", obj=OBJ)
    assert fresh.decide([trig(0)], 1, now=100.0).desired_replicas == 0


def test_state_default_is_a_fresh_lifecycle_state() -> None:
    assert ScaledObjectDecider(ObjectPolicy()).state == LifecycleState()


def test_fallback_value_has_milli_precision() -> None:
    # KEDA: NewMilliQuantity(int64(target * 1000 * replicas)): 0.4444... x 2 = 0.8888... -> 0.888.
    d = decider("hpa", fallback=Fallback(failure_threshold=0, replicas=2))
    assert d.decide([failing(target=4 / 9)], 1, now=0.0).metric_values == {"s0-queue": 0.888}


def test_a_removed_trigger_does_not_pin_fallback_on() -> None:
    d = decider("hpa", fallback=Fallback(failure_threshold=1, replicas=3))
    d.state.health["s9-removed"] = MetricHealth(10, "Failing")
    assert d.decide([trig(1)], 1, now=0.0).conditions["Fallback"].status == "False"


def test_a_formula_failing_at_run_time_holds_the_count_like_a_failing_trigger() -> None:
    # Division by zero for many cooldowns: the 4 replicas stay, as for a failing trigger; never 0.
    mods = ScalingModifiers(formula="a / b", target=1.0)
    d = decider("direct", modifiers=mods, cooldown_period=10, behavior=FAST_DOWN)
    for now in range(0, 600, 30):
        decision = d.decide(named(8, 0), 4, now=float(now))
        assert decision.desired_replicas in (None, 4), now
        assert not decision.active
    assert decision.conditions["Ready"].status == "False"


def test_a_formula_failing_past_the_fallback_threshold_uses_fallback_replicas() -> None:
    mods = ScalingModifiers(formula="a / b", target=1.0)
    fb = Fallback(failure_threshold=1, replicas=2)
    d = decider("direct", modifiers=mods, fallback=fb, cooldown_period=10, behavior=FAST_DOWN)
    first = d.decide(named(8, 0), 4, now=0.0)
    assert first.desired_replicas in (None, 4)  # one failure: held
    second = d.decide(named(8, 0), 4, now=30.0)
    assert second.metric_values == {COMPOSITE_METRIC: 2.0} and second.active
    assert second.desired_replicas == 2
    assert second.conditions["Fallback"].status == "True"


# --- ebb.dev/cooldown-from (keda#6719) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "cooldown_from", "polls", "expected"),
    [
        # Each poll: (now, trigger value, busy replicas); the last poll's desired count is checked.
        # The queue empties at 100; workers stay busy until 250. cooldownPeriod 60.
        ("KEDA: counts from the last active poll", "last-active-poll", [(100, 5, 3), (150, 0, 3), (161, 0, 3)], 0),
        ("KEDA: busy replicas change nothing", "last-active-poll", [(100, 5, 3), (250, 0, 3), (251, 0, 0)], 0),
        (
            "last-activity: a busy replica holds the cooldown",
            "last-activity",
            [(100, 5, 3), (150, 0, 3), (161, 0, 3)],
            None,
        ),
        (
            "last-activity: counts from the last busy poll",
            "last-activity",
            [(100, 5, 3), (250, 0, 1), (310, 0, 0)],
            None,
        ),
        ("last-activity: strictly after", "last-activity", [(100, 5, 3), (250, 0, 1), (310.5, 0, 0)], 0),
        ("last-activity: unknown busy state counts as no work", "last-activity", [(100, 5, None), (161, 0, None)], 0),
        ("last-activity: idle replicas are no work", "last-activity", [(100, 5, 0), (150, 0, 0), (161, 0, 0)], 0),
    ],
)
def test_cooldown_from(
    case: str, cooldown_from: str, polls: list[tuple[float, float, int | None]], expected: int | None
) -> None:
    d = decider("hpa", cooldown_period=60.0, cooldown_from=cooldown_from)
    decision = None
    for now, value, busy in polls:
        decision = d.decide([trig(value)], 3, now=float(now), busy_replicas=busy)
    assert decision is not None
    assert decision.desired_replicas == expected, case


def test_cooldown_from_last_activity_counts_an_active_trigger_beside_a_failing_one() -> None:
    # KEDA does not move lastActiveTime when another trigger errors; with last-activity that poll still saw work.
    polls = [(100.0, [trig(5)]), (200.0, [trig(5), failing("s1-other")]), (201.0, [trig(0), trig(0, name="s1-other")])]
    outcomes = {}
    for mode in ("last-active-poll", "last-activity"):
        d = decider("hpa", cooldown_period=60.0, cooldown_from=mode)
        for now, results in polls:
            decision = d.decide(results, 2, now=now)
        outcomes[mode] = (decision.desired_replicas, decision.last_active_time)
    assert outcomes["last-active-poll"] == (0, 100.0)  # 201 > 100 + 60
    assert outcomes["last-activity"] == (None, 100.0)  # 201 < 200 + 60; status.lastActiveTime stays KEDA's


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [({}, "last-active-poll"), ({"ebb.dev/cooldown-from": "last-activity"}, "last-activity")],
)
def test_cooldown_from_annotation(annotations: dict[str, str], expected: str) -> None:
    assert cooldown_from(annotations, OBJ) == expected


@pytest.mark.parametrize("value", ["", "last_activity", "Last-Activity", "true"])
def test_cooldown_from_annotation_refuses_other_values(value: str) -> None:
    with pytest.raises(SpecError) as err:
        cooldown_from({"ebb.dev/cooldown-from": value}, OBJ)
    assert err.value.field == "metadata.annotations[ebb.dev/cooldown-from]"
    assert "last-active-poll, last-activity" in err.value.message and repr(value) in err.value.message
