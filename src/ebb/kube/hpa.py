"""The autoscaling/v2 HorizontalPodAutoscaler for a ScaledObject, shaped as KEDA builds it.

Follows kedacore/keda controllers/keda/hpa.go (`newHPAForScaledObject`, `getScaledObjectMetricSpecs`) and
pkg/scalers/scaler.go (`GetMetricTarget`, quantities with milli precision). Pure: manifests in, a dict out.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ebb import __version__
from ebb.errors import SpecError
from ebb.scalers.base import MetricSpec
from ebb.scaling.lifecycle import COMPOSITE_METRIC, pause_state
from ebb.spec.models import ScaledObject

#: The label the metrics API reads to find the ScaledObject an HPA asks for.
SCALED_OBJECT_LABEL = "scaledobject.keda.sh/name"
#: Labels of the ScaledObject that are not copied onto its HPA (comma-separated keys).
HPA_EXCLUDED_LABELS_ANNOTATION = "scaledobject.keda.sh/hpa-excluded-labels"
#: KEDA's value for app.kubernetes.io/managed-by; kept so selectors written for KEDA's HPAs still match.
MANAGED_BY = "keda-operator"
KEDA_API_VERSION = "keda.sh/v1alpha1"

_SUFFIXES = ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k"))


def quantity(value: float) -> str:
    """A resource.Quantity with milli precision in canonical DecimalSI form ("500m", "5", "2k").

    KEDA builds targets and values with NewMilliQuantity(int64(v * 1000)); NaN, infinities and negative
    values become 0 (GetMetricTarget / GenerateMetricInMili).
    """
    if not math.isfinite(value) or value < 0:
        return "0"
    milli = int(value * 1000)
    if milli % 1000:
        return f"{milli}m"
    whole = milli // 1000
    if whole == 0:
        return "0"
    for exponent, suffix in _SUFFIXES:
        if whole % 10**exponent == 0:
            return f"{whole // 10**exponent}{suffix}"
    return str(whole)


def trim(text: str, limit: int = 63) -> str:
    return text[:limit]


@dataclass(frozen=True)
class TargetKind:
    """The resolved scale target (KEDA's GroupVersionKindResource)."""

    group: str
    version: str
    kind: str
    resource: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def as_status(self) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "kind": self.kind, "resource": self.resource}


def metric_target(metric_type: str, target: float) -> dict[str, Any]:
    """GetMetricTarget: an AverageValue (the default) or Value target as a quantity; Utilization as a percent."""
    if metric_type == "Value":
        return {"type": "Value", "value": quantity(target)}
    if metric_type == "Utilization":
        return {"type": "Utilization", "averageUtilization": int(target)}
    return {"type": "AverageValue", "averageValue": quantity(target)}


def metric_entry(spec: MetricSpec, so_name: str) -> dict[str, Any]:
    """One `spec.metrics[]` item: External (with the ScaledObject selector), Resource or ContainerResource."""
    target = metric_target(spec.metric_type, spec.target)
    if spec.source == "Resource":
        resource = spec.resource_name or spec.name
        if spec.container_name:
            return {
                "type": "ContainerResource",
                "containerResource": {"name": resource, "container": spec.container_name, "target": target},
            }
        return {"type": "Resource", "resource": {"name": resource, "target": target}}
    return {
        "type": "External",
        "external": {
            "metric": {"name": spec.name, "selector": {"matchLabels": {SCALED_OBJECT_LABEL: trim(so_name)}}},
            "target": target,
        },
    }


def hpa_metric_specs(so: ScaledObject, specs: Sequence[MetricSpec]) -> list[MetricSpec]:
    """The metrics the HPA gets: each trigger's, or one composite-metric instead of every external one."""
    mods = so.spec.scaling_modifiers
    external = [s for s in specs if s.source != "Resource"]
    seen: set[str] = set()
    for s in external:
        if s.name in seen:
            raise SpecError(
                so.ref,
                "spec.triggers",
                f"metricName {s.name} defined multiple times in ScaledObject {so.name}; give the triggers distinct "
                "parameters (or names) so their metrics differ",
            )
        seen.add(s.name)
    if mods is not None and mods.target_value > 0:
        composite = MetricSpec(COMPOSITE_METRIC, mods.target_value, mods.metric_type)
        return [composite, *(s for s in specs if s.source == "Resource")]
    return list(specs)


