"""The HPA ebb builds for a ScaledObject, compared field by field with what KEDA's hpa.go builds."""

from __future__ import annotations

from typing import Any

import pytest

from ebb.errors import SpecError
from ebb.kube.hpa import TargetKind, build_hpa, hpa_needs_update, quantity
from ebb.scalers.base import MetricSpec
from ebb.spec import ScaledObject, parse_object

DEPLOYMENT = TargetKind("apps", "v1", "Deployment", "deployments")


def so(spec: dict[str, Any] | None = None, **meta: Any) -> ScaledObject:
    base: dict[str, Any] = {
        "scaleTargetRef": {"name": "web"},
        "triggers": [{"type": "redis", "metadata": {"listName": "jobs"}}],
    }
    base.update(spec or {})
    obj, errors = parse_object(
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "worker", "namespace": "ns", **meta},
            "spec": base,
        }
    )
    assert not errors, errors
    assert isinstance(obj, ScaledObject)
    return obj


REDIS = MetricSpec("s0-redis-jobs", 5.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, "5"),
        (0.5, "500m"),
        (1.25, "1250m"),
        (0, "0"),
        (2000, "2k"),
        (1500, "1500"),
        (3e6, "3M"),
        (float("nan"), "0"),
        (-1, "0"),
        (float("inf"), "0"),
        (0.0001, "0"),
    ],
)
def test_quantity_is_canonical_with_milli_precision(value: float, expected: str) -> None:
    assert quantity(value) == expected


def test_hpa_for_a_plain_scaled_object_matches_keda() -> None:
    hpa = build_hpa(so(labels={"team": "a"}, annotations={"note": "x"}), [REDIS], DEPLOYMENT, uid="u-1")
    assert hpa["apiVersion"] == "autoscaling/v2"
    meta = hpa["metadata"]
    assert meta["name"] == "keda-hpa-worker"
    assert meta["namespace"] == "ns"
    assert meta["labels"]["app.kubernetes.io/name"] == "keda-hpa-worker"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "worker"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "keda-operator"
    assert "app.kubernetes.io/version" in meta["labels"]
    assert meta["labels"]["team"] == "a"
    assert meta["annotations"] == {"note": "x"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "name": "worker",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "s0-redis-jobs",
                        "selector": {"matchLabels": {"scaledobject.keda.sh/name": "worker"}},
                    },
                    "target": {"type": "AverageValue", "averageValue": "5"},
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("spec", "expected_min", "expected_max"),
    [
        ({}, 1, 100),
        ({"minReplicaCount": 0, "maxReplicaCount": 7}, 1, 7),
        ({"minReplicaCount": 3, "maxReplicaCount": 9}, 3, 9),
    ],
)
def test_min_replicas_is_never_zero(spec: dict[str, Any], expected_min: int, expected_max: int) -> None:
    hpa = build_hpa(so(spec), [REDIS], DEPLOYMENT, uid="u")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (expected_min, expected_max)


def test_custom_hpa_name_and_excluded_labels() -> None:
    obj = so(
        {"advanced": {"horizontalPodAutoscalerConfig": {"name": "mine"}}},
        labels={"keep": "1", "drop": "2"},
        annotations={"scaledobject.keda.sh/hpa-excluded-labels": "drop"},
    )
    hpa = build_hpa(obj, [REDIS], DEPLOYMENT, uid="u")
    assert hpa["metadata"]["name"] == "mine"
    assert hpa["metadata"]["labels"]["keep"] == "1"
    assert "drop" not in hpa["metadata"]["labels"]


