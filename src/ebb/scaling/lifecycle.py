"""A ScaledObject's lifecycle: pause, fallback, formulas, activation, cooldown and idle, around the HPA.

Follows KEDA (kedacore/keda, main): `RequestScale`, `scaleFromZeroOrIdle`, `scaleToZeroOrIdle`
(pkg/scaling/executor/scale_scaledobjects.go); `getScaledObjectState`, `getScalerState` and the fallback
events of `checkScalers` (pkg/scaling/scale_handler.go); `GetMetricsWithFallback`, `doFallback`,
`fallbackExceededThreshold` (pkg/fallback/fallback.go); `HandleScalingModifiers` (pkg/scaling/modifiers);
the pause handling of controllers/keda/scaledobject_controller.go; the annotations of
apis/keda/v1alpha1/scaledobject_types.go. The 1..N part is `hpa.HorizontalAutoscaler`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ebb.errors import SpecError
from ebb.scaling.hpa import MAX_INT32, HorizontalAutoscaler, MetricSample
from ebb.scaling.modifiers import Formula, FormulaEvaluationError, compile_formula
from ebb.scaling.types import (
    Behavior,
    Condition,
    CooldownFrom,
    Decision,
    LifecycleState,
    MetricHealth,
    MetricType,
    ObjectPolicy,
    PauseState,
    ScalingEvent,
    ScalingRules,
    TriggerResult,
)

PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
PAUSED_SCALE_IN_ANNOTATION = "autoscaling.keda.sh/paused-scale-in"
PAUSED_SCALE_OUT_ANNOTATION = "autoscaling.keda.sh/paused-scale-out"
FORCE_ACTIVATION_ANNOTATION = "autoscaling.keda.sh/force-activation"
#: ebb's choice of what cooldownPeriod counts from (keda#6719): "last-active-poll" (KEDA) or "last-activity".
COOLDOWN_FROM_ANNOTATION = "ebb.dev/cooldown-from"
COOLDOWN_FROM_VALUES: tuple[CooldownFrom, ...] = ("last-active-poll", "last-activity")
#: The single HPA metric that replaces all external ones when scalingModifiers are used.
COMPOSITE_METRIC = "composite-metric"

Mode = Literal["direct", "hpa"]

_FALSE = ("0", "f", "F", "FALSE", "false", "False")

READY_MESSAGE = "ScaledObject is defined correctly and is ready for scaling"
PAUSED_MESSAGE = "ScaledObject is paused"
UNPAUSED_MESSAGE = "pause annotation removed for ScaledObject"
ACTIVE_MESSAGE = "Scaling is performed because triggers are active"
FORCED_MESSAGE = "Scaling is performed because activation is being forced by annotation"
NOT_ACTIVE_MESSAGE = "Scaling is not performed because triggers are not active"
COOLDOWN_MESSAGE = "Scaler cooling down because triggers are not active"
PARTIAL_ERROR_MESSAGE = "Some triggers defined in ScaledObject are not working correctly"
TRIGGER_ERROR_MESSAGE = "Triggers defined in ScaledObject are not working correctly"
FALLBACK_EXISTS_MESSAGE = "At least one trigger is falling back on this scaled object"
NO_FALLBACK_MESSAGE = "No fallbacks are active on this scaled object"


def _bool_annotation(annotations: Mapping[str, str], key: str) -> bool:
    """getBoolAnnotation: Go's strconv.ParseBool, and a value it cannot parse counts as true."""
    value = annotations.get(key)
    if value is None:
        return False
    return value not in _FALSE


