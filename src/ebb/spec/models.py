"""Pydantic models of KEDA's resources (keda.sh/v1alpha1), v1 Secret/ConfigMap and ebb's ProcessGroup.

Field names, nesting, enums and defaults follow KEDA's Go types (apis/keda/v1alpha1/*_types.go) and the
checks its CRD schema and admission webhook make. Python attributes are snake_case; the aliases are the
camelCase keys of the manifests, so `model_dump(by_alias=True)` gives KEDA's shape back with defaults filled.

Cross-field checks raise `FieldIssue` with a path relative to the model that raised it; the loader turns
those (and pydantic's own errors) into `SpecError`s that carry the full field path.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ebb.errors import SpecError
from ebb.scalers import unknown_parameters, unknown_type_message
from ebb.scaling import lifecycle
from ebb.spec import drain
from ebb.units import parse_quantity

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
EBB_API_VERSION: Final = "ebb.dev/v1alpha1"
EVENTING_API_VERSION: Final = "eventing.keda.sh/v1alpha1"
CORE_API_VERSION: Final = "v1"

#: Triggers served by metrics-server as HPA Resource metrics (no KEDA scaler value, no fallback).
RESOURCE_TRIGGER_TYPES = frozenset({"cpu", "memory"})
#: KEDA's ValidateTriggers refuses `useCachedMetrics` on these.
NO_CACHED_METRICS_TRIGGER_TYPES = frozenset({"cpu", "memory", "cron"})
#: Names end up as label values (`scaledobject.keda.sh/name`), which Kubernetes caps at 63 characters.
MAX_LABEL_VALUE_LENGTH = 63

PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
PAUSED_SCALE_IN_ANNOTATION = "autoscaling.keda.sh/paused-scale-in"
PAUSED_SCALE_OUT_ANNOTATION = "autoscaling.keda.sh/paused-scale-out"
FORCE_ACTIVATION_ANNOTATION = "autoscaling.keda.sh/force-activation"
TRANSFER_HPA_OWNERSHIP_ANNOTATION = "scaledobject.keda.sh/transfer-hpa-ownership"
HPA_EXCLUDED_LABELS_ANNOTATION = "scaledobject.keda.sh/hpa-excluded-labels"
JOB_EXCLUDED_LABELS_ANNOTATION = "scaledjob.keda.sh/job-excluded-labels"

MetricType = Literal["AverageValue", "Value", "Utilization"]
FallbackBehavior = Literal[
    "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower", "scalingModifiers"
]
PathElement = str | int


class FieldIssue(ValueError):
    """One or more problems found by a validator, each with a path relative to the model that raised it."""

    def __init__(self, *issues: tuple[tuple[PathElement, ...], str]) -> None:
        self.issues: tuple[tuple[tuple[PathElement, ...], str], ...] = issues
        super().__init__("; ".join(message for _, message in issues))

    @classmethod
    def at(cls, path: Sequence[PathElement], message: str) -> FieldIssue:
        return cls((tuple(path), message))


def describe(value: Any, *, echo: bool = True) -> str:
    """How an offending value reads in an error: scalars quoted (when `echo`), containers by their kind."""
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    if not echo:
        return {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), "a value")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return repr(text)


def scalar_text(value: Any) -> Any:
    """The string form of a YAML scalar; other values pass through for pydantic to judge."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _str_map(value: Any) -> Any:
    # KEDA's trigger metadata, labels and annotations are map[string]string. Kubernetes wants the values
    # quoted; local users often write `listLength: 5`, so scalars become their string form.
    if not isinstance(value, dict):
        return value
    out: dict[str, str] = {}
    issues: list[tuple[tuple[PathElement, ...], str]] = []
    for raw_key, item in value.items():
        key = str(scalar_text(raw_key))
        if item is None:
            out[key] = ""
        elif isinstance(item, str | bool | int | float):
            out[key] = scalar_text(item)
        else:
            issues.append(((key,), f"expected a string, got {describe(item)}"))
    if issues:
        raise FieldIssue(*issues)
    return out


StrMap = Annotated[dict[str, str], BeforeValidator(_str_map)]
#: A string field that also takes a YAML number or boolean (written in its string form).
LenientStr = Annotated[str, BeforeValidator(scalar_text)]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{describe(value)} is not a valid name: use lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit (at most 253 characters)"
        )
    return value


def _check_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{describe(value)} is not a valid namespace: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (at most 63 characters)"
        )
    return value


def parse_go_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool, which KEDA uses for boolean annotations; None when it does not parse."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_int32(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 10, 32); None when it does not parse."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    return number if -(2**31) <= number < 2**31 else None


def parse_float(text: str) -> float | None:
    """Go's strconv.ParseFloat(text, 64) for the forms people write; None when it does not parse."""
    if text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _quantity(value: Any) -> Any:
    # HPA `tolerance` is a resource.Quantity: a YAML number or a string such as "0.1" or "100m".
    if isinstance(value, bool) or not isinstance(value, str):
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        return parse_quantity(value.strip())
    except ValueError:
        raise ValueError(f"expected a quantity such as 0.1 or 100m, got {describe(value)}") from None


# --- Bases ------------------------------------------------------------------------------------------