def test_metrics_are_sorted_by_type_with_value_and_resource_targets() -> None:
    specs = [
        MetricSpec("s0-redis-jobs", 2.5, "Value"),
        MetricSpec("cpu", 60, "Utilization", source="Resource", resource_name="cpu"),
        MetricSpec("memory", 512, "AverageValue", source="Resource", resource_name="memory", container_name="app"),
    ]
    metrics = build_hpa(so(), specs, DEPLOYMENT, uid="u")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["ContainerResource", "External", "Resource"]
    assert metrics[0]["containerResource"] == {
        "name": "memory",
        "container": "app",
        "target": {"type": "AverageValue", "averageValue": "512"},
    }
    assert metrics[1]["external"]["target"] == {"type": "Value", "value": "2500m"}
    assert metrics[2]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}


def test_scaling_modifiers_replace_external_metrics_with_one_composite() -> None:
    obj = so(
        {
            "advanced": {"scalingModifiers": {"formula": "a + b", "target": "10", "metricType": "Value"}},
            "triggers": [
                {"type": "redis", "name": "a", "metadata": {"listName": "x"}},
                {"type": "redis", "name": "b", "metadata": {"listName": "y"}},
            ],
        }
    )
    specs = [
        MetricSpec("s0-redis-x", 1),
        MetricSpec("s1-redis-y", 1),
        MetricSpec("cpu", 50, "Utilization", source="Resource", resource_name="cpu"),
    ]
    metrics = build_hpa(obj, specs, DEPLOYMENT, uid="u")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["External", "Resource"]
    assert metrics[0]["external"]["metric"]["name"] == "composite-metric"
    assert metrics[0]["external"]["target"] == {"type": "Value", "value": "10"}


def test_duplicate_external_metric_names_are_refused_naming_the_object() -> None:
    with pytest.raises(SpecError) as info:
        build_hpa(so(), [REDIS, REDIS], DEPLOYMENT, uid="u")
    assert "ScaledObject ns/worker" in str(info.value)
    assert "s0-redis-jobs" in str(info.value)


BEHAVIOR = {
    "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}
}


@pytest.mark.parametrize(
    ("annotations", "behavior", "expected"),
    [
        ({}, None, None),
        ({}, BEHAVIOR, BEHAVIOR),
        ({"autoscaling.keda.sh/paused-scale-in": "true"}, None, {"scaleDown": {"selectPolicy": "Disabled"}}),
        ({"autoscaling.keda.sh/paused-scale-out": "true"}, None, {"scaleUp": {"selectPolicy": "Disabled"}}),
        (
            {"autoscaling.keda.sh/paused-scale-in": "true"},
            BEHAVIOR,
            {"scaleDown": {**BEHAVIOR["scaleDown"], "selectPolicy": "Disabled"}},
        ),
        ({"autoscaling.keda.sh/paused-scale-in": "false"}, None, None),
    ],
)
def test_behavior_is_copied_and_paused_directions_disabled(
    annotations: dict[str, str], behavior: dict[str, Any] | None, expected: dict[str, Any] | None
) -> None:
    spec = {"advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}}} if behavior else {}
    hpa = build_hpa(so(spec, annotations=annotations), [REDIS], DEPLOYMENT, uid="u")
    assert hpa["spec"].get("behavior") == expected


def test_custom_resource_target_uses_its_group_version() -> None:
    rollout = TargetKind("argoproj.io", "v1alpha1", "Rollout", "rollouts")
    hpa = build_hpa(
        so({"scaleTargetRef": {"name": "r", "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout"}}),
        [REDIS],
        rollout,
        uid="u",
    )
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "r"}


def test_update_is_needed_only_for_real_differences() -> None:
    wanted = build_hpa(so(), [REDIS], DEPLOYMENT, uid="u")
    live = {**wanted, "spec": {**wanted["spec"], "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}}
    assert not hpa_needs_update(wanted, live)  # defaults the API server filled in are not a difference
    changed = build_hpa(so({"maxReplicaCount": 5}), [REDIS], DEPLOYMENT, uid="u")
    assert hpa_needs_update(changed, live)
    fewer = {**wanted, "spec": {**wanted["spec"], "metrics": []}}
    assert hpa_needs_update(wanted, fewer)