def pause_state(annotations: Mapping[str, str], obj: str = "ScaledObject ?") -> PauseState:
    """Parse the autoscaling.keda.sh/* annotations as KEDA does.

    paused, paused-scale-in, paused-scale-out and force-activation follow Go's ParseBool ("1", "t", "true",
    "TRUE", "True" are true; "0", "f", "false", "FALSE", "False" are false); any other value counts as true.
    paused-replicas must be a base-10 integer (ParseInt); ebb also refuses a negative count. Like KEDA's
    NeedToBePausedByAnnotation, a paused-replicas annotation makes `paused` true whatever `paused` says.
    """
    paused_replicas: int | None = None
    raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
    if raw is not None:
        if not re.fullmatch(r"[+-]?[0-9]+", raw) or not 0 <= int(raw) <= MAX_INT32:
            raise SpecError(
                obj,
                f"metadata.annotations[{PAUSED_REPLICAS_ANNOTATION}]",
                f"expected a replica count (a non-negative integer), got {raw!r}",
            )
        paused_replicas = int(raw)
    return PauseState(
        paused=paused_replicas is not None or _bool_annotation(annotations, PAUSED_ANNOTATION),
        paused_replicas=paused_replicas,
        paused_scale_in=_bool_annotation(annotations, PAUSED_SCALE_IN_ANNOTATION),
        paused_scale_out=_bool_annotation(annotations, PAUSED_SCALE_OUT_ANNOTATION),
        force_activation=_bool_annotation(annotations, FORCE_ACTIVATION_ANNOTATION),
    )


def cooldown_from(annotations: Mapping[str, str], obj: str = "ScaledObject ?") -> CooldownFrom:
    """The ebb.dev/cooldown-from annotation: "last-active-poll" (KEDA's rule, the default) or "last-activity"."""
    raw = annotations.get(COOLDOWN_FROM_ANNOTATION)
    if raw is None:
        return "last-active-poll"
    for value in COOLDOWN_FROM_VALUES:
        if raw == value:
            return value
    raise SpecError(
        obj,
        f"metadata.annotations[{COOLDOWN_FROM_ANNOTATION}]",
        f"expected one of {', '.join(COOLDOWN_FROM_VALUES)}, got {raw!r}",
    )


@dataclass
class _Metric:
    """One external metric after fallback: what the HPA (and the formula) sees this poll."""

    name: str
    target: float
    metric_type: MetricType
    value: float | None
    active: bool
    error: str | None
    trigger_name: str | None
    fallback: bool = False


def _milli_floor(value: float) -> float:
    # KEDA builds fallback and composite values with NewMilliQuantity(int64(v * 1000)).
    return int(value * 1000) / 1000


