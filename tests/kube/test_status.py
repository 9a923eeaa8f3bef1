"""ScaledObject status and Events built from the core's decisions."""

from __future__ import annotations

from ebb.kube.status import (
    decision_status,
    error_status,
    event_manifest,
    hpa_active_condition,
    merge_conditions,
    patch_changes,
)
from ebb.scaling.types import Condition, Decision, MetricHealth, ScalingEvent

from ._crdschema import status_violations

T0 = 1_700_000_000.0


def test_first_status_starts_from_keda_initial_conditions() -> None:
    conditions = merge_conditions(None, {"Ready": Condition("True", "ScaledObjectReady", "ok")})
    assert [(c["type"], c["status"]) for c in conditions] == [
        ("Ready", "True"),
        ("Active", "Unknown"),
        ("Fallback", "Unknown"),
        ("Paused", "False"),
    ]


def test_conditions_have_only_the_fields_keda_crd_schema_keeps() -> None:
    """A real API server prunes `lastTransitionTime` (KEDA's schema lacks it): ebb neither writes nor keeps it."""
    older = [{"type": "Ready", "status": "True", "reason": "r", "message": "m", "lastTransitionTime": "t"}]
    conditions = merge_conditions(older, {"Active": Condition("False", "ScalerNotActive", "m")})
    assert all(set(c) == {"type", "status", "reason", "message"} for c in conditions)
    assert conditions[0] == {"type": "Ready", "status": "True", "reason": "r", "message": "m"}
    status = decision_status(_decision(health={"s0": MetricHealth(1, "Failing")}), {"conditions": older})
    assert status_violations("scaledobjects", status) == []


def test_schema_check_names_what_a_real_api_server_would_prune() -> None:
    pruned = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
    assert status_violations("scaledobjects", pruned) == [
        "status['conditions'][0]: Additional properties are not allowed ('lastTransitionTime' was unexpected)"
    ]
    assert status_violations("scaledjobs", {"unknownField": 1})
    # A merge patch's nulls delete fields: allowed.
    assert status_violations("scaledobjects", {"pausedReplicaCount": None, "health": {"gone": None}}) == []


def test_decision_status_carries_last_active_time_and_health_of_current_metrics() -> None:
    decision = Decision(
        desired_replicas=None,
        active=True,
        reason="ScalerActive",
        conditions={"Ready": Condition("True", "ScaledObjectReady", "ok")},
        health={"s0-redis-a": MetricHealth(2, "Failing"), "s9-gone": MetricHealth(0, "Happy")},
        last_active_time=T0,
    )
    status = decision_status(decision, {}, external_metric_names=["s0-redis-a"])
    assert status["lastActiveTime"] == "2023-11-14T22:13:20Z"
    assert status["health"] == {"s0-redis-a": {"numberOfFailures": 2, "status": "Failing"}}


def test_error_status_names_the_problem_in_ready() -> None:
    status = error_status({}, "ScaledObjectCheckFailed", "spec.triggers[0].metadata.listName: required")
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "ScaledObjectCheckFailed")
    assert "spec.triggers[0].metadata.listName" in ready["message"]
    active = status["conditions"][1]
    assert (active["type"], active["status"], active["reason"]) == ("Active", "Unknown", "UnknownState")


def test_event_refers_to_its_object_with_keda_reason() -> None:
    ref = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "w", "namespace": "ns", "uid": "u"}
    event = event_manifest(ref, ScalingEvent("KEDAScalerFailed", "boom", "Warning"), T0)
    assert event["involvedObject"] == ref
    assert (event["reason"], event["type"], event["metadata"]["namespace"]) == ("KEDAScalerFailed", "Warning", "ns")
    assert event["metadata"]["name"].startswith("w.")


def _decision(**kw: object) -> Decision:
    return Decision(desired_replicas=None, active=True, reason="ScalerActive", **kw)  # type: ignore[arg-type]


def test_triggers_activity_names_every_external_metric_and_drops_stale_ones() -> None:
    existing = {"triggersActivity": {"s1-old": {"isActive": True}}, "health": {"s1-old": {"numberOfFailures": 0}}}
    status = decision_status(
        _decision(),
        existing,
        external_metric_names=["s0-redis-a", "s1-cron"],
        active_metrics=["s0-redis-a"],
    )
    assert status["triggersActivity"] == {
        "s0-redis-a": {"isActive": True},
        "s1-cron": {"isActive": False},
        "s1-old": None,  # a merge patch deletes it
    }
    assert status["health"]["s1-old"] is None


def test_hpa_active_mirrors_the_hpa_scaling_active_condition() -> None:
    def hpa(**cond: str) -> dict[str, object]:
        return {
            "status": {"conditions": [{"type": "AbleToScale", "status": "True"}, {"type": "ScalingActive", **cond}]}
        }

    assert hpa_active_condition(hpa(status="True", reason="ValidMetricFound")) == Condition(
        "True", "HPAActive", "HPA is actively scaling"
    )
    idle = hpa_active_condition(hpa(status="False", reason="ScalingDisabled", message="scaling is disabled"))
    assert idle == Condition("True", "ScalingDisabled", "scaling is disabled")
    failing = hpa_active_condition(hpa(status="False", reason="FailedGetExternalMetric", message="no metric"))
    assert failing == Condition("False", "FailedGetExternalMetric", "HPA is not actively scaling: no metric")
    assert hpa_active_condition(hpa(status="False", message="x")) == Condition(
        "False", "HPAMetricsUnavailable", "HPA is not actively scaling: x"
    )
    # No HPA yet, or no ScalingActive reported: KEDA leaves HPAActive untouched.
    assert hpa_active_condition(None) is None
    assert hpa_active_condition({"status": {"conditions": [{"type": "AbleToScale", "status": "True"}]}}) is None


def test_hpa_active_joins_the_conditions_after_keda_four() -> None:
    status = decision_status(_decision(), {}, hpa_active=Condition("True", "HPAActive", "HPA is actively scaling"))
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Active", "Fallback", "Paused", "HPAActive"]


def test_patch_changes_sees_only_real_changes() -> None:
    existing = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "health": {"a": {"numberOfFailures": 0, "status": "Happy"}},
        "lastActiveTime": "t1",
    }
    assert not patch_changes({"conditions": [{"type": "Ready", "status": "True"}]}, existing)
    assert not patch_changes({"health": {"a": {"numberOfFailures": 0, "status": "Happy"}, "gone": None}}, existing)
    assert patch_changes({"health": {"a": {"numberOfFailures": 1, "status": "Happy"}}}, existing)
    assert patch_changes({"lastActiveTime": "t2"}, existing)
    assert patch_changes({"health": {"a": None}}, existing)
    assert patch_changes({"triggersActivity": {"a": {"isActive": True}}}, existing)
