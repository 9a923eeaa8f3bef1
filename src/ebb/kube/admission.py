"""KEDA's admission checks (`keda:apis/keda/v1alpha1/*_webhook.go`) over AdmissionReview v1 bodies. No I/O.

Field checks come from ebb.spec (the loader makes KEDA's webhook checks that need only the object; the
scalingModifiers formula is compiled here, as `ebb check` does). This module adds the checks that need the cluster:
one ScaledObject per workload, one per HPA name, no foreign HPA on the workload (`ConflictIndex`, kept current from
watch events so that a check is a few dict lookups, as KEDA's field indexes make its own), and cpu/memory triggers
against the target's pod template (through a `Cluster`, the reads the caller provides). `review` turns a request
into the response to send back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from ebb.errors import EbbError, SpecError, redact
from ebb.runtime.build import self_contained_trigger_errors
from ebb.scalers import available_types
from ebb.scaling.modifiers import compile_formula
from ebb.spec import format_path, parse_object
from ebb.spec.loader import validation_problems
from ebb.spec.models import (
    KINDS,
    TRANSFER_HPA_OWNERSHIP_ANNOTATION,
    ClusterTriggerAuthentication,
    HTTPScaledObject,
    InterceptorRoute,
    KubeObject,
    ScaledJob,
    ScaledObject,
    TriggerAuthentication,
)
from ebb.units import parse_quantity

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
#: An HPA with this annotation set to "false" is left out of the ownership check.
HPA_OWNERSHIP_ANNOTATION: Final = "validations.keda.sh/hpa-ownership"
SCALED_OBJECT_API_VERSION: Final = "keda.sh/v1alpha1"
HPA_API_VERSION: Final = "autoscaling/v2"
#: The kinds the webhook validates, each at its own path (KEDA's paths).
KINDS_BY_PATH: Final = {
    "/validate-keda-sh-v1alpha1-scaledobject": "ScaledObject",
    "/validate-keda-sh-v1alpha1-scaledjob": "ScaledJob",
    "/validate-keda-sh-v1alpha1-triggerauthentication": "TriggerAuthentication",
    "/validate-keda-sh-v1alpha1-clustertriggerauthentication": "ClusterTriggerAuthentication",
    "/validate-eventing-keda-sh-v1alpha1-cloudeventsource": "CloudEventSource",
    "/validate-eventing-keda-sh-v1alpha1-clustercloudeventsource": "ClusterCloudEventSource",
    "/validate-http-keda-sh-v1alpha1-httpscaledobject": "HTTPScaledObject",
    "/validate-http-keda-sh-v1beta1-interceptorroute": "InterceptorRoute",
}
_CLUSTER_SCOPED: Final = frozenset({"ClusterTriggerAuthentication", "ClusterCloudEventSource"})
#: verifyCPUMemoryScalers reads the pod template of these targets only (KEDA's GVK strings).
_POD_TEMPLATE_TARGETS: Final = frozenset({("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")})
#: kopf keeps its progress and diff base in annotations under this prefix (runner.py); none of them is checked.
_BOOKKEEPING_ANNOTATION_PREFIX: Final = "ebb.dev/"
_BOOKKEEPING_METADATA: Final = ("finalizers", "resourceVersion", "generation", "managedFields")
#: How many stale index entries one check may correct by reading the cluster before it answers.
_MAX_CONFIRMATIONS: Final = 16


class Denial(SpecError):
    """A refused object: what and where (SpecError), KEDA's metric `reason`, and the object it collides with."""

    def __init__(
        self, obj: str, field: str, message: str, reason: str, conflicting: tuple[str, str, str] | None = None
    ) -> None:
        self.reason = reason
        #: (kind, namespace, name) of the other object, for conflicts.
        self.conflicting = conflicting
        super().__init__(obj, field, message)


class ClusterUnavailable(EbbError):
    """A `Cluster` read failed (not "not found", which is None): the API server refused or is unreachable."""