class ScaledObjectDecider:
    """Decides one ScaledObject poll after poll. Everything it remembers is in `.state` (persist it).

    `mode="direct"`: ebb is also the HPA; `desired_replicas` is the replica count to apply (None only when
    paused without a count). `mode="hpa"`: a Kubernetes HPA owns 1..N; `desired_replicas` is set only for
    KEDA's own transitions (activation from zero/idle, deactivation, raising to minReplicaCount,
    paused-replicas) and `metric_values` is what the external-metrics API must serve.

    `Decision.conditions` holds the conditions this poll sets; one that is absent keeps its previous value (as
    KEDA's status patch does; KEDA initializes Ready/Active/Fallback to Unknown and Paused to False).
    """

    def __init__(
        self,
        policy: ObjectPolicy,
        state: LifecycleState | None = None,
        mode: Mode = "direct",
        obj: str = "ScaledObject ?",
        *,
        target: str | None = None,
        trigger_names: Collection[str] | None = None,
    ) -> None:
        self.policy = policy
        self.state = state if state is not None else LifecycleState()
        self.mode: Mode = mode
        self.obj = obj
        #: How events name the scale target, e.g. "Deployment default/worker".
        self.target = target or f"the target of {obj}"
        self._formula: Formula | None = None
        self._formula_names: frozenset[str] | None = None
        self._names_fixed = trigger_names is not None
        if policy.modifiers is not None and trigger_names is not None:
            # Compiling now turns a bad formula into a FormulaError before the first poll.
            self._formula = compile_formula(policy.modifiers.formula, trigger_names, obj)

    # --- helpers ----------------------------------------------------------------------------------------

    @property
    def fallback_enabled(self) -> bool:
        """KEDA's isFallbackEnabled && HasValidFallback: without it the Fallback condition is False."""
        return self._fallback_enabled()

    def _fallback_enabled(self) -> bool:
        """isFallbackEnabled && HasValidFallback."""
        fb, mods = self.policy.fallback, self.policy.modifiers
        if fb is None or fb.failure_threshold < 0 or fb.replicas < 0:
            return False
        return mods is None or mods.target > 0

    def _formula_for(self, results: Sequence[TriggerResult]) -> Formula:
        """The compiled formula; without `trigger_names` it is compiled against the named non-cpu/memory
        triggers seen in the results, as KEDA compiles against the spec's. Raises FormulaError."""
        assert self.policy.modifiers is not None
        if self._names_fixed and self._formula is not None:
            return self._formula
        names = frozenset(r.trigger_name for r in results if r.trigger_name and not r.resource)
        if self._formula is None or names != self._formula_names:
            self._formula = compile_formula(self.policy.modifiers.formula, names, self.obj)
            self._formula_names = names
        return self._formula

    def _behavior(self, pause: PauseState) -> Behavior | None:
        """The HPA behavior KEDA generates: paused-scale-in/out disable that direction's selectPolicy."""
        behavior = self.policy.behavior
        if pause.paused_scale_in:
            behavior = behavior or Behavior()
            down = behavior.scale_down or ScalingRules()
            behavior = replace(behavior, scale_down=replace(down, select_policy="Disabled"))
        if pause.paused_scale_out:
            behavior = behavior or Behavior()
            up = behavior.scale_up or ScalingRules()
            behavior = replace(behavior, scale_up=replace(up, select_policy="Disabled"))
        return behavior

    def _fallback_value(self, target: float, metric_type: MetricType, current: int, ready: int | None) -> float | None:
        """doFallback: target x R (AverageValue), target x R / ready pods (Value); None without ready pods."""
        fb = self.policy.fallback
        assert fb is not None
        behavior = fb.behavior
        if behavior == "currentReplicas":
            replicas = float(current)
        elif behavior == "currentReplicasIfHigher":
            replicas = float(max(current, fb.replicas))
        elif behavior == "currentReplicasIfLower":
            replicas = float(min(current, fb.replicas))
        else:
            replicas = float(fb.replicas)
        if metric_type == "Value":
            ready_pods = current if ready is None else ready
            if ready_pods <= 0:
                return None
            replicas /= ready_pods
        return _milli_floor(target * replicas)

    # --- the poll ---------------------------------------------------------------------------------------

    def decide(
        self,
        results: Sequence[TriggerResult],
        current_replicas: int,
        now: float,
        pause: PauseState = PauseState(),  # noqa: B008 - frozen dataclass, safe as a default
        ready_replicas: int | None = None,
        busy_replicas: int | None = None,
        cooldown_period: float | None = None,
    ) -> Decision:
        """One poll. Mutates `self.state`; the returned Decision says what to apply and report.

        `busy_replicas`: how many replicas said they were working (busy probes), None when unknown. Only
        `cooldown_from="last-activity"` reads it: a busy replica is work seen, and holds the cooldown open.
        `cooldown_period` replaces the policy's for this poll only when it is shorter: prediction passes 0 when
        it forecasts no work and nothing waits (see `ebb.scaling.forecast.PredictiveSettings.hold`).
        """
        st, policy = self.state, self.policy
        current = current_replicas
        events: list[ScalingEvent] = []
        conditions: dict[str, Condition] = {}

        # 1. Pause (scaledobject_controller.go): paused / paused-replicas stop everything; paused-scale-in/out
        # only mark the object paused and block one direction.
        full_pause = pause.paused or pause.paused_replicas is not None
        any_pause = full_pause or pause.paused_scale_in or pause.paused_scale_out
        if any_pause:
            conditions["Paused"] = Condition("True", "ScaledObjectPaused", PAUSED_MESSAGE)
            if not st.paused:
                events.append(ScalingEvent("ScaledObjectPaused", PAUSED_MESSAGE))
        elif st.paused:
            conditions["Paused"] = Condition("False", "ScaledObjectUnpaused", UNPAUSED_MESSAGE)
            events.append(ScalingEvent("ScaledObjectUnpaused", UNPAUSED_MESSAGE))
        st.paused = any_pause
        if full_pause:
            # KEDA stops the scale loop and deletes the HPA: its memory goes with it.
            st.recommendations.clear()
            st.scale_up_events.clear()
            st.scale_down_events.clear()
            return Decision(
                desired_replicas=pause.paused_replicas,
                active=bool(st.was_active),
                reason="PausedReplicas" if pause.paused_replicas is not None else "ScaledObjectPaused",
                conditions=conditions,
                events=tuple(events),
                health=dict(st.health),
                last_active_time=st.last_active_time,
            )

        # 2. Each external trigger, through fallback (getScalerState + GetMetricsWithFallback).
        fb = policy.fallback
        mods = policy.modifiers
        fallback_enabled = self._fallback_enabled()
        failed_reason = "KEDAMetricSourceFailed" if mods is not None else "KEDAScalerFailed"
        metrics: list[_Metric] = []
        resources = [r for r in results if r.resource]
        for r in results:
            if r.resource:
                continue  # cpu/memory: served by metrics-server, never counted for activity or fallback
            error = r.error
            if error is None and r.value is None:
                error = "the scaler returned no value"
            previous = st.health.get(r.metric_name)
            was_failing = previous is not None and previous.status == "Failing"
            m = _Metric(r.metric_name, r.target, r.metric_type, None, False, None, r.trigger_name)
            if error is None:
                st.health[r.metric_name] = MetricHealth(0, "Happy")
                if was_failing:
                    events.append(ScalingEvent("ScalerRecovered", f"{r.metric_name}: the trigger works again"))
                m.value, m.active = r.value, r.active
            else:
                failures = (previous.number_of_failures if previous else 0) + 1
                st.health[r.metric_name] = MetricHealth(failures, "Failing")
                if not was_failing:
                    events.append(ScalingEvent(failed_reason, f"{r.metric_name}: {error}", "Warning"))
                m.error = error
                if fallback_enabled and fb is not None and failures > fb.failure_threshold:
                    if fb.behavior == "scalingModifiers":
                        # A nil for the formula; not an error, not active.
                        m.error = None
                    else:
                        target = mods.target if mods is not None else r.target
                        mtype = mods.metric_type if mods is not None else r.metric_type
                        value = self._fallback_value(target, mtype, current, ready_replicas)
                        if value is None:
                            m.error = "error performing fallback: no ready replicas for a Value metric"
                        else:
                            m.value, m.error, m.active, m.fallback = value, None, True, True
                            if mods is not None:
                                m.name, m.target, m.metric_type = COMPOSITE_METRIC, target, mtype
            metrics.append(m)

        is_error = any(m.error is not None for m in metrics)
        is_active = any(m.active for m in metrics if m.error is None)
        active_names = [m.name for m in metrics if m.active and m.error is None]
        fallback_metrics = [m for m in metrics if m.fallback]

        # 3. scalingModifiers: one composite metric, active iff composite > activationTarget.
        metric_values: dict[str, float] = {}
        composite: float | None = None
        formula_fallback = False
        if mods is not None:
            if fallback_metrics:
                composite = fallback_metrics[0].value
            else:
                composite = self._evaluate_formula(results, metrics, events)
                formula_health = st.health.get(COMPOSITE_METRIC)
                if formula_health is not None and formula_health.status == "Failing":
                    # A formula that fails at run time (division by zero...) is a failing metric source:
                    # the count holds, or fallback applies past its threshold; it is never read as zero.
                    is_error = True
                    if fallback_enabled and fb is not None and formula_health.number_of_failures > fb.failure_threshold:
                        value = self._fallback_value(mods.target, mods.metric_type, current, ready_replicas)
                        if value is not None:
                            composite, is_error, formula_fallback = value, False, True
            is_active, active_names = False, []
            above = not is_error and composite is not None and composite > mods.activation_target
            if formula_fallback or above:
                is_active, active_names = True, [COMPOSITE_METRIC]
            if composite is not None:
                metric_values[COMPOSITE_METRIC] = composite
        else:
            for m in metrics:
                if m.value is not None and m.error is None:
                    metric_values[m.name] = m.value

        # Only cpu/memory triggers: always active (they cannot wake a target from zero anyway).
        if resources and len(resources) == len(results) and not is_error:
            is_active = True

        # 4. Fallback condition and its events (fallbackExceededThreshold). KEDA scans every health entry;
        # only this poll's triggers are scanned here, so a trigger removed from the spec cannot pin it on.
        if fallback_enabled and fb is not None:
            fallback_now = formula_fallback or any(
                (h := st.health.get(r.metric_name)) is not None
                and h.status == "Failing"
                and h.number_of_failures > fb.failure_threshold
                for r in results
                if not r.resource
            )
            if fallback_now:
                conditions["Fallback"] = Condition("True", "FallbackExists", FALLBACK_EXISTS_MESSAGE)
            else:
                conditions["Fallback"] = Condition("False", "NoFallbackFound", NO_FALLBACK_MESSAGE)
        else:
            fallback_now = False
        if fallback_now and not st.fallback_active:
            events.append(ScalingEvent("ScaledObjectFallbackActivated", "ScaledObject fallback is active"))
        elif not fallback_now and st.fallback_active:
            events.append(ScalingEvent("ScaledObjectFallbackDeactivated", "ScaledObject fallback is no longer active"))
        st.fallback_active = fallback_now

        # ebb.dev/cooldown-from: last-activity. Work seen this poll: a trigger above its activation threshold
        # (KEDA skips lastActiveTime when another trigger errors; work was seen all the same) or a busy replica.
        if is_active or (busy_replicas is not None and busy_replicas > 0):
            st.last_activity_time = now

        # 5. RequestScale.
        ready = Condition("True", "ScaledObjectReady", READY_MESSAGE)
        min_r, idle = policy.min_replicas, policy.idle_replicas
        active = is_active or pause.force_activation
        desired: int | None = None
        reason: str
        if active:
            message = FORCED_MESSAGE if pause.force_activation else ACTIVE_MESSAGE
            conditions["Active"] = Condition("True", "ScalerActive", message)
            if (idle is not None and current < min_r) or current == 0:
                if pause.paused_scale_out:
                    reason = "ScaleOutPaused"
                else:
                    desired = max(min_r, 1)
                    if pause.force_activation:
                        why = "caused by forced activation annotation"
                    else:
                        why = f"triggered by {';'.join(active_names)}"
                    events.append(
                        ScalingEvent(
                            "KEDAScaleTargetActivated",
                            f"Scaled {self.target} from {current} to {desired}, {why}",
                        )
                    )
                    st.last_active_time = now
                    reason = "KEDAScaleTargetActivated"
            elif is_error:
                ready = Condition("Unknown", "PartialTriggerError", PARTIAL_ERROR_MESSAGE)
                reason = "ScalerActive"
            else:
                st.last_active_time = now
                reason = "ScalerActive"
        else:
            conditions["Active"] = Condition("False", "ScalerNotActive", NOT_ACTIVE_MESSAGE)
            reason = "ScalerNotActive"
            if is_error and fb is not None and fb.replicas != 0:
                pass  # the HPA falls back once failures pass the threshold; do not scale to zero meanwhile
            elif is_error and fb is None:
                ready = Condition("False", "TriggerError", TRIGGER_ERROR_MESSAGE)
            elif (idle is not None and current > idle) or (current > 0 and min_r == 0):
                if pause.paused_scale_in:
                    reason = "ScaleInPaused"
                elif self._cooldown_over(now, cooldown_period):
                    desired = idle if idle is not None else min_r
                    events.append(
                        ScalingEvent(
                            "KEDAScaleTargetDeactivated",
                            f"Deactivated {self.target} from {current} to {desired}",
                        )
                    )
                    reason = "KEDAScaleTargetDeactivated"
                else:
                    conditions["Active"] = Condition("False", "ScalerCooldown", COOLDOWN_MESSAGE)
                    reason = "ScalerCooldown"
            elif idle is None and current < min_r:
                desired = min_r
                reason = "MinReplicaCount"
        conditions["Ready"] = ready
        st.was_active = active

        # 6. Direct mode: where KEDA left the count alone, the HPA decides 1..N.
        if self.mode == "direct" and desired is None:
            desired = current
            if current >= 1:
                samples = self._hpa_samples(metrics, resources, composite)
                hpa = HorizontalAutoscaler(max(1, min_r), policy.max_replicas, self._behavior(pause), state=st)
                result = hpa.desired(samples, current, now, ready_replicas)
                desired = result.desired_replicas
                if desired != current or reason in ("ScalerActive", "ScalerNotActive"):
                    reason = result.reason

        return Decision(
            desired_replicas=desired,
            active=active,
            reason=reason,
            conditions=conditions,
            events=tuple(events),
            metric_values=metric_values,
            health=dict(st.health),
            last_active_time=st.last_active_time,
        )

    def _cooldown_over(self, now: float, shorter: float | None = None) -> bool:
        """scaleToZeroOrIdle: strictly after lastActiveTime + cooldownPeriod, or, if the object was never
        active, strictly after creation + initialCooldownPeriod. With cooldown_from "last-activity" the later
        of lastActiveTime and the last poll that saw work (an active trigger or a busy replica) counts. `shorter`
        (if below the policy's) replaces cooldownPeriod, never initialCooldownPeriod."""
        p, last = self.policy, self.state.last_active_time
        if p.cooldown_from == "last-activity":
            seen = self.state.last_activity_time
            if seen is not None and (last is None or seen > last):
                last = seen
        if last is None:
            return p.created_at + p.initial_cooldown_period < now
        cooldown = p.cooldown_period if shorter is None else min(shorter, p.cooldown_period)
        return last + cooldown < now

    def _evaluate_formula(
        self, results: Sequence[TriggerResult], metrics: Sequence[_Metric], events: list[ScalingEvent]
    ) -> float | None:
        """calculateScalingModifiersFormula: a nil result becomes fallback.replicas x target."""
        mods, fb, st = self.policy.modifiers, self.policy.fallback, self.state
        assert mods is not None
        formula = self._formula_for(results)
        values: dict[str, float | None] = {}
        for m in metrics:
            if m.trigger_name:
                values[m.trigger_name] = m.value if m.error is None else None
        error: str | None = None
        composite: float | None = None
        try:
            out = formula.evaluate(values)
            if out is None:
                if fb is None:
                    raise FormulaEvaluationError(self.obj, "the formula evaluated to nil but no fallback is configured")
                out = float(fb.replicas) * mods.target
            composite = _milli_floor(out)
        except FormulaEvaluationError as exc:
            error = exc.message
        except OverflowError as exc:
            error = str(exc)
        # The composite's health tracks formula failures (so a failure is reported once, and its recovery).
        previous = st.health.get(COMPOSITE_METRIC)
        if error is not None:
            failures = (previous.number_of_failures if previous else 0) + 1
            st.health[COMPOSITE_METRIC] = MetricHealth(failures, "Failing")
            if previous is None:
                events.append(ScalingEvent("KEDAMetricSourceFailed", f"{COMPOSITE_METRIC}: {error}", "Warning"))
        elif previous is not None:
            del st.health[COMPOSITE_METRIC]
            events.append(ScalingEvent("ScalerRecovered", f"{COMPOSITE_METRIC}: the formula evaluates again"))
        return composite

    def _hpa_samples(
        self, metrics: Sequence[_Metric], resources: Sequence[TriggerResult], composite: float | None
    ) -> list[MetricSample]:
        """The HPA's metrics: external ones (or the composite) as served, plus cpu/memory."""
        mods = self.policy.modifiers
        samples: list[MetricSample] = []
        if mods is not None:
            samples.append(MetricSample(composite, mods.target, mods.metric_type, COMPOSITE_METRIC))
        else:
            for m in metrics:
                value = m.value if m.error is None else None
                samples.append(MetricSample(value, m.target, m.metric_type, m.name))
        for r in resources:
            value = r.value if r.error is None else None
            samples.append(MetricSample(value, r.target, r.metric_type, r.metric_name, resource=True))
        return samples


__all__ = [
    "COMPOSITE_METRIC",
    "COOLDOWN_FROM_ANNOTATION",
    "FORCE_ACTIVATION_ANNOTATION",
    "PAUSED_ANNOTATION",
    "PAUSED_REPLICAS_ANNOTATION",
    "PAUSED_SCALE_IN_ANNOTATION",
    "PAUSED_SCALE_OUT_ANNOTATION",
    "ScaledObjectDecider",
    "cooldown_from",
    "pause_state",
]