def external_metric_names(so: ScaledObject, specs: Sequence[MetricSpec]) -> list[str]:
    return [s.name for s in hpa_metric_specs(so, specs) if s.source != "Resource"]


def resource_metric_names(specs: Sequence[MetricSpec]) -> list[str]:
    return [s.resource_name or s.name for s in specs if s.source == "Resource"]


def hpa_behavior(so: ScaledObject) -> dict[str, Any] | None:
    """advanced.horizontalPodAutoscalerConfig.behavior, with selectPolicy Disabled for paused-scale-in/out."""
    config = so.spec.advanced.horizontal_pod_autoscaler_config if so.spec.advanced else None
    behavior: dict[str, Any] | None = None
    if config is not None and config.behavior is not None:
        behavior = config.behavior.model_dump(by_alias=True, exclude_none=True, mode="json")
    pause = pause_state(so.metadata.annotations, so.ref)
    for paused, direction in ((pause.paused_scale_in, "scaleDown"), (pause.paused_scale_out, "scaleUp")):
        if paused:
            behavior = copy.deepcopy(behavior) if behavior is not None else {}
            behavior.setdefault(direction, {})["selectPolicy"] = "Disabled"
    return behavior


def hpa_labels(so: ScaledObject) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": trim(so.hpa_name),
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/part-of": trim(so.name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    excluded = {
        key.strip() for key in so.metadata.annotations.get(HPA_EXCLUDED_LABELS_ANNOTATION, "").split(",") if key
    }
    labels.update({k: v for k, v in so.metadata.labels.items() if k not in excluded})
    return labels


def owner_reference(kind: str, name: str, uid: str, api_version: str = KEDA_API_VERSION) -> dict[str, Any]:
    """A controller ownerReference: the owned object goes with its owner (garbage collection)."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_hpa(so: ScaledObject, specs: Sequence[MetricSpec], target: TargetKind, *, uid: str) -> dict[str, Any]:
    """The HPA manifest for `so`; `specs` are its triggers' metric specs in trigger order.

    Raises SpecError when two triggers produce the same external metric name (KEDA refuses that too).
    """
    metrics = [metric_entry(s, so.name) for s in hpa_metric_specs(so, specs)]
    # Sorted by type (stably) so that rebuilding the same object never looks like a change (keda#1531).
    metrics.sort(key=lambda m: m["type"])
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": target.api_version,
            "kind": target.kind,
            "name": so.spec.scale_target_ref.name,
        },
        "minReplicas": so.spec.min_replica_count if so.spec.min_replica_count > 0 else 1,
        "maxReplicas": so.spec.max_replica_count,
        "metrics": metrics,
    }
    behavior = hpa_behavior(so)
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": so.hpa_name,
            "namespace": so.metadata.namespace,
            "labels": hpa_labels(so),
            "annotations": dict(so.metadata.annotations),
            "ownerReferences": [owner_reference("ScaledObject", so.name, uid)],
        },
        "spec": spec,
    }


def _derivative(wanted: Any, found: Any) -> bool:
    """apimachinery's DeepDerivative: fields `wanted` leaves unset (defaults the API server fills) are ignored."""
    if isinstance(wanted, Mapping):
        return isinstance(found, Mapping) and all(_derivative(v, found.get(k)) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(found, list) and len(wanted) == len(found) and all(map(_derivative, wanted, found))
    return bool(wanted == found)


def hpa_needs_update(wanted: Mapping[str, Any], found: Mapping[str, Any]) -> bool:
    """True when the live HPA's spec or labels differ from what ebb would build (updateHPAIfNeeded)."""
    found_meta = found.get("metadata") or {}
    return not (
        _derivative(wanted["spec"], found.get("spec"))
        and _derivative(wanted["metadata"]["labels"], found_meta.get("labels") or {})
    )
