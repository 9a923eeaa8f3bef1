"""ScaledObject status and Kubernetes Events, built from the core's Decisions. Pure: dicts in, dicts out.

Condition types, reasons and messages are KEDA's (apis/keda/v1alpha1/condition_types.go,
pkg/eventreason/eventreason.go). A condition has KEDA's four fields only (type, status, reason, message): KEDA's CRD
schema has no `lastTransitionTime`, and a real API server prunes what its schema lacks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ebb.scaling.types import Condition, Decision, ScalingEvent
from ebb.spec.models import ScaledJob, ScaledObject

CONDITION_ORDER = ("Ready", "Active", "Fallback", "Paused", "HPAActive")
#: What KEDA's CRD schema allows in a condition (apis/keda/v1alpha1/condition_types.go).
CONDITION_FIELDS = ("type", "status", "reason", "message")
#: Who Events say they come from.
COMPONENT = "ebb-operator"


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def initial_conditions() -> dict[str, Condition]:
    """What KEDA starts an object with: Ready/Active/Fallback Unknown, Paused False."""
    return {
        "Ready": Condition("Unknown", ""),
        "Active": Condition("Unknown", ""),
        "Fallback": Condition("Unknown", ""),
        "Paused": Condition("False", ""),
    }


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None, updates: Mapping[str, Condition]
) -> list[dict[str, Any]]:
    """The conditions after `updates`, in KEDA's order, each with the fields KEDA's CRD schema allows."""
    current: dict[str, dict[str, Any]] = {
        str(c.get("type")): {k: c[k] for k in CONDITION_FIELDS if k in c} for c in existing or () if c.get("type")
    }
    if not current:
        for kind, cond in initial_conditions().items():
            current[kind] = _condition(kind, cond)
    for kind, cond in updates.items():
        current[kind] = _condition(kind, cond)
    ordered = [current.pop(kind) for kind in CONDITION_ORDER if kind in current]
    return ordered + [current[k] for k in sorted(current)]


def _condition(kind: str, cond: Condition) -> dict[str, Any]:
    return {"type": kind, "status": cond.status, "reason": cond.reason, "message": cond.message}


def _unique_join(values: Sequence[str]) -> str:
    return ",".join(dict.fromkeys(v for v in values if v))


def triggers_types(obj: ScaledObject | ScaledJob) -> str:
    return _unique_join([t.type for t in obj.spec.triggers])


def authentications_types(obj: ScaledObject | ScaledJob) -> str:
    return _unique_join([t.authentication_ref.name for t in obj.spec.triggers if t.authentication_ref])


def decision_status(
    decision: Decision,
    existing: Mapping[str, Any] | None,
    *,
    external_metric_names: Sequence[str] = (),
    active_metrics: Iterable[str] = (),
    hpa_active: Condition | None = None,
) -> dict[str, Any]:
    """The status fields one poll changes, as a merge patch against `existing`: conditions (with HPAActive when
    `hpa_active` is known), lastActiveTime, health and triggersActivity. KEDA keeps health and triggersActivity
    entries only for the object's current external metrics; entries that are gone are patched to null."""
    existing = existing or {}
    updates = dict(decision.conditions)
    if hpa_active is not None:
        updates["HPAActive"] = hpa_active
    patch: dict[str, Any] = {"conditions": merge_conditions(existing.get("conditions"), updates)}
    if decision.last_active_time is not None:
        patch["lastActiveTime"] = rfc3339(decision.last_active_time)
    names = set(external_metric_names) if external_metric_names else None
    health: dict[str, Any] = {
        name: {"numberOfFailures": h.number_of_failures, "status": h.status}
        for name, h in sorted(decision.health.items())
        if names is None or name in names
    }
    patch["health"] = _with_removals(health, existing.get("health"))
    if external_metric_names:
        patch["triggersActivity"] = triggers_activity(external_metric_names, active_metrics, existing)
    return patch


def triggers_activity(
    metric_names: Iterable[str], active_metrics: Iterable[str], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """KEDA's `triggersActivity` ({metric: {isActive}}) as a merge patch: metrics no longer there become null."""
    active = set(active_metrics)
    activity = {name: {"isActive": name in active} for name in metric_names}
    return _with_removals(activity, (existing or {}).get("triggersActivity"))


def _with_removals(wanted: dict[str, Any], existing: Any) -> dict[str, Any]:
    """`wanted`, plus a null for each key of `existing` it lacks (a merge patch deletes those)."""
    out: dict[str, Any] = dict(wanted)
    if isinstance(existing, Mapping):
        for key in existing:
            out.setdefault(str(key), None)
    return out


def patch_changes(patch: Mapping[str, Any], existing: Mapping[str, Any] | None) -> bool:
    """Whether applying merge patch `patch` to `existing` would change anything (skip the write if not)."""
    existing = existing or {}
    for key, value in patch.items():
        if value is None:
            if existing.get(key) is not None:
                return True
        elif isinstance(value, Mapping) and isinstance(existing.get(key), Mapping):
            if patch_changes(value, existing[key]):
                return True
        elif existing.get(key) != value:
            return True
    return False


def hpa_active_condition(hpa: Mapping[str, Any] | None) -> Condition | None:
    """KEDA's HPAActive condition mirrored from an HPA's ScalingActive condition, or None while the HPA has not
    reported one (KEDA then leaves HPAActive as it was)."""
    for cond in ((hpa or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") != "ScalingActive":
            continue
        if cond.get("status") == "True":
            return Condition("True", "HPAActive", "HPA is actively scaling")
        if cond.get("reason") == "ScalingDisabled":
            # The HPA idles while ebb holds the target at zero: healthy, and said so.
            return Condition("True", "ScalingDisabled", str(cond.get("message") or ""))
        reason = str(cond.get("reason") or "HPAMetricsUnavailable")
        return Condition("False", reason, f"HPA is not actively scaling: {cond.get('message') or ''}")
    return None


def error_status(existing: Mapping[str, Any] | None, reason: str, message: str) -> dict[str, Any]:
    """Ready=False with `reason` (e.g. ScaledObjectCheckFailed) and the error as the message; Active Unknown, as
    KEDA's reconcile sets it when the check fails (scaledobject_controller.go)."""
    conditions = (existing or {}).get("conditions")
    updates = {
        "Ready": Condition("False", reason, message),
        "Active": Condition("Unknown", "UnknownState", "ScaledObject check failed"),
    }
    return {"conditions": merge_conditions(conditions, updates)}


def not_ready_saying(status: Mapping[str, Any] | None, message: str) -> bool:
    """Whether `status` has Ready=False with `message` already (a problem retried with backoff is reported once)."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "False" and c.get("message") == message
        for c in (status or {}).get("conditions") or ()
        if isinstance(c, Mapping)
    )


def object_reference(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """An ObjectReference (involvedObject) for a manifest."""
    meta = manifest.get("metadata") or {}
    ref = {
        "apiVersion": manifest.get("apiVersion", ""),
        "kind": manifest.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
    }
    if meta.get("uid"):
        ref["uid"] = meta["uid"]
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


def event_manifest(
    involved: Mapping[str, Any], event: ScalingEvent, now: float, component: str = COMPONENT
) -> dict[str, Any]:
    """A core/v1 Event about `involved` (an ObjectReference) with KEDA's reason and type, from `component` (what
    `kubectl get events` shows as its source)."""
    stamp = rfc3339(now)
    name = str(involved.get("name", "object"))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": involved.get("namespace") or "default"},
        "involvedObject": dict(involved),
        "reason": event.reason,
        "message": event.message,
        "type": event.type,
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
    }
