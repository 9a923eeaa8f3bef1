"""From manifests to the decision core's plain dataclasses (ebb.scaling.types)."""

from __future__ import annotations

from datetime import UTC

from ebb.scaling import lifecycle
from ebb.scaling import types as core
from ebb.spec.models import (
    HorizontalPodAutoscalerBehavior,
    HPAScalingRules,
    ScaledJob,
    ScaledObject,
)


def hpa_name(so: ScaledObject) -> str:
    """The HPA KEDA creates for `so`: `advanced.horizontalPodAutoscalerConfig.name` or keda-hpa-<name>."""
    return so.hpa_name


def scaling_rules(rules: HPAScalingRules | None) -> core.ScalingRules | None:
    if rules is None:
        return None
    return core.ScalingRules(
        stabilization_window_seconds=rules.stabilization_window_seconds,
        select_policy=rules.select_policy,
        policies=(
            tuple(
                core.ScalingPolicy(type=p.type, value=p.value, period_seconds=p.period_seconds) for p in rules.policies
            )
            if rules.policies is not None
            else None
        ),
        tolerance=rules.tolerance,
    )


def behavior(spec: HorizontalPodAutoscalerBehavior | None) -> core.Behavior | None:
    """autoscaling/v2 behavior in the core's terms; unset directions stay None (Kubernetes defaults)."""
    if spec is None:
        return None
    return core.Behavior(scale_up=scaling_rules(spec.scale_up), scale_down=scaling_rules(spec.scale_down))


def created_at(obj: ScaledObject | ScaledJob, now: float | None = None) -> float:
    """Unix time of metadata.creationTimestamp (a naive time is UTC), else `now`, else 0."""
    stamp = obj.metadata.creation_timestamp
    if stamp is not None:
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return float(now) if now is not None else 0.0


def object_policy(so: ScaledObject, *, now: float | None = None) -> core.ObjectPolicy:
    """A ScaledObject's scaling rules with KEDA's defaults filled in.

    `created_at` (which initialCooldownPeriod counts from) is metadata.creationTimestamp when the manifest
    has one, else `now`: pass the time the object was loaded, or initialCooldownPeriod counts from 1970.
    """
    spec = so.spec
    fallback = (
        core.Fallback(
            failure_threshold=spec.fallback.failure_threshold,
            replicas=spec.fallback.replicas,
            behavior=spec.fallback.behavior,
        )
        if spec.fallback is not None
        else None
    )
    modifiers_spec = spec.scaling_modifiers
    modifiers = (
        core.ScalingModifiers(
            formula=modifiers_spec.formula or "",
            target=modifiers_spec.target_value,
            activation_target=modifiers_spec.activation_target_value,
            metric_type=modifiers_spec.metric_type,
        )
        if modifiers_spec is not None
        else None
    )
    return core.ObjectPolicy(
        min_replicas=spec.min_replica_count,
        max_replicas=spec.max_replica_count,
        idle_replicas=spec.idle_replica_count,
        polling_interval=float(spec.polling_interval),
        cooldown_period=float(spec.cooldown_period),
        initial_cooldown_period=float(spec.initial_cooldown_period),
        fallback=fallback,
        behavior=behavior(spec.behavior),
        modifiers=modifiers,
        created_at=created_at(so, now),
        cooldown_from=lifecycle.cooldown_from(so.metadata.annotations, so.ref),
    )


def pause_state(obj: ScaledObject | ScaledJob) -> core.PauseState:
    """The autoscaling.keda.sh/* annotations of `obj`, read by the core's rules; a ScaledJob only knows `paused`."""
    state = lifecycle.pause_state(obj.metadata.annotations, obj.ref)
    return core.PauseState(paused=state.paused) if isinstance(obj, ScaledJob) else state