class KubeModel(BaseModel):
    """Base of every spec model: camelCase aliases, strict types, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
    )


class _Permissive(KubeModel):
    """For Kubernetes types ebb reads only a few fields of: other fields are kept as they are."""

    model_config = ConfigDict(extra="allow")


class ObjectMetaBase(KubeModel):
    """Kubernetes ObjectMeta: the fields ebb reads are typed, any other field is kept."""

    model_config = ConfigDict(extra="allow")

    name: str
    labels: StrMap = Field(default_factory=dict)
    annotations: StrMap = Field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: datetime | None = Field(default=None, strict=False)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_subdomain(value)


class ObjectMeta(ObjectMetaBase):
    """Metadata of a namespaced object."""

    namespace: str = "default"

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        return _check_label(value)


class ClusterObjectMeta(ObjectMetaBase):
    """Metadata of a cluster-scoped object: a namespace, if written, is ignored as Kubernetes does."""

    namespace: str | None = None


class KubeObject(KubeModel):
    """A whole manifest: apiVersion, kind, metadata. `status`, if present, is accepted and dropped."""

    api_version: str
    kind: str
    metadata: ObjectMetaBase

    #: Cluster-scoped kinds are keyed by name only.
    cluster_scoped: ClassVar[bool] = False

    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _drop_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" in data:
            return {key: value for key, value in data.items() if key != "status"}
        return data

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        """The namespace, or None for a cluster-scoped object."""
        if self.cluster_scoped:
            return None
        namespace = getattr(self.metadata, "namespace", None)
        return namespace if isinstance(namespace, str) else None

    @property
    def ref(self) -> str:
        """How errors and logs name this object: "ScaledObject default/worker"."""
        if self.namespace is None:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace or "", name): unique within a ResourceSet."""
        return (self.kind, self.namespace or "", self.name)

    @property
    def source(self) -> str | None:
        """Where the loader found this object ("workers.yaml:12"), if it came from a file."""
        return self._source

    def set_source(self, source: str | None) -> None:
        self._source = source

    def to_manifest(self) -> dict[str, Any]:
        """The manifest as Kubernetes stores it: camelCase keys, defaults filled, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- Triggers (shared by ScaledObject and ScaledJob) -------------------------------------------------


class AuthenticationRef(KubeModel):
    name: str = Field(min_length=1)
    kind: Literal["TriggerAuthentication", "ClusterTriggerAuthentication"] = "TriggerAuthentication"


class ScaleTrigger(KubeModel):
    """One entry of `spec.triggers` (KEDA's ScaleTriggers).

    `metric_type` is filled with "AverageValue" except on cpu/memory triggers, which must say Utilization or
    AverageValue (their old `metadata.type` was removed in KEDA v2.18, and KEDA refuses it).
    """

    type: str = Field(min_length=1)
    name: str | None = None
    use_cached_metrics: bool = False
    metadata: StrMap
    authentication_ref: AuthenticationRef | None = None
    metric_type: MetricType | None = None

    @property
    def is_resource(self) -> bool:
        """cpu and memory: HPA Resource metrics, always active, not counted for fallback."""
        return self.type in RESOURCE_TRIGGER_TYPES

    def warnings(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """Metadata keys this trigger type does not read. KEDA ignores them (it can log them with
        KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS), so they are warnings: the parameter meant keeps its default."""
        found: list[tuple[tuple[PathElement, ...], str]] = []
        for key, guess, auth_only in unknown_parameters(self.type, self.metadata):
            if auth_only:
                message = (
                    f"{self.type} triggers read {key!r} from a TriggerAuthentication (authenticationRef) only: "
                    "in metadata it is ignored, as KEDA ignores it"
                )
            else:
                hint = f"; did you mean {guess!r}?" if guess else ""
                message = f"{self.type} triggers have no parameter {key!r}: it is ignored, as KEDA ignores it{hint}"
            found.append((("metadata", key), message))
        return found

    @model_validator(mode="after")
    def _check(self) -> ScaleTrigger:
        if self.name == "":
            self.name = None
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        unknown = unknown_type_message(self.type)
        if unknown is not None:
            issues.append((("type",), unknown))
        if self.use_cached_metrics and self.type in NO_CACHED_METRICS_TRIGGER_TYPES:
            issues.append((("useCachedMetrics",), f"not supported for {self.type!r} triggers"))
        if self.is_resource:
            if self.metric_type == "Value":
                issues.append((("metricType",), f"{self.type} triggers take Utilization or AverageValue, not Value"))
            elif self.metric_type is None:
                issues.append((("metricType",), f"required for {self.type} triggers: Utilization or AverageValue"))
            if self.metadata.get("type", "").strip():
                issues.append(
                    (
                        ("metadata", "type"),
                        "removed in KEDA v2.18, which refuses it: set the trigger's metricType "
                        "(Utilization or AverageValue) instead",
                    )
                )
        elif self.metric_type == "Utilization":
            issues.append((("metricType",), "Utilization is only supported by cpu and memory triggers"))
        elif self.metric_type is None:
            self.metric_type = "AverageValue"
        if issues:
            raise FieldIssue(*issues)
        return self


def _trigger_warnings(triggers: Sequence[ScaleTrigger]) -> list[tuple[tuple[PathElement, ...], str]]:
    return [
        (("spec", "triggers", index, *loc), message)
        for index, trigger in enumerate(triggers)
        for loc, message in trigger.warnings()
    ]


def _check_triggers(triggers: Sequence[ScaleTrigger]) -> list[tuple[tuple[PathElement, ...], str]]:
    # KEDA's ValidateTriggers: names must be unique within one object.
    issues: list[tuple[tuple[PathElement, ...], str]] = []
    seen: dict[str, int] = {}
    for index, trigger in enumerate(triggers):
        if trigger.name is None:
            continue
        if trigger.name in seen:
            issues.append(
                (
                    ("triggers", index, "name"),
                    f"trigger name {trigger.name!r} is already used by triggers[{seen[trigger.name]}]; "
                    "names must be unique",
                )
            )
        else:
            seen[trigger.name] = index
    return issues


# --- ScaledObject ------------------------------------------------------------------------------------


class ScaleTarget(KubeModel):
    """`spec.scaleTargetRef`. A ProcessGroup is named like a Deployment: `kind: ProcessGroup`."""

    name: str = Field(min_length=1)
    api_version: str = "apps/v1"
    kind: str = "Deployment"
    env_source_container_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _process_group_api_version(cls, data: Any) -> Any:
        # KEDA would default apiVersion to apps/v1, where no ProcessGroup exists; ebb knows where it lives.
        if (
            isinstance(data, dict)
            and data.get("kind") == "ProcessGroup"
            and not data.get("apiVersion")
            and not data.get("api_version")
        ):
            return {**data, "apiVersion": EBB_API_VERSION}
        return data

    @model_validator(mode="after")
    def _check(self) -> ScaleTarget:
        if self.kind == "ProcessGroup" and self.api_version != EBB_API_VERSION:
            raise FieldIssue.at(("apiVersion",), f"kind ProcessGroup belongs to apiVersion {EBB_API_VERSION}")
        return self

    @property
    def is_process_group(self) -> bool:
        return self.kind == "ProcessGroup" and self.api_version == EBB_API_VERSION


class Fallback(KubeModel):
    failure_threshold: int = Field(ge=0)
    replicas: int = Field(ge=0)
    behavior: FallbackBehavior = "static"


class HPAScalingPolicy(KubeModel):
    """autoscaling/v2 HPAScalingPolicy, with the API server's validation."""

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(ge=1, le=1800)


class HPAScalingRules(KubeModel):
    """autoscaling/v2 HPAScalingRules. Unset fields take the Kubernetes default for their direction."""

    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = Field(default=None, min_length=1)
    tolerance: Annotated[float | None, BeforeValidator(_quantity)] = Field(default=None, ge=0)


class HorizontalPodAutoscalerBehavior(KubeModel):
    scale_up: HPAScalingRules | None = None
    scale_down: HPAScalingRules | None = None


class HorizontalPodAutoscalerConfig(KubeModel):
    behavior: HorizontalPodAutoscalerBehavior | None = None
    name: str | None = None


class ScalingModifiers(KubeModel):
    """`advanced.scalingModifiers`: a formula over named triggers, one composite metric."""

    formula: str | None = None
    target: LenientStr | None = None
    activation_target: LenientStr | None = None
    metric_type: Literal["AverageValue", "Value"] = "AverageValue"

    @property
    def is_empty(self) -> bool:
        return not (self.formula or self.target or self.activation_target) and (
            "metric_type" not in self.model_fields_set
        )

    @property
    def target_value(self) -> float:
        """The target as a number (validated when the object loaded)."""
        return float(self.target or "0")

    @property
    def activation_target_value(self) -> float:
        return float(self.activation_target) if self.activation_target else 0.0


class AdvancedConfig(KubeModel):
    horizontal_pod_autoscaler_config: HorizontalPodAutoscalerConfig | None = None
    restore_to_original_replica_count: bool = False
    scaling_modifiers: ScalingModifiers | None = None

    @model_validator(mode="after")
    def _drop_empty_modifiers(self) -> AdvancedConfig:
        # KEDA treats an all-empty scalingModifiers block as absent (IsUsingModifiers).
        if self.scaling_modifiers is not None and self.scaling_modifiers.is_empty:
            self.scaling_modifiers = None
        return self


class ScaledObjectSpec(KubeModel):
    scale_target_ref: ScaleTarget
    polling_interval: int = Field(default=30, ge=1)
    initial_cooldown_period: int = Field(default=0, ge=0)
    cooldown_period: int = Field(default=300, ge=0)
    idle_replica_count: int | None = Field(default=None, ge=0)
    min_replica_count: int = Field(default=0, ge=0)
    max_replica_count: int = Field(default=100, ge=1)
    advanced: AdvancedConfig | None = None
    triggers: list[ScaleTrigger] = Field(min_length=1)
    fallback: Fallback | None = None

    @property
    def scaling_modifiers(self) -> ScalingModifiers | None:
        """The scalingModifiers block when it is in use (KEDA's IsUsingModifiers), else None."""
        if self.advanced is None or self.advanced.scaling_modifiers is None:
            return None
        return None if self.advanced.scaling_modifiers.is_empty else self.advanced.scaling_modifiers

    @property
    def behavior(self) -> HorizontalPodAutoscalerBehavior | None:
        if self.advanced is None or self.advanced.horizontal_pod_autoscaler_config is None:
            return None
        return self.advanced.horizontal_pod_autoscaler_config.behavior

    @model_validator(mode="after")
    def _check(self) -> ScaledObjectSpec:
        issues = _check_triggers(self.triggers)
        issues += self._check_replicas()
        issues += self._check_modifiers()
        issues += self._check_fallback()
        if issues:
            raise FieldIssue(*issues)
        return self

    def _check_replicas(self) -> list[tuple[tuple[PathElement, ...], str]]:
        if self.min_replica_count > self.max_replica_count:
            return [
                (
                    ("minReplicaCount",),
                    f"minReplicaCount ({self.min_replica_count}) must be less than or equal to "
                    f"maxReplicaCount ({self.max_replica_count})",
                )
            ]
        if self.idle_replica_count is None:
            return []
        # KEDA's CheckReplicaCountBoundsAreValid compares against GetHPAMinReplicas(), which is at least 1
        # once minReplicaCount is written, and 0 when it is not: `minReplicaCount: 0` + `idleReplicaCount: 0`
        # is accepted, an idleReplicaCount without minReplicaCount is not.
        explicit_min = "min_replica_count" in self.model_fields_set
        bound = max(self.min_replica_count, 1) if explicit_min else 0
        if self.idle_replica_count >= bound:
            shown = self.min_replica_count if explicit_min else "not set"
            return [
                (
                    ("idleReplicaCount",),
                    f"idleReplicaCount ({self.idle_replica_count}) must be less than minReplicaCount ({shown})",
                )
            ]
        return []

    def _check_modifiers(self) -> list[tuple[tuple[PathElement, ...], str]]:
        modifiers = self.scaling_modifiers
        if modifiers is None:
            return []
        where: tuple[PathElement, ...] = ("advanced", "scalingModifiers")
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        if not modifiers.formula:
            issues.append(((*where, "formula"), "required when scalingModifiers is used"))
        if not modifiers.target:
            issues.append(((*where, "target"), "required when scalingModifiers is used"))
        else:
            target = parse_float(modifiers.target)
            if target is None or not math.isfinite(target) or target <= 0:
                got = describe(modifiers.target)
                issues.append(((*where, "target"), f"expected a number greater than 0, got {got}"))
        if modifiers.activation_target:
            activation = parse_float(modifiers.activation_target)
            if activation is None or not math.isfinite(activation):
                issues.append(
                    (
                        (*where, "activationTarget"),
                        f"expected a number, got {describe(modifiers.activation_target)}",
                    )
                )
        return issues

    def _check_fallback(self) -> list[tuple[tuple[PathElement, ...], str]]:
        if self.fallback is None:
            return []
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        modifiers = self.scaling_modifiers
        if modifiers is None and all(trigger.is_resource for trigger in self.triggers):
            issues.append((("fallback",), "fallback needs at least one trigger that is not cpu or memory"))
        if self.fallback.behavior == "scalingModifiers" and (modifiers is None or not modifiers.formula):
            issues.append(
                (
                    ("fallback", "behavior"),
                    "behavior scalingModifiers requires spec.advanced.scalingModifiers.formula",
                )
            )
        return issues


class ScaledObject(KubeObject):
    api_version: Literal["keda.sh/v1alpha1"] = KEDA_API_VERSION
    kind: Literal["ScaledObject"] = "ScaledObject"
    metadata: ObjectMeta
    spec: ScaledObjectSpec

    @property
    def cluster_bound(self) -> bool:
        """Meant for Kubernetes: the target is not a local ProcessGroup."""
        return not self.spec.scale_target_ref.is_process_group

    @property
    def hpa_name(self) -> str:
        """The HPA KEDA would create: `advanced.horizontalPodAutoscalerConfig.name` or keda-hpa-<name>."""
        config = self.spec.advanced.horizontal_pod_autoscaler_config if self.spec.advanced else None
        if config is not None and config.name:
            return config.name
        return f"keda-hpa-{self.metadata.name}"

    def warnings(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """What KEDA's webhook warns about (the object is valid): settings that have no effect."""
        spec = self.spec
        found: list[tuple[tuple[PathElement, ...], str]] = []
        idle_mode = spec.idle_replica_count is not None
        if spec.min_replica_count > 0 and not idle_mode:
            cached = any(trigger.use_cached_metrics for trigger in spec.triggers)
            if "polling_interval" in spec.model_fields_set and not cached:
                found.append(
                    (
                        ("spec", "pollingInterval"),
                        "has no effect: it only matters when minReplicaCount is 0, idleReplicaCount is set "
                        "or a trigger uses useCachedMetrics",
                    )
                )
            if "cooldown_period" in spec.model_fields_set:
                found.append(
                    (
                        ("spec", "cooldownPeriod"),
                        "has no effect: it only matters when minReplicaCount is 0 or idleReplicaCount is set",
                    )
                )
        target = spec.scale_target_ref
        resources = sorted({t.type for t in spec.triggers if t.is_resource})
        if resources and (target.api_version, target.kind) in (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")):
            found.append(
                (
                    ("spec", "triggers"),
                    f"KEDA's admission webhook refuses this ScaledObject unless every container of {target.kind} "
                    f"{target.name!r} requests {' and '.join(resources)} (or a LimitRange gives a default): "
                    "that needs the cluster, so ebb's webhook checks it there",
                )
            )
        if spec.min_replica_count == 0 and all(trigger.is_resource for trigger in spec.triggers):
            found.append(
                (
                    ("spec", "minReplicaCount"),
                    "cpu and memory triggers are always active, so this object never scales to zero",
                )
            )
        return found + _trigger_warnings(spec.triggers)

    @model_validator(mode="after")
    def _check(self) -> ScaledObject:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        name = self.metadata.name
        if len(name) > MAX_LABEL_VALUE_LENGTH:
            issues.append(
                (
                    ("metadata", "name"),
                    f"is {len(name)} characters long; at most {MAX_LABEL_VALUE_LENGTH} "
                    "(it becomes the scaledobject.keda.sh/name label value)",
                )
            )
        elif len(self.hpa_name) > MAX_LABEL_VALUE_LENGTH:
            custom = self.hpa_name != f"keda-hpa-{name}"
            path: tuple[PathElement, ...] = ("metadata", "name")
            if custom:
                path = ("spec", "advanced", "horizontalPodAutoscalerConfig", "name")
            issues.append(
                (
                    path,
                    f"the HPA name {self.hpa_name!r} is {len(self.hpa_name)} characters long; at most "
                    f"{MAX_LABEL_VALUE_LENGTH}: shorten the name or set "
                    "spec.advanced.horizontalPodAutoscalerConfig.name",
                )
            )
        paused_replicas = self.metadata.annotations.get(PAUSED_REPLICAS_ANNOTATION)
        if paused_replicas is not None and parse_int32(paused_replicas) is None:
            issues.append(
                (
                    ("metadata", "annotations", PAUSED_REPLICAS_ANNOTATION),
                    f"expected an integer, got {describe(paused_replicas)}",
                )
            )
        annotations = self.metadata.annotations
        for check in (lifecycle.cooldown_from, drain.busy_probe):
            try:
                check(annotations)
            except SpecError as exc:  # the annotation's key is the last part of the field path
                key = exc.field.partition("[")[2].rstrip("]")
                issues.append((("metadata", "annotations", key), exc.message))
        if issues:
            raise FieldIssue(*issues)
        return self


def kubernetes_string_problems(data: Any) -> list[tuple[tuple[PathElement, ...], str]]:
    """Values of string maps (trigger metadata, labels, annotations) written as YAML numbers or booleans.

    ebb reads `listLength: 5` as "5" for local objects; Kubernetes' schema refuses it (map[string]string), so
    for a manifest meant for a cluster it is an error, as `kubectl apply` would make it.
    """
    if not isinstance(data, dict):
        return []
    found: list[tuple[tuple[PathElement, ...], str]] = []

    def check(values: Any, path: tuple[PathElement, ...]) -> None:
        if not isinstance(values, dict):
            return
        for key, value in values.items():
            if isinstance(value, bool | int | float):
                shown = scalar_text(value)
                found.append(
                    (
                        (*path, str(key)),
                        f"expected a string, got {describe(value, echo=False).removeprefix('a ').removeprefix('an ')}"
                        f' {shown}: Kubernetes refuses it here; quote it ("{shown}")',
                    )
                )

    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        check(metadata.get("labels"), ("metadata", "labels"))
        check(metadata.get("annotations"), ("metadata", "annotations"))
    spec = data.get("spec")
    triggers = spec.get("triggers") if isinstance(spec, dict) else None
    for index, trigger in enumerate(triggers if isinstance(triggers, list) else []):
        if isinstance(trigger, dict):
            check(trigger.get("metadata"), ("spec", "triggers", index, "metadata"))
    return found


# --- Environment variables (ProcessGroup and job containers) ------------------------------------------


class KeySelector(KubeModel):
    """secretKeyRef / configMapKeyRef: one key of a Secret or ConfigMap in the object's namespace."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)
    optional: bool = False


class EnvVarSource(KubeModel):
    """`valueFrom`. Only secretKeyRef and configMapKeyRef resolve locally; the others load, then fail to."""

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: dict[str, Any] | None = None
    resource_field_ref: dict[str, Any] | None = None
    file_key_ref: dict[str, Any] | None = None

    @property
    def unsupported_source(self) -> str | None:
        """The alias of a source ebb cannot resolve locally (fieldRef ...), if that is what is set."""
        for attr, alias in (
            ("field_ref", "fieldRef"),
            ("resource_field_ref", "resourceFieldRef"),
            ("file_key_ref", "fileKeyRef"),
        ):
            if getattr(self, attr) is not None:
                return alias
        return None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        count = sum(
            value is not None
            for value in (
                self.secret_key_ref,
                self.config_map_key_ref,
                self.field_ref,
                self.resource_field_ref,
                self.file_key_ref,
            )
        )
        if count != 1:
            raise FieldIssue.at((), "set exactly one of secretKeyRef or configMapKeyRef")
        return self


class EnvVar(KubeModel):
    name: str = Field(min_length=1)
    value: LenientStr | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise FieldIssue.at(("valueFrom",), "cannot be combined with a non-empty value")
        return self


class LocalObjectRef(KubeModel):
    name: str = Field(min_length=1)
    optional: bool = False


class EnvFromSource(KubeModel):
    """`envFrom`: every key of a ConfigMap or Secret becomes a variable (with an optional prefix)."""

    prefix: str | None = None
    config_map_ref: LocalObjectRef | None = None
    secret_ref: LocalObjectRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            raise FieldIssue.at((), "set exactly one of configMapRef or secretRef")
        return self


# --- ScaledJob ---------------------------------------------------------------------------------------


class Container(_Permissive):
    """A container of the job's pod template; the fields ebb runs locally are typed, others kept."""

    name: str | None = None
    image: str | None = None
    command: list[LenientStr] = Field(default_factory=list)
    args: list[LenientStr] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    working_dir: str | None = None


def _default_restart_policy(value: Any) -> Any:
    # KEDA sets OnFailure when the template leaves restartPolicy empty (a Job may not use Always).
    return "OnFailure" if value in (None, "") else value


class PodSpec(_Permissive):
    containers: list[Container] = Field(min_length=1)
    restart_policy: Annotated[Literal["OnFailure", "Never"], BeforeValidator(_default_restart_policy)] = "OnFailure"
    termination_grace_period_seconds: int = Field(default=30, ge=0)


class PodTemplateSpec(_Permissive):
    metadata: dict[str, Any] | None = None
    spec: PodSpec


class JobTargetRef(_Permissive):
    """`spec.jobTargetRef`: a batch/v1 JobSpec, kept whole; the fields a local run needs are typed."""

    template: PodTemplateSpec
    parallelism: int | None = Field(default=None, ge=0)
    completions: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, gt=0)
    backoff_limit: int | None = Field(default=None, ge=0)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)


class Rollout(KubeModel):
    strategy: Literal["gradual", "immediate"] | None = None
    propagation_policy: Literal["foreground", "background"] = "background"


class ScalingStrategy(KubeModel):
    strategy: Literal["default", "custom", "accurate", "eager"] = "default"
    custom_scaling_queue_length_deduction: int | None = None
    custom_scaling_running_job_percentage: LenientStr | None = None
    pending_pod_conditions: list[str] = Field(default_factory=list)
    multiple_scalers_calculation: Literal["max", "min", "avg", "sum"] = "max"


class ScaledJobSpec(KubeModel):
    job_target_ref: JobTargetRef
    polling_interval: int = Field(default=30, ge=1)
    successful_jobs_history_limit: int = Field(default=100, ge=0)
    failed_jobs_history_limit: int = Field(default=100, ge=0)
    rollout_strategy: Literal["gradual", "immediate"] | None = None
    rollout: Rollout = Field(default_factory=Rollout)
    env_source_container_name: str | None = None
    min_replica_count: int = Field(default=0, ge=0)
    max_replica_count: int = Field(default=100, ge=1)
    scaling_strategy: ScalingStrategy = Field(default_factory=ScalingStrategy)
    triggers: list[ScaleTrigger] = Field(min_length=1)

    @property
    def job_container(self) -> Container:
        """The first container of the job template: the command a local run starts as one job."""
        return self.job_target_ref.template.spec.containers[0]

    @property
    def env_source_container(self) -> Container | None:
        """The container whose env resolves `*FromEnv` parameters (envSourceContainerName, else the first)."""
        containers = self.job_target_ref.template.spec.containers
        if not self.env_source_container_name:
            return containers[0]
        return next((c for c in containers if c.name == self.env_source_container_name), None)

    @property
    def effective_rollout_strategy(self) -> Literal["gradual", "immediate"]:
        """The deprecated `rolloutStrategy` wins when set, as in KEDA; empty means immediate."""
        return self.rollout_strategy or self.rollout.strategy or "immediate"

    @model_validator(mode="after")
    def _check(self) -> ScaledJobSpec:
        issues = _check_triggers(self.triggers)
        if self.env_source_container_name and self.env_source_container is None:
            issues.append(
                (
                    ("envSourceContainerName",),
                    f"no container named {self.env_source_container_name!r} in jobTargetRef.template",
                )
            )
        if issues:
            raise FieldIssue(*issues)
        return self


class ScaledJob(KubeObject):
    api_version: Literal["keda.sh/v1alpha1"] = KEDA_API_VERSION
    kind: Literal["ScaledJob"] = "ScaledJob"
    metadata: ObjectMeta
    spec: ScaledJobSpec

    @property
    def cluster_bound(self) -> bool:
        """Meant for Kubernetes: the job container names an image."""
        return bool(self.spec.job_container.image)

    def warnings(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """What is valid but probably not meant: trigger parameters no scaler reads."""
        return _trigger_warnings(self.spec.triggers)


# --- TriggerAuthentication / ClusterTriggerAuthentication --------------------------------------------


class AuthPodIdentity(KubeModel):
    provider: Literal["azure-workload", "gcp", "aws", "aws-eks", "none"]
    identity_id: str | None = None
    identity_tenant_id: str | None = None
    identity_authority_host: str | None = None
    role_arn: str | None = None
    external_id: str | None = Field(default=None, alias="externalID")
    identity_owner: Literal["keda", "workload"] | None = None

    @model_validator(mode="after")
    def _check(self) -> AuthPodIdentity:
        # The TriggerAuthentication webhook's checks.
        if self.provider == "azure-workload":
            if self.identity_id == "":
                raise FieldIssue.at(("identityId",), "must not be empty when set")
            if self.identity_authority_host and not self.identity_tenant_id:
                raise FieldIssue.at(("identityTenantId",), "required when identityAuthorityHost is set")
            if self.identity_tenant_id == "":
                raise FieldIssue.at(("identityTenantId",), "must not be empty when set")
        if self.provider == "aws":
            if self.role_arn and self.identity_owner == "workload":
                raise FieldIssue.at(("roleArn",), "cannot be set unless KEDA is the identityOwner")
            if self.external_id and not self.role_arn:
                raise FieldIssue.at(("externalID",), "requires roleArn")
        return self


class AuthTargetRef(KubeModel):
    """secretTargetRef / configMapTargetRef entry: trigger parameter <- key of a Secret or ConfigMap."""

    parameter: str = Field(min_length=1)
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class AuthEnvironment(KubeModel):
    """env entry: trigger parameter <- environment variable of the scale target."""

    parameter: str = Field(min_length=1)
    name: str = Field(min_length=1)
    container_name: str | None = None


class SecretKeyRef(KubeModel):
    name: str
    key: str


class ValueFromSecret(KubeModel):
    secret_key_ref: SecretKeyRef


class SecretValue(KubeModel):
    """`{valueFrom: {secretKeyRef: {name, key}}}`, as KEDA's vault credentials and oauth2 use it."""

    value_from: ValueFromSecret


class VaultCredential(KubeModel):
    token: str | None = None
    service_account: str | None = None
    service_account_name: str | None = None


class VaultPkiData(KubeModel):
    common_name: str | None = None
    alt_names: str | None = None
    ip_sans: str | None = None
    uri_sans: str | None = None
    other_sans: str | None = None
    ttl: str | None = None
    format: str | None = None


class VaultSecret(KubeModel):
    parameter: str
    path: str
    key: str
    type: Literal["", "secretV2", "secret", "pki"] | None = None
    pki_data: VaultPkiData | None = None


class HashiCorpVault(KubeModel):
    address: str
    authentication: Literal["token", "kubernetes"]
    secrets: list[VaultSecret] = Field(min_length=1)
    namespace: str | None = None
    credential: VaultCredential | None = None
    role: str | None = None
    mount: str | None = None


class AzureKeyVaultCredentials(KubeModel):
    client_id: str
    tenant_id: str
    client_secret: SecretValue


class AzureKeyVaultSecret(KubeModel):
    parameter: str
    name: str
    version: str | None = None


class AzureKeyVaultCloudInfo(KubeModel):
    type: str
    key_vault_resource_url: str | None = Field(default=None, alias="keyVaultResourceURL")
    active_directory_endpoint: str | None = None


class AzureKeyVault(KubeModel):
    vault_uri: str
    secrets: list[AzureKeyVaultSecret] = Field(min_length=1)
    credentials: AzureKeyVaultCredentials | None = None
    pod_identity: AuthPodIdentity | None = None
    cloud: AzureKeyVaultCloudInfo | None = None


class GCPCredentials(KubeModel):
    client_secret: SecretValue


class GCPSecretManagerSecret(KubeModel):
    parameter: str
    id: str
    version: str | None = None


class GCPSecretManager(KubeModel):
    secrets: list[GCPSecretManagerSecret] = Field(min_length=1)
    credentials: GCPCredentials | None = None
    pod_identity: AuthPodIdentity | None = None


class AwsSecretManagerCredentials(KubeModel):
    access_key: SecretValue
    access_secret_key: SecretValue
    access_token: SecretValue | None = None


class AwsSecretManagerSecret(KubeModel):
    parameter: str
    name: str
    version_id: str | None = None
    version_stage: str | None = None
    secret_key: str | None = None


class AwsSecretManager(KubeModel):
    secrets: list[AwsSecretManagerSecret] = Field(min_length=1)
    credentials: AwsSecretManagerCredentials | None = None
    pod_identity: AuthPodIdentity | None = None
    region: str | None = None


class BoundServiceAccountToken(KubeModel):
    parameter: str
    service_account_name: str


class OAuth2(KubeModel):
    #: Required by KEDA's CRD schema (no default there), and clientCredentials is the only grant it accepts.
    type: Literal["clientCredentials"]
    client_id: str = Field(min_length=1)
    client_secret: SecretValue | None = None
    token_url: str = Field(min_length=1)
    scopes: list[str] = Field(default_factory=list)
    token_url_params: StrMap = Field(default_factory=dict)

    @field_validator("token_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http or https URL, got {describe(value)}")
        return value


class TriggerAuthenticationSpec(KubeModel):
    pod_identity: AuthPodIdentity | None = None
    secret_target_ref: list[AuthTargetRef] = Field(default_factory=list)
    config_map_target_ref: list[AuthTargetRef] = Field(default_factory=list)
    env: list[AuthEnvironment] = Field(default_factory=list)
    #: A file holding the parameters as a JSON map (KEDA code; its docs show a list of {parameter, path}).
    file_path: str | None = None
    hashi_corp_vault: HashiCorpVault | None = None
    azure_key_vault: AzureKeyVault | None = None
    gcp_secret_manager: GCPSecretManager | None = None
    aws_secret_manager: AwsSecretManager | None = None
    bound_service_account_token: list[BoundServiceAccountToken] = Field(default_factory=list)
    oauth2: OAuth2 | None = None


class TriggerAuthentication(KubeObject):
    api_version: Literal["keda.sh/v1alpha1"] = KEDA_API_VERSION
    kind: Literal["TriggerAuthentication"] = "TriggerAuthentication"
    metadata: ObjectMeta
    spec: TriggerAuthenticationSpec


class ClusterTriggerAuthentication(KubeObject):
    api_version: Literal["keda.sh/v1alpha1"] = KEDA_API_VERSION
    kind: Literal["ClusterTriggerAuthentication"] = "ClusterTriggerAuthentication"
    metadata: ClusterObjectMeta
    spec: TriggerAuthenticationSpec

    cluster_scoped: ClassVar[bool] = True


# --- v1 Secret and ConfigMap -------------------------------------------------------------------------


def _decode_base64(key: str, encoded: str) -> str:
    # Go's JSON decoding of []byte skips line breaks, so wrapped base64 (as `base64` prints it) is fine.
    compact = re.sub(r"[\r\n]", "", encoded)
    try:
        return base64.b64decode(compact, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise FieldIssue.at((key,), "expected base64-encoded UTF-8 text (use stringData for plain values)") from None


class Secret(KubeObject):
    """A v1 Secret, so that local runs can hold credentials next to the objects that use them."""

    api_version: Literal["v1"] = CORE_API_VERSION
    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta
    data: StrMap = Field(default_factory=dict)
    string_data: StrMap = Field(default_factory=dict)
    type: str = "Opaque"
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str]) -> dict[str, str]:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        for key, encoded in value.items():
            try:
                _decode_base64(key, encoded)
            except FieldIssue as issue:
                issues.extend(issue.issues)
        if issues:
            raise FieldIssue(*issues)
        return value

    def decoded(self) -> dict[str, str]:
        """Every value as text: `data` base64-decoded, `stringData` on top (as the API server merges)."""
        values = {key: _decode_base64(key, encoded) for key, encoded in self.data.items()}
        values.update(self.string_data)
        return values


class ConfigMap(KubeObject):
    api_version: Literal["v1"] = CORE_API_VERSION
    kind: Literal["ConfigMap"] = "ConfigMap"
    metadata: ObjectMeta
    data: StrMap = Field(default_factory=dict)
    binary_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None


# --- ProcessGroup (ebb.dev/v1alpha1) -----------------------------------------------------------------

#: A resource.Quantity such as "500m" (cpu, in cores) or "256Mi" (memory, in bytes), or a plain YAML number.
Quantity = Annotated[float, BeforeValidator(_quantity), Field(ge=0, allow_inf_nan=False)]


class ResourceList(KubeModel):
    """The resources a local worker is measured against: cpu in cores, memory in bytes."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourceRequirements(KubeModel):
    """A container's `resources`, for the cpu and memory triggers' Utilization."""

    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            if request is not None and limit is not None and request > limit:
                issues.append((("requests", name), f"must be less than or equal to the {name} limit"))
        if issues:
            raise FieldIssue(*issues)
        return self

    def effective_requests(self) -> dict[str, float]:
        """Requests by resource; as Kubernetes defaults them, a resource with only a limit requests its limit."""
        out: dict[str, float] = {}
        for name in ("cpu", "memory"):
            value = getattr(self.requests, name)
            if value is None:
                value = getattr(self.limits, name)
            if value is not None:
                out[name] = value
        return out


_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: How long a busy replica chosen for removal may keep working when maxDrainSeconds is not given.
DEFAULT_MAX_DRAIN_SECONDS: Final = 600.0


def _check_port_name(value: str) -> str:
    # Kubernetes' IANA_SVC_NAME: what a container port's name may be.
    if len(value) > 15 or not _PORT_NAME.match(value) or "--" in value or not re.search("[a-z]", value):
        raise ValueError(
            f"{describe(value)} is not a valid port name: at most 15 lowercase letters, digits and '-', "
            "with at least one letter, not starting or ending with '-'"
        )
    return value


def port_env_name(name: str) -> str:
    """The variable a named port reaches a replica as: `metrics-http` -> PORT_METRICS_HTTP."""
    return "PORT_" + name.upper().replace("-", "_")


class ContainerPort(KubeModel):
    """One of a ProcessGroup's `ports`: replica i listens on containerPort + i."""

    name: Annotated[str, AfterValidator(_check_port_name)] | None = None
    container_port: int = Field(ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


#: A probe's port: a number, or the name of one of the group's ports (an IntOrString, as in a Pod).
ProbePort = Annotated[int, Field(ge=1, le=65535)] | Annotated[str, Field(min_length=1)]


class TCPSocketAction(KubeModel):
    port: ProbePort


class HTTPGetAction(KubeModel):
    path: str = "/"
    port: ProbePort

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"expected a path starting with '/', got {describe(value)}")
        return value


#: Locally, probe timings may be fractions of a second (Kubernetes takes whole seconds).
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class ReadinessProbe(KubeModel):
    """A container's readinessProbe, tcpSocket or httpGet, with Kubernetes' defaults."""

    tcp_socket: TCPSocketAction | None = None
    http_get: HTTPGetAction | None = None
    initial_delay_seconds: Seconds = Field(default=0.0, ge=0)
    period_seconds: Seconds = Field(default=10.0, gt=0)
    timeout_seconds: Seconds = Field(default=1.0, gt=0)
    success_threshold: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _one_handler(self) -> ReadinessProbe:
        given = [name for name, value in (("tcpSocket", self.tcp_socket), ("httpGet", self.http_get)) if value]
        if len(given) != 1:
            raise FieldIssue.at(
                (), "give exactly one of tcpSocket or httpGet" + (f" (got {' and '.join(given)})" if given else "")
            )
        return self

    @property
    def port(self) -> int | str:
        handler = self.tcp_socket or self.http_get
        assert handler is not None
        return handler.port


class BusyProbe(KubeModel):
    """How a replica says it is busy: an HTTP GET (200 busy, 204 idle, or JSON), a file, or exit-when-idle."""

    http_get: HTTPGetAction | None = None
    #: A path that exists while the worker is busy; `{index}` or `$EBB_REPLICA_INDEX` is the replica's index.
    file: str | None = Field(default=None, min_length=1)
    #: On SIGTERM the worker finishes its current item, then exits: ebb waits maxDrainSeconds before the grace period.
    exit_when_idle: bool = False
    period_seconds: Seconds = Field(default=5.0, gt=0)
    timeout_seconds: Seconds = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _one_form(self) -> BusyProbe:
        forms = [("httpGet", self.http_get is not None), ("file", self.file is not None)]
        forms.append(("exitWhenIdle", self.exit_when_idle))
        given = [name for name, on in forms if on]
        if len(given) != 1:
            raise FieldIssue.at(
                (),
                "give exactly one of httpGet, file or exitWhenIdle: true"
                + (f" (got {' and '.join(given)})" if given else ""),
            )
        return self


class ProcessGroupSpec(KubeModel):
    """A set of identical local processes: what a Deployment is to pods, for `ebb run`."""

    command: list[LenientStr] = Field(min_length=1)
    args: list[LenientStr] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    working_dir: str | None = None
    termination_grace_period_seconds: int = Field(default=30, ge=0)
    #: The count to hold when no ScaledObject scales this group.
    replicas: int | None = Field(default=None, ge=0)
    #: Per worker; cpu and memory triggers with metricType Utilization measure against `requests`.
    resources: ResourceRequirements | None = None
    #: Replica i gets PORT = ports[0].containerPort + i, and PORT_<NAME> = containerPort + i per named port.
    ports: list[ContainerPort] = Field(default_factory=list)
    readiness_probe: ReadinessProbe | None = None
    busy_probe: BusyProbe | None = None
    #: How long a busy replica chosen for removal may keep working before SIGTERM (default 600 with a busyProbe).
    max_drain_seconds: Seconds | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _local_sources_only(self) -> ProcessGroupSpec:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        issues += self._port_issues()
        if self.max_drain_seconds is not None and self.busy_probe is None:
            issues.append((("maxDrainSeconds",), "has no effect without a busyProbe: add one, or remove this"))
        for index, var in enumerate(self.env):
            unsupported = var.value_from.unsupported_source if var.value_from else None
            if unsupported:
                issues.append(
                    (
                        ("env", index, "valueFrom", unsupported),
                        "not available to local processes: use value, secretKeyRef or configMapKeyRef",
                    )
                )
        if issues:
            raise FieldIssue(*issues)
        return self

    def _port_issues(self) -> list[tuple[tuple[PathElement, ...], str]]:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        names: dict[str, int] = {}
        numbers: dict[int, int] = {}
        for index, port in enumerate(self.ports):
            if port.name is not None:
                if port.name in names:
                    issues.append(
                        (("ports", index, "name"), f"{port.name!r} is already the name of ports[{names[port.name]}]")
                    )
                names.setdefault(port.name, index)
            if port.container_port in numbers:
                issues.append(
                    (
                        ("ports", index, "containerPort"),
                        f"{port.container_port} is already ports[{numbers[port.container_port]}]",
                    )
                )
            numbers.setdefault(port.container_port, index)
        probes: list[tuple[str, HTTPGetAction | TCPSocketAction | None]] = []
        if self.readiness_probe is not None:
            probes.append(("readinessProbe", self.readiness_probe.tcp_socket or self.readiness_probe.http_get))
        if self.busy_probe is not None:
            probes.append(("busyProbe", self.busy_probe.http_get))
        for field, handler in probes:
            if handler is None or not isinstance(handler.port, str):
                continue
            if handler.port not in names:
                declared = ", ".join(sorted(names)) or "none"
                kind = "tcpSocket" if isinstance(handler, TCPSocketAction) else "httpGet"
                issues.append(
                    (
                        (field, kind, "port"),
                        f"{handler.port!r} names no port of this group: expected a number or a declared port's name "
                        f"(declared: {declared})",
                    )
                )
        return issues

    def port_number(self, port: int | str) -> int:
        """A probe's or route's port for replica 0: a number as given, a name looked up in `ports`."""
        if isinstance(port, int):
            return port
        for declared in self.ports:
            if declared.name == port:
                return declared.container_port
        raise KeyError(port)

    def replica_ports(self, index: int) -> dict[str, str]:
        """What replica `index` is told about its ports: PORT (the first port) and PORT_<NAME> for named ones."""
        if not self.ports:
            return {}
        env = {"PORT": str(self.ports[0].container_port + index)}
        for port in self.ports:
            if port.name is not None:
                env[port_env_name(port.name)] = str(port.container_port + index)
        return env

    @property
    def effective_max_drain_seconds(self) -> float:
        return self.max_drain_seconds if self.max_drain_seconds is not None else DEFAULT_MAX_DRAIN_SECONDS

    @property
    def argv(self) -> list[str]:
        """command followed by args: what a replica executes."""
        return [*self.command, *self.args]


class ProcessGroup(KubeObject):
    api_version: Literal["ebb.dev/v1alpha1"] = EBB_API_VERSION
    kind: Literal["ProcessGroup"] = "ProcessGroup"
    metadata: ObjectMeta
    spec: ProcessGroupSpec


# --- CloudEventSource / ClusterCloudEventSource (eventing.keda.sh/v1alpha1) ----------------------------

#: Every CloudEvent type KEDA's CRD enum names (apis/eventing/v1alpha1/cloudevent_types.go).
CloudEventType = Literal[
    "keda.scaledobject.ready.v1",
    "keda.scaledobject.failed.v1",
    "keda.scaledobject.removed.v1",
    "keda.scaledobject.paused.v1",
    "keda.scaledobject.unpaused.v1",
    "keda.scaledjob.ready.v1",
    "keda.scaledjob.failed.v1",
    "keda.scaledjob.removed.v1",
    "keda.scaledjob.paused.v1",
    "keda.scaledjob.unpaused.v1",
    "keda.scaledjob.rolloutcleanup.started.v1",
    "keda.scaledjob.rolloutcleanup.completed.v1",
    "keda.scaledjob.rolloutcleanup.failed.v1",
    "keda.authentication.triggerauthentication.created.v1",
    "keda.authentication.triggerauthentication.updated.v1",
    "keda.authentication.triggerauthentication.removed.v1",
    "keda.authentication.clustertriggerauthentication.created.v1",
    "keda.authentication.clustertriggerauthentication.updated.v1",
    "keda.authentication.clustertriggerauthentication.removed.v1",
]
CLOUDEVENT_TYPES: Final[tuple[str, ...]] = get_args(CloudEventType)
#: The types KEDA's webhook lets a subscription name (its AllEventTypes): not the authentication ones, although
#: the CRD enum has them and they are sent to every CloudEventSource whose subscription does not filter them out.
SUBSCRIBABLE_CLOUDEVENT_TYPES: Final = CLOUDEVENT_TYPES[:13]


class CloudEventHTTP(KubeModel):
    uri: str

    @field_validator("uri")
    @classmethod
    def _http_uri(cls, value: str) -> str:
        # KEDA checks url.ParseRequestURI when it builds the sender; ebb checks at load, and asks for what can
        # actually receive a POST.
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {describe(value)}")
        return value


class AzureEventGridTopic(KubeModel):
    endpoint: str


class CloudEventDestination(KubeModel):
    http: CloudEventHTTP | None = None
    #: Accepted so that KEDA manifests load; ebb cannot send to it (an error when the source is started).
    azure_event_grid_topic: AzureEventGridTopic | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> CloudEventDestination:
        # KEDA accepts an empty destination and then fails to start it ("no CloudEventSource handler is
        # created"); ebb says so at load.
        if self.http is None and self.azure_event_grid_topic is None:
            raise FieldIssue.at((), "expected http (uri) or azureEventGridTopic (endpoint)")
        return self


class EventSubscription(KubeModel):
    included_event_types: list[CloudEventType] | None = None
    excluded_event_types: list[CloudEventType] | None = None

    @model_validator(mode="after")
    def _keda_webhook(self) -> EventSubscription:
        # KEDA's validateSpec (apis/eventing/v1alpha1/cloudeventsource_webhook.go): both lists set is refused,
        # even empty ones; a type outside AllEventTypes is refused.
        if self.included_event_types is not None and self.excluded_event_types is not None:
            raise FieldIssue.at(
                ("excludedEventTypes",),
                "setting includedEventTypes and excludedEventTypes at the same time is not supported",
            )
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        for alias, types in (
            ("includedEventTypes", self.included_event_types),
            ("excludedEventTypes", self.excluded_event_types),
        ):
            for index, name in enumerate(types or ()):
                if name not in SUBSCRIBABLE_CLOUDEVENT_TYPES:
                    issues.append(
                        (
                            (alias, index),
                            f"{name} is not supported in a subscription (KEDA filters only the scaledobject and "
                            "scaledjob types; authentication events go to every source without includedEventTypes)",
                        )
                    )
        if issues:
            raise FieldIssue(*issues)
        return self

    def wants(self, event_type: str) -> bool:
        """KEDA's EventFilter: an include list wins; otherwise everything not excluded."""
        if self.included_event_types:
            return event_type in self.included_event_types
        if self.excluded_event_types:
            return event_type not in self.excluded_event_types
        return True


class CloudEventSourceSpec(KubeModel):
    #: Empty: the operator's (KEDA's --k8sClusterName, default "kubernetes-default"; `ebb run --cluster-name`).
    cluster_name: str | None = None
    destination: CloudEventDestination
    authentication_ref: AuthenticationRef | None = None
    event_subscription: EventSubscription = Field(default_factory=EventSubscription)


class CloudEventSource(KubeObject):
    api_version: Literal["eventing.keda.sh/v1alpha1"] = EVENTING_API_VERSION
    kind: Literal["CloudEventSource"] = "CloudEventSource"
    metadata: ObjectMeta
    spec: CloudEventSourceSpec


class ClusterCloudEventSource(KubeObject):
    api_version: Literal["eventing.keda.sh/v1alpha1"] = EVENTING_API_VERSION
    kind: Literal["ClusterCloudEventSource"] = "ClusterCloudEventSource"
    metadata: ClusterObjectMeta
    spec: CloudEventSourceSpec

    cluster_scoped: ClassVar[bool] = True


AnyCloudEventSource = CloudEventSource | ClusterCloudEventSource


# --- HTTPScaledObject (the KEDA HTTP add-on, http.keda.sh/v1alpha1) ----------------------------------
#
# Field names, defaults and checks follow kedacore/http-add-on: operator/apis/http/v1alpha1 (types, kubebuilder
# defaults and CEL rules), the operator's reconciler (concurrency and requestRate are mutually exclusive),
# pkg/k8s/scaledobject.go (the ScaledObject it creates) and scaler/handlers.go (the metric and its target).

HTTP_API_VERSION: Final = "http.keda.sh/v1alpha1"
#: The add-on's ScaledObject polls its external scaler every 15 s (pkg/k8s/scaledobject.go).
HTTP_POLLING_INTERVAL: Final = 15
#: The add-on's annotation: the HTTPScaledObject routes only; a ScaledObject of the user's own scales its target.
SKIP_SCALING_ANNOTATION: Final = "httpscaledobject.keda.sh/skip-scaledobject-creation"
#: The add-on's default target for either metric (targetPendingRequests, concurrency and requestRate).
HTTP_DEFAULT_TARGET: Final = 100
#: coldStartTimeoutFailoverRef.timeoutSeconds' kubebuilder default.
HTTP_FAILOVER_TIMEOUT: Final = 30

_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+$")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def go_duration_seconds(text: str) -> float:
    """Seconds in a Go duration string as metav1.Duration reads it (`1m`, `1m30s`, `500ms`, `0`)."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration: write it as Go does, e.g. 500ms, 20s, 1m, 1h30m")
    sign = -1.0 if text.startswith("-") else 1.0
    return sign * sum(float(number) * _GO_UNIT[unit] for number, unit in _GO_PART.findall(text))


def _check_go_duration(value: str) -> str:
    go_duration_seconds(value)
    return value


GoDuration = Annotated[str, BeforeValidator(scalar_text)]


class _PortRef(KubeModel):
    """Exactly one of `port` and `portName`: the add-on's CEL rule `has(self.portName) != has(self.port)`, with its
    message (v1alpha1's; v1beta1 words it otherwise, `_OnePort`)."""

    _port_message: ClassVar[str] = "must define either the 'portName' or the 'port'"

    @model_validator(mode="after")
    def _one_port(self) -> Self:
        # A null is no value: the API server drops nulls of non-nullable fields before CEL runs.
        if (getattr(self, "port", None) is None) == (getattr(self, "port_name", None) is None):
            raise FieldIssue.at((), self._port_message)
        return self


class HTTPScaleTargetRef(_PortRef):
    """`spec.scaleTargetRef`: the workload to scale and the Service (locally: the port) to route to."""

    name: str = ""
    api_version: str = ""
    kind: str = ""
    service: str
    port: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    port_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _process_group_api_version(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "ProcessGroup" and not data.get("apiVersion"):
            return {**data, "apiVersion": EBB_API_VERSION}
        return data

    @property
    def is_process_group(self) -> bool:
        return self.kind == "ProcessGroup" and self.api_version == EBB_API_VERSION


class ColdStartTimeoutFailoverRef(_PortRef):
    service: str
    port: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    port_name: str | None = None
    timeout_seconds: int = Field(default=HTTP_FAILOVER_TIMEOUT, ge=-(2**31), lt=2**31)


class HTTPReplicas(KubeModel):
    min: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    max: int | None = Field(default=None, ge=-(2**31), lt=2**31)


class ConcurrencyMetric(KubeModel):
    target_value: int = HTTP_DEFAULT_TARGET


class RequestRateMetric(KubeModel):
    target_value: int = HTTP_DEFAULT_TARGET
    window: GoDuration = "1m"
    granularity: GoDuration = "1s"

    @field_validator("window", "granularity")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _check_go_duration(value)

    @property
    def window_seconds(self) -> float:
        return go_duration_seconds(self.window)

    @property
    def granularity_seconds(self) -> float:
        return go_duration_seconds(self.granularity)


class HTTPScalingMetric(KubeModel):
    concurrency: ConcurrencyMetric | None = None
    request_rate: RequestRateMetric | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> HTTPScalingMetric:
        if self.concurrency is not None and self.request_rate is not None:
            raise FieldIssue.at((), "concurrency and requestRate are mutually exclusive")
        return self


class HTTPTimeouts(KubeModel):
    condition_wait: GoDuration = "0s"
    response_header: GoDuration = "0s"

    @field_validator("condition_wait", "response_header")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _check_go_duration(value)


class HTTPHeader(KubeModel):
    name: str = Field(min_length=1)
    value: str | None = None


class HTTPScaledObjectSpec(KubeModel):
    hosts: list[str] = Field(default_factory=list)
    path_prefixes: list[str] = Field(default_factory=list)
    headers: list[HTTPHeader] = Field(default_factory=list)
    scale_target_ref: HTTPScaleTargetRef
    cold_start_timeout_failover_ref: ColdStartTimeoutFailoverRef | None = None
    replicas: HTTPReplicas | None = None
    target_pending_requests: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    scaledown_period: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    initial_cooldown_period: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    scaling_metric: HTTPScalingMetric | None = None
    timeouts: HTTPTimeouts | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPScaledObjectSpec:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        seen: set[str] = set()
        for index, header in enumerate(self.headers):
            # listType=map with listMapKey=name: the API server refuses two entries with one name.
            if header.name in seen:
                issues.append((("headers", index, "name"), f"duplicate header {header.name!r}"))
            seen.add(header.name)
        # The ScaledObject the add-on creates must pass KEDA's checks, or nothing scales.
        if self.min_replicas > self.max_replicas:
            issues.append(
                (
                    ("replicas", "min"),
                    f"min ({self.min_replicas}) must be less than or equal to max ({self.max_replicas})",
                )
            )
        if self.min_replicas < 0:
            issues.append((("replicas", "min"), "must be 0 or more"))
        if self.max_replicas < 1:
            issues.append((("replicas", "max"), "must be 1 or more"))
        if self.metric_target <= 0:
            where: tuple[PathElement, ...] = ("targetPendingRequests",)
            if self.scaling_metric is not None and self.scaling_metric.concurrency is not None:
                where = ("scalingMetric", "concurrency", "targetValue")
            elif self.scaling_metric is not None and self.scaling_metric.request_rate is not None:
                where = ("scalingMetric", "requestRate", "targetValue")
            issues.append((where, f"must be greater than 0, got {self.metric_target}"))
        rate = self.scaling_metric.request_rate if self.scaling_metric is not None else None
        if rate is not None:
            if rate.granularity_seconds <= 0:
                issues.append((("scalingMetric", "requestRate", "granularity"), "must be greater than 0"))
            elif rate.window_seconds < rate.granularity_seconds:
                issues.append(
                    (("scalingMetric", "requestRate", "window"), "must be at least as long as the granularity")
                )
        for name in ("scaledown_period", "initial_cooldown_period"):
            value = getattr(self, name)
            if value is not None and value < 0:
                issues.append(((to_camel(name),), "must be 0 or more"))
        if self.timeouts is not None:
            for name in ("condition_wait", "response_header"):
                if go_duration_seconds(getattr(self.timeouts, name)) < 0:
                    issues.append((("timeouts", to_camel(name)), "must not be negative"))
        if issues:
            raise FieldIssue(*issues)
        return self

    # --- the add-on's defaults, as the ScaledObject it creates and its scaler see them -----------------

    @property
    def min_replicas(self) -> int:
        value = self.replicas.min if self.replicas is not None else None
        return 0 if value is None else value

    @property
    def max_replicas(self) -> int:
        value = self.replicas.max if self.replicas is not None else None
        return 100 if value is None else value

    @property
    def metric(self) -> Literal["concurrency", "requestRate"]:
        if self.scaling_metric is not None and self.scaling_metric.request_rate is not None:
            return "requestRate"
        return "concurrency"

    @property
    def metric_target(self) -> int:
        """scaler/handlers.go: targetPendingRequests (default 100), overridden by the scalingMetric's targetValue."""
        target = self.target_pending_requests if self.target_pending_requests is not None else HTTP_DEFAULT_TARGET
        if self.scaling_metric is not None:
            if self.scaling_metric.concurrency is not None:
                target = self.scaling_metric.concurrency.target_value
            if self.scaling_metric.request_rate is not None:
                target = self.scaling_metric.request_rate.target_value
        return target

    @property
    def condition_wait_seconds(self) -> float | None:
        """How long a request waits for a ready replica; None when the manifest leaves it to the interceptor.

        pkg/routing/table.go: a failover's timeoutSeconds (> 0) wins over timeouts.conditionWait.
        """
        failover = self.cold_start_timeout_failover_ref
        if failover is not None and failover.timeout_seconds > 0:
            return float(failover.timeout_seconds)
        if self.timeouts is not None:
            seconds = go_duration_seconds(self.timeouts.condition_wait)
            if seconds > 0:
                return seconds
        return None

    @property
    def response_header_seconds(self) -> float | None:
        if self.timeouts is not None:
            seconds = go_duration_seconds(self.timeouts.response_header)
            if seconds > 0:
                return seconds
        return None


class HTTPScaledObject(KubeObject):
    api_version: Literal["http.keda.sh/v1alpha1"] = HTTP_API_VERSION
    kind: Literal["HTTPScaledObject"] = "HTTPScaledObject"
    metadata: ObjectMeta
    spec: HTTPScaledObjectSpec

    @property
    def scales(self) -> bool:
        """Whether it scales its target; False with the add-on's skip-scaledobject-creation: "true" (routes only)."""
        return self.metadata.annotations.get(SKIP_SCALING_ANNOTATION, "").lower() != "true"

    def scaled_object(self) -> ScaledObject:
        """The ScaledObject the add-on's operator creates for this object (pkg/k8s/scaledobject.go).

        Same name, labels and annotations; polling every 15 s; one external-push trigger naming this object.
        """
        spec = self.spec
        target = spec.scale_target_ref
        so_spec: dict[str, Any] = {
            "scaleTargetRef": {
                "name": target.name,
                "kind": target.kind or "Deployment",
                "apiVersion": target.api_version or "apps/v1",
            },
            "pollingInterval": HTTP_POLLING_INTERVAL,
            "minReplicaCount": spec.min_replicas,
            "maxReplicaCount": spec.max_replicas,
            "advanced": {"restoreToOriginalReplicaCount": True},
            "triggers": [
                {
                    "type": "external-push",
                    "metadata": {"scalerAddress": "ebb-interceptor", "httpScaledObject": self.metadata.name},
                }
            ],
        }
        if spec.scaledown_period is not None:
            so_spec["cooldownPeriod"] = spec.scaledown_period
        if spec.initial_cooldown_period is not None:
            so_spec["initialCooldownPeriod"] = spec.initial_cooldown_period
        metadata: dict[str, Any] = {
            "name": self.metadata.name,
            "namespace": self.metadata.namespace,
            "labels": dict(self.metadata.labels),
            "annotations": dict(self.metadata.annotations),
        }
        if self.metadata.creation_timestamp is not None:
            metadata["creationTimestamp"] = self.metadata.creation_timestamp
        so = ScaledObject.model_validate(
            {"apiVersion": KEDA_API_VERSION, "kind": "ScaledObject", "metadata": metadata, "spec": so_spec},
            strict=False,
        )
        so.set_source(self.source)
        return so


# --- InterceptorRoute (the KEDA HTTP add-on, http.keda.sh/v1beta1) ------------------------------------
#
# The add-on's successor of HTTPScaledObject: a route only (no replicas, no scale target), paired with an
# ordinary ScaledObject whose `external-push` trigger names it (`interceptorRoute: <name>`). Field names,
# defaults and checks follow operator/apis/http/v1beta1 (kubebuilder markers and CEL rules); the metrics follow
# scaler/handlers.go (both metrics when both are set; the rate is not rounded up, unlike HTTPScaledObject's).

IR_API_VERSION: Final = "http.keda.sh/v1beta1"
#: The trigger metadata key naming the InterceptorRoute (pkg/k8s/scaledobject.go InterceptorRouteKey).
INTERCEPTOR_ROUTE_KEY: Final = "interceptorRoute"
#: The add-on's readiness default when a fallback is set and timeouts.readiness is unset or 0
#: (interceptor/middleware/endpoint_resolver.go).
IR_FALLBACK_READINESS: Final = 30.0
#: Where a static response's body may come from: ConfigMaps carrying this label (static_response.go).
RESPONSE_BODY_LABEL: Final = "http.keda.sh/response-body"


_Issues = list[tuple[tuple[PathElement, ...], str]]


def _no_duplicates(values: Sequence[str], path: tuple[PathElement, ...], what: str) -> _Issues:
    seen: set[str] = set()
    issues: _Issues = []
    for index, value in enumerate(values):
        if value in seen:
            issues.append(((*path, index), f"duplicate {what} {value!r}"))
        seen.add(value)
    return issues


class PathMatch(KubeModel):
    value: str = Field(min_length=1)


class IRHeaderMatch(KubeModel):
    name: str = Field(min_length=1)
    value: str | None = None


class RoutingRule(KubeModel):
    """Hosts and paths match any of theirs (OR); every header must match (AND); an empty field matches all."""

    hosts: list[str] = Field(default_factory=list)
    paths: list[PathMatch] = Field(default_factory=list)
    headers: list[IRHeaderMatch] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sets(self) -> RoutingRule:
        # hosts is a listType=set, headers a listType=map keyed by name: the API server refuses repeats.
        issues = _no_duplicates(self.hosts, ("hosts",), "host")
        issues += [
            ((*path[:-1], path[-1], "name"), message)
            for path, message in _no_duplicates([h.name for h in self.headers], ("headers",), "header")
        ]
        if issues:
            raise FieldIssue(*issues)
        return self


class ConcurrencyTarget(KubeModel):
    target_value: int = Field(ge=1, lt=2**31)


class RequestRateTarget(KubeModel):
    granularity: GoDuration = "1s"
    target_value: int = Field(ge=1, lt=2**31)
    window: GoDuration = "1m"

    @field_validator("window", "granularity")
    @classmethod
    def _duration(cls, value: str) -> str:
        return _check_go_duration(value)

    @model_validator(mode="after")
    def _window(self) -> RequestRateTarget:
        # Not the add-on's schema: its bucketing divides the window by the granularity, so ebb refuses what
        # cannot make a rate (see docs/validation.md).
        if self.granularity_seconds <= 0:
            raise FieldIssue.at(("granularity",), "must be greater than 0")
        if self.window_seconds < self.granularity_seconds:
            raise FieldIssue.at(("window",), "must be at least as long as the granularity")
        return self

    @property
    def window_seconds(self) -> float:
        return go_duration_seconds(self.window)

    @property
    def granularity_seconds(self) -> float:
        return go_duration_seconds(self.granularity)


class ScalingMetricSpec(KubeModel):
    """Concurrency, request rate, or both (then both are reported and the larger replica count wins)."""

    concurrency: ConcurrencyTarget | None = None
    request_rate: RequestRateTarget | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> ScalingMetricSpec:
        if self.concurrency is None and self.request_rate is None:
            raise FieldIssue.at((), "at least one of 'concurrency' or 'requestRate' must be set")
        return self


class _OnePort(_PortRef):
    """The same rule in v1beta1 (`has(self.port) != has(self.portName)`), with that version's message."""

    _port_message: ClassVar[str] = "exactly one of 'port' or 'portName' must be set"


class TargetRef(_OnePort):
    service: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    port_name: str | None = Field(default=None, min_length=1)


class ServiceRef(_OnePort):
    name: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    port_name: str | None = Field(default=None, min_length=1)


class ConfigMapKeyRef(KubeModel):
    name: str = Field(min_length=1)
    #: Unset: the request path without its leading "/" ("index.html" for "/").
    key: str = ""


class StaticResponse(KubeModel):
    status_code: int | None = Field(default=None, ge=100, le=599)
    body: str | None = Field(default=None, max_length=32768)
    body_from_config_map: ConfigMapKeyRef | None = None
    headers: StrMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_body(self) -> StaticResponse:
        if self.body is not None and self.body_from_config_map is not None:
            raise FieldIssue.at((), "at most one of 'body' or 'bodyFromConfigMap' may be set")
        return self


class ColdStartFallback(KubeModel):
    service: ServiceRef | None = None


class ColdStartPlaceholder(KubeModel):
    response: StaticResponse | None = None


class ColdStartSpec(KubeModel):
    fallback: ColdStartFallback | None = None
    placeholder: ColdStartPlaceholder | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> ColdStartSpec:
        if self.fallback is None and self.placeholder is None:
            raise FieldIssue.at((), "at least one of 'fallback' or 'placeholder' must be set")
        return self


class InterceptorRouteTimeouts(KubeModel):
    """Unset: the interceptor's own setting. "0s": no deadline of that kind (see docs/http.md)."""

    readiness: GoDuration | None = None
    request: GoDuration | None = None
    response_header: GoDuration | None = None

    @field_validator("readiness", "request", "response_header")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return None if value is None else _check_go_duration(value)

    @staticmethod
    def seconds(value: str | None) -> float | None:
        return None if value is None else go_duration_seconds(value)


StaticRouteResponseMode = Literal["Always", "WhenUnavailable"]


class StaticRoute(KubeModel):
    rules: list[RoutingRule] = Field(min_length=1)
    response: StaticResponse
    response_mode: StaticRouteResponseMode = "WhenUnavailable"


class InterceptorRouteSpec(KubeModel):
    target: TargetRef
    cold_start: ColdStartSpec | None = None
    timeouts: InterceptorRouteTimeouts = Field(default_factory=InterceptorRouteTimeouts)
    rules: list[RoutingRule] = Field(default_factory=list)
    scaling_metric: ScalingMetricSpec
    static_routes: list[StaticRoute] = Field(default_factory=list)

    @property
    def fallback(self) -> ServiceRef | None:
        return self.cold_start.fallback.service if self.cold_start and self.cold_start.fallback else None

    @property
    def placeholder(self) -> StaticResponse | None:
        return self.cold_start.placeholder.response if self.cold_start and self.cold_start.placeholder else None

    @property
    def readiness_seconds(self) -> float | None:
        """How long a request waits for a ready replica: None for the interceptor's default, 0 for no limit
        of its own. With a fallback, unset or 0 (or less) is 30 s, as the add-on's endpoint resolver does."""
        seconds = InterceptorRouteTimeouts.seconds(self.timeouts.readiness)
        if self.fallback is not None and (seconds is None or seconds <= 0):
            return IR_FALLBACK_READINESS
        if seconds is not None and seconds < 0:
            return 0.0
        return seconds


class InterceptorRoute(KubeObject):
    api_version: Literal["http.keda.sh/v1beta1"] = IR_API_VERSION
    kind: Literal["InterceptorRoute"] = "InterceptorRoute"
    metadata: ObjectMeta
    spec: InterceptorRouteSpec


def interceptor_route_of(trigger: ScaleTrigger) -> str | None:
    """The InterceptorRoute an `external-push` trigger reads, as the add-on's scaler finds it."""
    if trigger.type != "external-push":
        return None
    return trigger.metadata.get(INTERCEPTOR_ROUTE_KEY) or None


#: Every kind the loader reads, by (apiVersion, kind).
KINDS: dict[tuple[str, str], type[KubeObject]] = {
    (KEDA_API_VERSION, "ScaledObject"): ScaledObject,
    (KEDA_API_VERSION, "ScaledJob"): ScaledJob,
    (KEDA_API_VERSION, "TriggerAuthentication"): TriggerAuthentication,
    (KEDA_API_VERSION, "ClusterTriggerAuthentication"): ClusterTriggerAuthentication,
    (CORE_API_VERSION, "Secret"): Secret,
    (CORE_API_VERSION, "ConfigMap"): ConfigMap,
    (EBB_API_VERSION, "ProcessGroup"): ProcessGroup,
    (EVENTING_API_VERSION, "CloudEventSource"): CloudEventSource,
    (EVENTING_API_VERSION, "ClusterCloudEventSource"): ClusterCloudEventSource,
    (HTTP_API_VERSION, "HTTPScaledObject"): HTTPScaledObject,
    (IR_API_VERSION, "InterceptorRoute"): InterceptorRoute,
}

ScalableObject = ScaledObject | ScaledJob


def kind_of(model: type[KubeObject]) -> str:
    """The `kind` a model class reads ("ScaledObject" for ScaledObject)."""
    default = model.model_fields["kind"].default
    assert isinstance(default, str)
    return default