class Cluster(Protocol):
    """The reads the checks need; the webhook and the operator back it with the Kubernetes API."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object, or None when there is none. Raises ClusterUnavailable."""
        ...

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Every object of the kind in the namespace. Raises ClusterUnavailable."""
        ...


# --- the conflict index -------------------------------------------------------------------------------

Arrival = tuple[float, str]


def arrival(created: datetime | str | None, name: str) -> Arrival:
    """The order in which two objects arrived: creationTimestamp (one-second steps), then name. An object without
    one (not stored yet) comes last."""
    if isinstance(created, str):
        try:
            created = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            created = None
    return (created.timestamp() if isinstance(created, datetime) else math.inf, name)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) and value else default


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _identity(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = _mapping(body.get("metadata"))
    name = _text(meta.get("name"))
    return (_text(meta.get("namespace"), "default"), name) if name else None


@dataclass(frozen=True)
class _ScaledObjectEntry:
    group: str
    kind: str
    target: str
    hpa_name: str
    deleting: bool
    #: creationTimestamp, then name: the order the operator's ordered check goes by.
    arrival: Arrival


@dataclass(frozen=True)
class _HPAEntry:
    #: None when the HPA's scaleTargetRef has no apiVersion (optional in autoscaling/v2): it matches any group.
    group: str | None
    kind: str
    target: str
    owners: frozenset[tuple[str, str]]
    #: Annotated validations.keda.sh/hpa-ownership: "false".
    ignored: bool


def _scaled_object_entry(body: Mapping[str, Any], name: str) -> _ScaledObjectEntry:
    spec = _mapping(body.get("spec"))
    ref = _mapping(spec.get("scaleTargetRef"))
    config = _mapping(_mapping(spec.get("advanced")).get("horizontalPodAutoscalerConfig"))
    meta = _mapping(body.get("metadata"))
    return _ScaledObjectEntry(
        group=_group(_text(ref.get("apiVersion"), "apps/v1")),
        kind=_text(ref.get("kind"), "Deployment"),
        target=_text(ref.get("name")),
        hpa_name=_text(config.get("name"), f"keda-hpa-{name}"),
        deleting=bool(meta.get("deletionTimestamp")),
        arrival=arrival(meta.get("creationTimestamp"), name),
    )


def _hpa_entry(body: Mapping[str, Any]) -> _HPAEntry:
    meta = _mapping(body.get("metadata"))
    ref = _mapping(_mapping(body.get("spec")).get("scaleTargetRef"))
    owners = meta.get("ownerReferences")
    api_version = _text(ref.get("apiVersion"))
    return _HPAEntry(
        group=_group(api_version) if api_version else None,
        kind=_text(ref.get("kind")),
        target=_text(ref.get("name")),
        owners=frozenset((_text(o.get("kind")), _text(o.get("name"))) for o in owners or () if isinstance(o, Mapping)),
        ignored=_mapping(meta.get("annotations")).get(HPA_OWNERSHIP_ANNOTATION) == "false",
    )


def _add(index: dict[tuple[str, str, str], set[str]], key: tuple[str, str, str], name: str) -> None:
    index.setdefault(key, set()).add(name)


def _discard(index: dict[tuple[str, str, str], set[str]], key: tuple[str, str, str], name: str) -> None:
    names = index.get(key)
    if names is not None:
        names.discard(name)
        if not names:
            del index[key]


class ConflictIndex:
    """The ScaledObjects and HPAs of the watched namespaces, indexed for KEDA's conflict checks.

    Fed from raw manifests (watch events); `check` answers with dict lookups keyed by namespace, kind and name,
    never by scanning a namespace. `ready` is False until `replace` loaded a full listing: until then a caller
    should not trust an absence (see `check_conflicts`).
    """

    def __init__(self) -> None:
        self.ready = False
        #: The namespaces the listings and watches cover; None: every namespace.
        self.namespaces: frozenset[str] | None = None
        self._scaled_objects: dict[tuple[str, str], _ScaledObjectEntry] = {}
        self._hpas: dict[tuple[str, str], _HPAEntry] = {}
        #: (namespace, target kind, target name) -> ScaledObject names.
        self._so_by_target: dict[tuple[str, str, str], set[str]] = {}
        #: (namespace, "", HPA name) -> names of the ScaledObjects whose HPA has that name.
        self._so_by_hpa: dict[tuple[str, str, str], set[str]] = {}
        #: (namespace, target kind, target name) -> HPA names.
        self._hpa_by_target: dict[tuple[str, str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._scaled_objects) + len(self._hpas)

    # --- ScaledObjects

    def upsert_scaled_object(self, body: Mapping[str, Any]) -> bool:
        """Add or update one ScaledObject from its manifest; True when the index changed."""
        identity = _identity(body)
        if identity is None:
            return False
        namespace, name = identity
        entry = _scaled_object_entry(body, name)
        if self._scaled_objects.get(identity) == entry:
            return False
        self.remove_scaled_object(namespace, name)
        self._scaled_objects[identity] = entry
        if entry.target:
            _add(self._so_by_target, (namespace, entry.kind, entry.target), name)
        _add(self._so_by_hpa, (namespace, "", entry.hpa_name), name)
        return True

    def remove_scaled_object(self, namespace: str, name: str) -> bool:
        entry = self._scaled_objects.pop((namespace, name), None)
        if entry is None:
            return False
        _discard(self._so_by_target, (namespace, entry.kind, entry.target), name)
        _discard(self._so_by_hpa, (namespace, "", entry.hpa_name), name)
        return True

    # --- HPAs

    def upsert_hpa(self, body: Mapping[str, Any]) -> bool:
        """Add or update one HorizontalPodAutoscaler from its manifest; True when the index changed."""
        identity = _identity(body)
        if identity is None:
            return False
        namespace, name = identity
        entry = _hpa_entry(body)
        if self._hpas.get(identity) == entry:
            return False
        self.remove_hpa(namespace, name)
        self._hpas[identity] = entry
        if entry.target:
            _add(self._hpa_by_target, (namespace, entry.kind, entry.target), name)
        return True

    def remove_hpa(self, namespace: str, name: str) -> bool:
        entry = self._hpas.pop((namespace, name), None)
        if entry is None:
            return False
        _discard(self._hpa_by_target, (namespace, entry.kind, entry.target), name)
        return True

    # --- whole listings

    def replace(
        self,
        scaled_objects: Iterable[Mapping[str, Any]],
        hpas: Iterable[Mapping[str, Any]],
        *,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        """Forget everything and load full listings of `namespaces` (None: all); `ready` afterwards."""
        self.clear()
        for body in scaled_objects:
            self.upsert_scaled_object(body)
        for body in hpas:
            self.upsert_hpa(body)
        self.namespaces = frozenset(namespaces) if namespaces is not None else None
        self.ready = True

    def covers(self, namespace: str) -> bool:
        """True when the index is loaded and holds everything of `namespace`."""
        return self.ready and (self.namespaces is None or namespace in self.namespaces)

    def clear(self) -> None:
        """Forget everything (the watches stopped); not `ready` until the next `replace`."""
        self.ready = False
        for table in (self._scaled_objects, self._hpas, self._so_by_target, self._so_by_hpa, self._hpa_by_target):
            table.clear()

    def apply(self, kind: str, body: Mapping[str, Any], *, deleted: bool = False) -> bool:
        """One watch event for a ScaledObject or HorizontalPodAutoscaler; True when the index changed."""
        if deleted:
            identity = _identity(body)
            if identity is None:
                return False
            return (self.remove_scaled_object if kind == "ScaledObject" else self.remove_hpa)(*identity)
        return (self.upsert_scaled_object if kind == "ScaledObject" else self.upsert_hpa)(body)

    # --- the check

    def check(
        self, so: ScaledObject, *, target_type: str | None = None, scaled_objects: bool = True, ordered: bool = False
    ) -> Denial | None:
        """KEDA's verifyScaledObjects and verifyHpas conflicts for `so`, or None.

        `target_type` names the workload's type in messages (KEDA's GVK string, "apps/v1.Deployment"); by default
        it is taken from the scaleTargetRef. `scaled_objects=False` leaves out verifyScaledObjects (the
        ScaledObject an HTTPScaledObject stands for: its rule against ScaledObjects is kube/http_admission.py's).
        `ordered` (the operator, and the webhook on an update): of two ScaledObjects on one workload or HPA name,
        only the one that arrived first (`arrival`) counts against the other, so the first keeps scaling; and an
        HPA whose owning ScaledObjects are all being deleted, gone, or arrived after `so` does not count (it goes
        with them, or with their refusal).
        Else (the webhook on a create, as KEDA) any other ScaledObject counts.
        """
        namespace, ref = so.metadata.namespace, so.spec.scale_target_ref
        group = _group(ref.api_version)
        shown = target_type or f"{ref.api_version}.{ref.kind}"
        mine = arrival(so.metadata.creation_timestamp, so.name) if ordered else None
        after = f", created before {so.ref} (which therefore does not scale it)" if ordered else ""
        others = self._so_by_target.get((namespace, ref.kind, ref.name), ()) if scaled_objects else ()
        for other in sorted(others):
            entry = self._scaled_objects[(namespace, other)]
            if other == so.name or entry.deleting or entry.group != group:
                continue
            if mine is not None and not entry.arrival < mine:
                continue
            return Denial(
                so.ref,
                "spec.scaleTargetRef",
                f"the workload '{ref.name}' of type '{shown}' is already managed by the ScaledObject '{other}'{after}",
                "other-scaled-object",
                ("ScaledObject", namespace, other),
            )
        config = so.spec.advanced.horizontal_pod_autoscaler_config if so.spec.advanced else None
        explicit_hpa = config.name if config is not None and config.name else None
        owners = self._so_by_hpa.get((namespace, "", so.hpa_name), ()) if scaled_objects else ()
        for other in sorted(owners):
            entry = self._scaled_objects[(namespace, other)]
            if other == so.name or entry.deleting:
                continue
            if mine is not None and not entry.arrival < mine:
                continue
            return Denial(
                so.ref,
                "spec.advanced.horizontalPodAutoscalerConfig.name" if explicit_hpa else "metadata.name",
                f"the HPA '{so.hpa_name}' is already managed by the ScaledObject '{other}'{after}",
                "other-scaled-object-hpa",
                ("ScaledObject", namespace, other),
            )
        transfer = so.metadata.annotations.get(TRANSFER_HPA_OWNERSHIP_ANNOTATION) == "true"
        for hpa_name in sorted(self._hpa_by_target.get((namespace, ref.kind, ref.name), ())):
            hpa = self._hpas[(namespace, hpa_name)]
            if hpa.ignored or (hpa.group is not None and hpa.group != group):
                continue
            if ("ScaledObject", so.name) in hpa.owners:
                continue
            if mine is not None and self._owners_yield(namespace, hpa.owners, mine):
                continue
            if transfer and explicit_hpa == hpa_name:
                continue
            if transfer:
                return Denial(
                    so.ref,
                    "spec.advanced.horizontalPodAutoscalerConfig.name",
                    f"the existing hpa '{hpa_name}' for workload '{ref.name}' of type '{shown}' must be specified by "
                    "name in advanced settings to enable ownership transfer",
                    "transfer-ownership-missing-hpa-name",
                    ("HorizontalPodAutoscaler", namespace, hpa_name),
                )
            return Denial(
                so.ref,
                "spec.scaleTargetRef",
                f"the workload '{ref.name}' of type '{shown}' is already managed by the hpa '{hpa_name}'",
                "other-hpa",
                ("HorizontalPodAutoscaler", namespace, hpa_name),
            )
        return None

    def _owners_yield(self, namespace: str, owners: frozenset[tuple[str, str]], mine: Arrival) -> bool:
        """True when `owners` are ScaledObjects only, each being deleted or gone (the garbage collector removes their
        HPA next: the case of an object re-queued by the delete of the one it lost to) or arrived after `mine`
        (refused by the ordered check, it deletes the HPA it made)."""
        if not owners or any(kind != "ScaledObject" for kind, _ in owners):
            return False
        entries = (self._scaled_objects.get((namespace, name)) for _, name in owners)
        return all(entry is None or entry.deleting or mine < entry.arrival for entry in entries)


async def namespace_index(cluster: Cluster, namespace: str) -> ConflictIndex:
    """An index of one namespace from two listings: the check without a watch-fed index (one namespace scan)."""
    index = ConflictIndex()
    scaled_objects = await cluster.list(SCALED_OBJECT_API_VERSION, "ScaledObject", namespace)
    hpas = await cluster.list(HPA_API_VERSION, "HorizontalPodAutoscaler", namespace)
    index.replace(scaled_objects, hpas, namespaces=[namespace])
    return index


async def check_conflicts(
    so: ScaledObject,
    index: ConflictIndex | None,
    cluster: Cluster | None,
    *,
    target_type: str | None = None,
    scaled_objects: bool = True,
    ordered: bool = False,
) -> Denial | None:
    """The conflict checks, from `index` when it covers the namespace, else from listings of it through `cluster`;
    `ordered` as for `ConflictIndex.check`.

    A conflict found in the shared index is confirmed by reading the other object (a watch can miss a deletion
    across a reconnect): a stale entry is corrected and the check repeated, so the index never refuses an
    object on the word of one that is gone. Raises ClusterUnavailable.
    """

    def check(of: ConflictIndex) -> Denial | None:
        return of.check(so, target_type=target_type, scaled_objects=scaled_objects, ordered=ordered)

    if index is None or not index.covers(so.metadata.namespace):
        if cluster is None:
            return check(index) if index is not None else None
        return check(await namespace_index(cluster, so.metadata.namespace))
    denial = check(index)
    for _ in range(_MAX_CONFIRMATIONS):
        if denial is None or cluster is None or denial.conflicting is None:
            return denial
        kind, namespace, name = denial.conflicting
        api_version = SCALED_OBJECT_API_VERSION if kind == "ScaledObject" else HPA_API_VERSION
        current = await cluster.get(api_version, kind, namespace, name)
        if current is None:
            changed = index.apply(kind, {"metadata": {"namespace": namespace, "name": name}}, deleted=True)
        else:
            changed = index.apply(kind, current)
        if not changed:
            return denial  # confirmed: the other object is there as the index has it
        denial = check(index)
    return denial


# --- cpu and memory triggers (verifyCPUMemoryScalers) ---------------------------------------------------


def _quantity_positive(value: Any) -> bool:
    try:
        return parse_quantity(str(value)) > 0
    except ValueError:
        return False


def _resource_set(container: Mapping[str, Any], resource: str) -> bool:
    """KEDA's isWorkloadResourceSet: a request or a limit for `resource`, one of them above zero."""
    resources = _mapping(container.get("resources"))
    requests, limits = _mapping(resources.get("requests")), _mapping(resources.get("limits"))
    return _quantity_positive(requests.get(resource, "0")) or _quantity_positive(limits.get(resource, "0"))


def _limit_range_default(limit_ranges: Sequence[Mapping[str, Any]], resource: str) -> bool:
    """A LimitRange gives containers a default request or limit for `resource` (isContainerResourceLimitSet)."""
    for limit_range in limit_ranges:
        for item in _mapping(limit_range.get("spec")).get("limits") or ():
            if not isinstance(item, Mapping) or item.get("type") != "Container":
                continue
            default, default_request = _mapping(item.get("default")), _mapping(item.get("defaultRequest"))
            if _quantity_positive(default.get(resource, "0")) or _quantity_positive(default_request.get(resource, "0")):
                return True
    return False


async def verify_cpu_memory(so: ScaledObject, cluster: Cluster | None) -> Denial | None:
    """KEDA's verifyCPUMemoryScalers for Deployment and StatefulSet targets.

    Each container (or the trigger's `containerName`) needs a request or limit for the trigger's resource, or a
    LimitRange default; and cpu/memory triggers alone cannot scale to zero. The pod template is read through
    `cluster`; a target that does not exist yet (None) is not checked for requests (KEDA refuses the object
    then; ebb lets manifests be applied in any order, and the HPA reports missing requests itself).
    """
    resource_triggers = [(index, trigger) for index, trigger in enumerate(so.spec.triggers) if trigger.is_resource]
    ref = so.spec.scale_target_ref
    if not resource_triggers or (ref.api_version, ref.kind) not in _POD_TEMPLATE_TARGETS:
        return None
    namespace = so.metadata.namespace
    workload = await cluster.get(ref.api_version, ref.kind, namespace, ref.name) if cluster is not None else None
    if workload is not None and cluster is not None:
        template = _mapping(_mapping(_mapping(workload.get("spec")).get("template")).get("spec"))
        containers = [c for c in template.get("containers") or () if isinstance(c, Mapping)]
        limit_ranges: Sequence[Mapping[str, Any]] | None = None
        for index, trigger in resource_triggers:
            wanted = trigger.metadata.get("containerName", "")
            for container in containers:
                name = _text(container.get("name"))
                if (wanted and name != wanted) or _resource_set(container, trigger.type):
                    continue
                if limit_ranges is None:
                    limit_ranges = await cluster.list("v1", "LimitRange", namespace)
                if _limit_range_default(limit_ranges, trigger.type):
                    continue
                return Denial(
                    so.ref,
                    f"spec.triggers[{index}]",
                    f"the scaledobject has a {trigger.type} trigger but the container '{name}' of {ref.kind} "
                    f"'{ref.name}' doesn't have the {trigger.type} request defined: set "
                    f"resources.requests.{trigger.type} on it (or a LimitRange default for containers)",
                    "missing-requests",
                )
    if all(trigger.is_resource for trigger in so.spec.triggers) and so.spec.min_replica_count == 0:
        return Denial(
            so.ref,
            "spec.minReplicaCount",
            "scaledobject has only cpu/memory triggers AND minReplica is 0 (scale to zero doesn't work in this "
            "case): set minReplicaCount to 1 or more, or add a trigger that is not cpu or memory",
            "scale-to-zero-requirements-not-met",
        )
    return None


# --- AdmissionReview ------------------------------------------------------------------------------------


class ReviewError(ValueError):
    """The body is not an AdmissionReview v1 request this webhook can answer (HTTP 400)."""


@dataclass(frozen=True)
class Review:
    """The outcome of one AdmissionReview request; `response()` is the body to send back."""

    uid: str
    kind: str
    namespace: str
    #: KEDA's action label: "create", "update", "delete".
    action: str
    allowed: bool = True
    message: str = ""
    #: KEDA's reason label when refused (keda_webhook_scaled_object_validation_errors_total).
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    #: False when the request was let through unchecked (a DELETE, an update of bookkeeping only).
    validated: bool = True

    def response(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if self.allowed:
            answer["status"] = {"code": 200}
        else:
            answer["status"] = {"code": 403, "reason": "Forbidden", "message": self.message}
        if self.warnings:
            answer["warnings"] = list(self.warnings)
        return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": answer}


def _reason(error: SpecError) -> str:
    """KEDA's metric reason for a field error (its webhook's labels; `invalid-spec` for ebb's own checks)."""
    path = error.field
    if path.startswith("spec.triggers"):
        return "incorrect-triggers"
    if path in ("spec.minReplicaCount", "spec.maxReplicaCount", "spec.idleReplicaCount"):
        return "incorrect-replicas"
    if error.message.startswith("the HPA name"):
        return "hpa-name-too-long"
    if path == "metadata.name" and "characters long" in error.message:
        return "name-too-long"
    if path == "spec.fallback.behavior":
        return "scaling-modifiers-fallback"
    if path.startswith("spec.fallback"):
        return "incorrect-fallback"
    if path.startswith("spec.advanced.scalingModifiers"):
        return "scaling-modifiers"
    return "invalid-spec"


def _inline_secrets(data: Mapping[str, Any]) -> list[str]:
    """Values of a TriggerAuthentication that may be credentials written inline (Vault token, token URL params)."""
    spec = _mapping(data.get("spec"))
    found: list[str] = []
    vault = _mapping(_mapping(spec.get("hashiCorpVault")).get("credential"))
    found.extend(str(value) for value in (vault.get("token"),) if value not in (None, ""))
    oauth2 = _mapping(spec.get("oauth2"))
    found.extend(str(value) for value in _mapping(oauth2.get("tokenUrlParams")).values() if value not in (None, ""))
    return found


def _parse(data: Mapping[str, Any], label: str) -> tuple[KubeObject | None, list[SpecError]]:
    """parse_object, except that TriggerAuthentications never have a value quoted in a message."""
    model = KINDS.get((str(data.get("apiVersion")), str(data.get("kind"))))
    if model is None or model not in (TriggerAuthentication, ClusterTriggerAuthentication):
        return parse_object(dict(data), label=label)
    try:
        return model.model_validate(dict(data), by_alias=True, by_name=False), []
    except ValidationError as exc:
        secrets = _inline_secrets(data)
        return None, [
            SpecError(label, format_path(loc), redact(message, secrets))
            for loc, message in validation_problems(exc, model, echo=False)
        ]


def _bookkeeping_only(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when an update changes only what no check reads: status, finalizers, resourceVersion, kopf's
    annotations. KEDA skips the update that removes a finalizer; ebb also lets kopf record its progress on an
    object that was admitted before the webhook existed."""

    def essential(body: Mapping[str, Any]) -> dict[str, Any]:
        meta = dict(_mapping(body.get("metadata")))
        for key in _BOOKKEEPING_METADATA:
            meta.pop(key, None)
        annotations = {
            key: value
            for key, value in _mapping(meta.get("annotations")).items()
            if not key.startswith(_BOOKKEEPING_ANNOTATION_PREFIX)
        }
        meta["annotations"] = annotations
        return {key: value for key, value in body.items() if key not in ("status", "metadata")} | {"metadata": meta}

    return essential(new) == essential(old)


def _join(errors: Sequence[SpecError]) -> str:
    """Several errors of one object as one message: "ScaledObject ns/x: a: ...; b: ..."."""
    parts = [f"{e.field}: {e.message}" if e.field else e.message for e in errors]
    return f"{errors[0].obj}: {'; '.join(parts)}"


async def _check_scaled_object(
    so: ScaledObject, index: ConflictIndex | None, cluster: Cluster | None, *, dry_run: bool, update: bool
) -> tuple[Denial | None, list[str]]:
    notes: list[str] = []
    modifiers = so.spec.scaling_modifiers
    if modifiers is not None and modifiers.formula:
        names = [t.name for t in so.spec.triggers if t.name and not t.is_resource]
        try:
            compile_formula(modifiers.formula, names, so.ref)
        except SpecError as exc:
            return Denial(exc.obj, exc.field, exc.message, "scaling-modifiers"), notes
    try:
        # On an update, as the operator: a ScaledObject that arrived later does not count against this one (a
        # pair made while the webhook was off: the first may still be edited; KEDA refuses any pair).
        denial = await check_conflicts(so, index, cluster, ordered=update)
        if denial is None and cluster is not None:
            from ebb.kube.http_admission import check_workload_of_scaled_object

            # On an update, as the operator: an HTTPScaledObject that arrived later does not count against it.
            denial = await check_workload_of_scaled_object(so, cluster, ordered=update)
        if denial is None and not dry_run:  # KEDA skips this check on dry runs
            denial = await verify_cpu_memory(so, cluster)
    except ClusterUnavailable as exc:
        # As with failurePolicy Ignore: a check that cannot be made does not block the object (the operator
        # makes the conflict check again when it reconciles).
        notes.append(f"{so.ref}: not checked against the cluster: {exc}")
        denial = None
    return denial, notes


async def _review_http(obj: HTTPScaledObject | InterceptorRoute, cluster: Cluster | None, allowed: Review) -> Review:
    """Routes claimed twice, and a workload an HTTPScaledObject would scale beside a ScaledObject, are refused
    (kube/http_admission.py); a cluster that cannot be read lets it through."""
    from ebb.kube.http_admission import check_routes, check_workload_of_http

    if cluster is None:
        return allowed
    try:
        denial = await check_routes(obj, cluster)
        if denial is None and isinstance(obj, HTTPScaledObject):
            denial = await check_workload_of_http(obj, cluster, ordered=allowed.action == "update")
    except ClusterUnavailable as exc:
        return replace(allowed, warnings=(f"{obj.ref}: routes not checked against the cluster: {exc}",))
    if denial is None:
        return allowed
    return replace(allowed, allowed=False, message=str(denial), reason=denial.reason)


async def review(
    body: Any,
    *,
    kind: str,
    index: ConflictIndex | None = None,
    cluster: Cluster | None = None,
) -> Review:
    """Validate the AdmissionReview v1 `body` sent to the webhook path of `kind`. Raises ReviewError."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ReviewError(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise ReviewError("expected an AdmissionReview object")
    if body.get("apiVersion") != ADMISSION_API_VERSION or body.get("kind") != "AdmissionReview":
        raise ReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION} and kind AdmissionReview, got "
            f"{str(body.get('apiVersion'))[:60]!r} and {str(body.get('kind'))[:60]!r}"
        )
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise ReviewError("request: required field missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid: required field missing")
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise ReviewError(f"request.operation: expected CREATE, UPDATE, DELETE or CONNECT, got {operation!r}")
    namespace = _text(request.get("namespace"))
    action = str(operation).lower()
    if operation in ("DELETE", "CONNECT"):
        return Review(uid, kind, namespace, action, validated=False)
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        raise ReviewError("request.object: required for CREATE and UPDATE")
    sent_kind = _mapping(request.get("kind")).get("kind") or obj.get("kind")
    if sent_kind != kind:
        raise ReviewError(f"this path validates {kind} objects, got {str(sent_kind)[:60]!r}")
    old = request.get("oldObject")
    if operation == "UPDATE" and isinstance(old, Mapping) and _bookkeeping_only(obj, old):
        return Review(uid, kind, namespace, action, validated=False)
    data = dict(obj)
    meta = dict(_mapping(data.get("metadata")))
    if namespace and not meta.get("namespace") and kind not in _CLUSTER_SCOPED:
        meta["namespace"] = namespace  # the API server may leave it to the request on CREATE
        data["metadata"] = meta
    name = _text(meta.get("name"), _text(request.get("name"), "?"))
    if kind in _CLUSTER_SCOPED:
        label = f"{kind} {name}"
    else:
        label = f"{kind} {_text(meta.get('namespace'), 'default')}/{name}"
    parsed, errors = _parse(data, label)
    if errors or parsed is None:
        errors = errors or [SpecError(label, "", "not a valid object")]
        return Review(uid, kind, namespace, action, False, _join(errors), _reason(errors[0]))
    if isinstance(parsed, HTTPScaledObject | InterceptorRoute):
        return await _review_http(parsed, cluster, Review(uid, kind, namespace, action))
    if not isinstance(parsed, ScaledObject | ScaledJob):
        return Review(uid, kind, namespace, action)
    # KEDA checks trigger parameters only when its controller builds the scalers; ebb refuses at admission
    # what it can judge without the cluster (see docs/validation.md).
    trigger_errors = self_contained_trigger_errors(parsed)
    if trigger_errors:
        return Review(uid, kind, namespace, action, False, _join(trigger_errors), "incorrect-triggers")
    notes = [
        f"{parsed.ref}: spec.triggers[{index}].type: {trigger.type!r} is a KEDA trigger type that ebb does not "
        "implement yet; ebb's operator will not scale on it"
        for index, trigger in enumerate(parsed.spec.triggers)
        if trigger.type not in available_types()
    ]
    if isinstance(parsed, ScaledJob):
        warnings = [str(SpecError(parsed.ref, format_path(loc), message)) for loc, message in parsed.warnings()]
        return Review(uid, kind, namespace, action, warnings=tuple(warnings + notes))
    dry_run = request.get("dryRun") is True
    denial, cluster_notes = await _check_scaled_object(
        parsed, index, cluster, dry_run=dry_run, update=operation == "UPDATE"
    )
    notes += cluster_notes
    if denial is not None:
        return Review(uid, kind, namespace, action, False, str(denial), denial.reason)
    warnings = [str(SpecError(parsed.ref, format_path(loc), message)) for loc, message in parsed.warnings()]
    return Review(uid, kind, namespace, action, warnings=tuple(warnings + notes))


__all__ = [
    "ADMISSION_API_VERSION",
    "HPA_OWNERSHIP_ANNOTATION",
    "KINDS_BY_PATH",
    "Arrival",
    "Cluster",
    "ClusterUnavailable",
    "ConflictIndex",
    "Denial",
    "Review",
    "ReviewError",
    "arrival",
    "check_conflicts",
    "namespace_index",
    "review",
    "verify_cpu_memory",
]
