"""Conversion of manifests into the decision core's dataclasses."""

from __future__ import annotations

from typing import Any

import pytest

from ebb.scaling.types import (
    Behavior,
    Fallback,
    ObjectPolicy,
    PauseState,
    ScalingModifiers,
    ScalingPolicy,
    ScalingRules,
)
from ebb.spec import ScaledJob, ScaledObject, hpa_name, object_policy, pause_state
from tests.spec._support import MINIMAL_SCALED_JOB, MINIMAL_SCALED_OBJECT, edited, load_docs


def scaled_object(*edits: tuple[str | tuple[str | int, ...], Any]) -> ScaledObject:
    result = load_docs(edited(MINIMAL_SCALED_OBJECT, *edits))
    assert result.errors == []
    so = result.objects[0]
    assert isinstance(so, ScaledObject)
    return so


def test_defaults_become_kedas_policy() -> None:
    assert object_policy(scaled_object(), now=1000.0) == ObjectPolicy(
        min_replicas=0,
        max_replicas=100,
        idle_replicas=None,
        polling_interval=30.0,
        cooldown_period=300.0,
        initial_cooldown_period=0.0,
        fallback=None,
        behavior=None,
        modifiers=None,
        created_at=1000.0,
    )


def test_every_field_is_carried_over() -> None:
    so = scaled_object(
        ("spec.pollingInterval", 5),
        ("spec.cooldownPeriod", 60),
        ("spec.initialCooldownPeriod", 120),
        ("spec.minReplicaCount", 2),
        ("spec.maxReplicaCount", 9),
        ("spec.idleReplicaCount", 0),
        ("spec.fallback", {"failureThreshold": 3, "replicas": 6, "behavior": "currentReplicasIfHigher"}),
        (
            "spec.advanced.horizontalPodAutoscalerConfig.behavior",
            {
                "scaleUp": {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 60, "tolerance": "25m"},
            },
        ),
    )
    policy = object_policy(so)
    assert (policy.polling_interval, policy.cooldown_period, policy.initial_cooldown_period) == (5.0, 60.0, 120.0)
    assert (policy.min_replicas, policy.max_replicas, policy.idle_replicas) == (2, 9, 0)
    assert policy.fallback == Fallback(failure_threshold=3, replicas=6, behavior="currentReplicasIfHigher")
    assert policy.behavior == Behavior(
        scale_up=ScalingRules(select_policy="Max", policies=(ScalingPolicy(type="Pods", value=4, period_seconds=15),)),
        scale_down=ScalingRules(stabilization_window_seconds=60, tolerance=0.025),
    )


def test_modifiers_get_float_targets() -> None:
    so = scaled_object(
        ("spec.triggers.0.name", "queue"),
        (
            "spec.advanced.scalingModifiers",
            {"formula": "queue * 2", "target": "2.5", "activationTarget": "1", "metricType": "Value"},
        ),
    )
    assert object_policy(so).modifiers == ScalingModifiers(
        formula="queue * 2", target=2.5, activation_target=1.0, metric_type="Value"
    )
    plain = scaled_object(("spec.advanced.scalingModifiers", {"formula": "q", "target": 3}))
    assert object_policy(plain).modifiers == ScalingModifiers(formula="q", target=3.0)


@pytest.mark.parametrize(
    ("stamp", "now", "expected"),
    [
        ("2024-05-01T12:00:00Z", 5.0, 1714564800.0),
        ("2024-05-01T14:00:00+02:00", None, 1714564800.0),
        ("2024-05-01T12:00:00", None, 1714564800.0),  # naive: UTC, as Kubernetes writes it
        (None, 77.0, 77.0),
        (None, None, 0.0),
    ],
)
def test_created_at_comes_from_creation_timestamp_else_now(
    stamp: str | None, now: float | None, expected: float
) -> None:
    edits = [("metadata.creationTimestamp", stamp)] if stamp else []
    assert object_policy(scaled_object(*edits), now=now).created_at == expected


@pytest.mark.parametrize(
    ("custom", "expected"),
    [(None, "keda-hpa-worker"), ("my-hpa", "my-hpa"), ("", "keda-hpa-worker")],
)
def test_hpa_name(custom: str | None, expected: str) -> None:
    edits = [("spec.advanced.horizontalPodAutoscalerConfig.name", custom)] if custom is not None else []
    assert hpa_name(scaled_object(*edits)) == expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, PauseState()),
        ({"autoscaling.keda.sh/paused": "true"}, PauseState(paused=True)),
        ({"autoscaling.keda.sh/paused": "false"}, PauseState()),
        ({"autoscaling.keda.sh/paused": "0"}, PauseState()),
        ({"autoscaling.keda.sh/paused": "T"}, PauseState(paused=True)),
        # KEDA: a value that is not a Go bool counts as true.
        ({"autoscaling.keda.sh/paused": "please"}, PauseState(paused=True)),
        ({"autoscaling.keda.sh/paused-replicas": "3"}, PauseState(paused=True, paused_replicas=3)),
        (
            {"autoscaling.keda.sh/paused-replicas": "0", "autoscaling.keda.sh/paused": "false"},
            PauseState(paused=True, paused_replicas=0),
        ),
        ({"autoscaling.keda.sh/paused-scale-in": "true"}, PauseState(paused_scale_in=True)),
        ({"autoscaling.keda.sh/paused-scale-out": "1"}, PauseState(paused_scale_out=True)),
        ({"autoscaling.keda.sh/force-activation": "TRUE"}, PauseState(force_activation=True)),
        ({"autoscaling.keda.sh/force-activation": "False"}, PauseState()),
    ],
)
def test_pause_state_reads_annotations_as_keda_does(annotations: dict[str, str], expected: PauseState) -> None:
    assert pause_state(scaled_object(("metadata.annotations", annotations))) == expected


def test_scaled_job_pause_knows_only_paused() -> None:
    doc = edited(
        MINIMAL_SCALED_JOB,
        ("metadata.annotations", {"autoscaling.keda.sh/paused": True, "autoscaling.keda.sh/paused-scale-in": "true"}),
    )
    job = load_docs(doc).objects[0]
    assert isinstance(job, ScaledJob)
    assert pause_state(job) == PauseState(paused=True)
