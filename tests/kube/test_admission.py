"""KEDA's admission checks without a server: the conflict index and `review` over AdmissionReview bodies.

The cluster the checks read is `DictCluster`, a real `admission.Cluster` over a dict of manifests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from ebb.kube.admission import (
    Cluster,
    ClusterUnavailable,
    ConflictIndex,
    Denial,
    ReviewError,
    check_conflicts,
    review,
    verify_cpu_memory,
)
from ebb.spec import parse_object
from ebb.spec.models import ScaledObject

NS = "ns"


class DictCluster(Cluster):
    """Manifests by (apiVersion, kind, namespace, name); counts the reads so tests can tell lookups from scans."""

    def __init__(self, *objects: Mapping[str, Any], failing: bool = False) -> None:
        self.objects: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
        self.gets: list[tuple[str, str]] = []
        self.lists: list[tuple[str, str]] = []
        self.failing = failing
        for obj in objects:
            self.put(obj)

    def put(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["apiVersion"], obj["kind"], meta.get("namespace", NS), meta["name"])] = obj

    def drop(self, api_version: str, kind: str, name: str) -> None:
        del self.objects[(api_version, kind, NS, name)]

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.gets.append((kind, name))
        if self.failing:
            raise ClusterUnavailable(f"cannot read {kind} {namespace}/{name}: connection refused")
        return self.objects.get((api_version, kind, namespace, name))

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        self.lists.append((kind, namespace))
        if self.failing:
            raise ClusterUnavailable(f"cannot list {kind} in namespace {namespace}: connection refused")
        return [o for (v, k, n, _), o in self.objects.items() if (v, k, n) == (api_version, kind, namespace)]


# --- manifests -------------------------------------------------------------------------------------------


def so_body(
    name: str = "worker",
    target: str = "web",
    *,
    kind: str = "Deployment",
    api_version: str = "apps/v1",
    hpa_name: str | None = None,
    annotations: dict[str, str] | None = None,
    triggers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
        "spec": {
            "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": target},
            "triggers": triggers or [{"type": "redis", "metadata": {"listName": "jobs", "address": "redis:6379"}}],
            **spec,
        },
    }
    if hpa_name is not None:
        body["spec"]["advanced"] = {"horizontalPodAutoscalerConfig": {"name": hpa_name}}
    return body


def scaled_object(*args: Any, **kwargs: Any) -> ScaledObject:
    obj, errors = parse_object(so_body(*args, **kwargs))
    assert not errors and isinstance(obj, ScaledObject), errors
    return obj


def hpa_body(
    name: str,
    target: str = "web",
    *,
    kind: str = "Deployment",
    api_version: str | None = "apps/v1",
    owner: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": kind, "name": target}
    if api_version is not None:
        ref["apiVersion"] = api_version
    meta: dict[str, Any] = {"name": name, "namespace": NS, "annotations": annotations or {}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": owner}]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {"scaleTargetRef": ref, "minReplicas": 1, "maxReplicas": 10},
    }


def deployment(
    name: str = "web", *, containers: list[dict[str, Any]] | None = None, kind: str = "Deployment"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": {"template": {"spec": {"containers": containers or [{"name": "app"}]}}},
    }


def limit_range(default: dict[str, Any], *, item_type: str = "Container") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "defaults", "namespace": NS},
        "spec": {"limits": [{"type": item_type, **default}]},
    }


CPU = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
MEMORY = {"type": "memory", "metricType": "AverageValue", "metadata": {"value": "200Mi"}}
REDIS = {"type": "redis", "metadata": {"listName": "jobs", "address": "redis:6379"}}


def index_of(*bodies: dict[str, Any]) -> ConflictIndex:
    index = ConflictIndex()
    index.replace(
        [b for b in bodies if b["kind"] == "ScaledObject"], [b for b in bodies if b["kind"] != "ScaledObject"]
    )
    return index


# --- ConflictIndex -----------------------------------------------------------------------------------------


def test_second_scaled_object_on_a_workload_is_refused_with_kedas_message() -> None:
    index = index_of(so_body("first"))
    denial = index.check(scaled_object("worker"))
    assert isinstance(denial, Denial)
    assert (denial.obj, denial.field, denial.reason) == (
        "ScaledObject ns/worker",
        "spec.scaleTargetRef",
        "other-scaled-object",
    )
    assert denial.message == (
        "the workload 'web' of type 'apps/v1.Deployment' is already managed by the ScaledObject 'first'"
    )
    assert denial.conflicting == ("ScaledObject", NS, "first")


@pytest.mark.parametrize(
    "other",
    [
        so_body("worker"),  # itself: an update
        so_body("first", "api"),  # another workload
        so_body("first", kind="StatefulSet"),  # a StatefulSet of the same name is another workload
        so_body("first", api_version="example.com/v1"),  # a Deployment of another API group
        {**so_body("first"), "metadata": {"name": "first", "namespace": "elsewhere"}},
        {
            **so_body("first"),
            "metadata": {"name": "first", "namespace": NS, "deletionTimestamp": "2025-01-01T00:00:00Z"},
        },
    ],
    ids=["itself", "other-workload", "other-kind", "other-group", "other-namespace", "being-deleted"],
)
def test_scaled_objects_that_do_not_conflict(other: dict[str, Any]) -> None:
    assert index_of(other).check(scaled_object("worker")) is None


def test_target_type_names_the_resolved_kind() -> None:
    denial = index_of(so_body("first")).check(scaled_object("worker"), target_type="apps/v1.Deployment[x]")
    assert denial is not None and "of type 'apps/v1.Deployment[x]'" in denial.message


def test_an_update_that_moves_a_scaled_object_frees_its_old_workload() -> None:
    index = index_of(so_body("first"))
    assert index.upsert_scaled_object(so_body("first", "api")) is True
    assert index.upsert_scaled_object(so_body("first", "api")) is False  # unchanged
    assert index.check(scaled_object("worker")) is None
    assert index.check(scaled_object("worker", "api")) is not None


def test_removed_scaled_object_no_longer_conflicts() -> None:
    index = index_of(so_body("first"))
    assert index.apply("ScaledObject", so_body("first"), deleted=True) is True
    assert index.check(scaled_object("worker")) is None
    assert len(index) == 0


@pytest.mark.parametrize(
    ("other", "mine", "field"),
    [
        (
            so_body("first", "api", hpa_name="shared"),
            {"hpa_name": "shared"},
            "spec.advanced.horizontalPodAutoscalerConfig.name",
        ),
        (so_body("first", "api", hpa_name="keda-hpa-worker"), {}, "metadata.name"),
    ],
    ids=["custom-names", "default-name"],
)
def test_two_scaled_objects_cannot_share_an_hpa_name(other: dict[str, Any], mine: dict[str, Any], field: str) -> None:
    denial = index_of(other).check(scaled_object("worker", **mine))
    assert denial is not None
    assert (denial.field, denial.reason) == (field, "other-scaled-object-hpa")
    assert "is already managed by the ScaledObject 'first'" in denial.message
    assert denial.message.startswith("the HPA '")


def test_foreign_hpa_on_the_workload_is_refused() -> None:
    denial = index_of(hpa_body("theirs")).check(scaled_object("worker"))
    assert denial is not None
    assert (denial.field, denial.reason) == ("spec.scaleTargetRef", "other-hpa")
    assert denial.message == "the workload 'web' of type 'apps/v1.Deployment' is already managed by the hpa 'theirs'"


def test_hpa_without_api_version_in_its_target_still_counts() -> None:
    assert index_of(hpa_body("theirs", api_version=None)).check(scaled_object("worker")) is not None


@pytest.mark.parametrize(
    ("hpa", "annotations", "hpa_name"),
    [
        (hpa_body("keda-hpa-worker", owner="worker"), None, None),  # its own HPA
        (hpa_body("theirs", annotations={"validations.keda.sh/hpa-ownership": "false"}), None, None),
        (hpa_body("theirs"), {"scaledobject.keda.sh/transfer-hpa-ownership": "true"}, "theirs"),
        (hpa_body("theirs", "api"), None, None),
        (hpa_body("theirs", kind="StatefulSet"), None, None),
    ],
    ids=["owned", "ownership-annotation", "transfer", "other-workload", "other-kind"],
)
def test_hpas_that_do_not_conflict(
    hpa: dict[str, Any], annotations: dict[str, str] | None, hpa_name: str | None
) -> None:
    assert index_of(hpa).check(scaled_object("worker", annotations=annotations, hpa_name=hpa_name)) is None


def test_transfer_needs_the_hpa_named_in_advanced_settings() -> None:
    so = scaled_object("worker", annotations={"scaledobject.keda.sh/transfer-hpa-ownership": "true"})
    denial = index_of(hpa_body("theirs")).check(so)
    assert denial is not None
    assert (denial.field, denial.reason) == (
        "spec.advanced.horizontalPodAutoscalerConfig.name",
        "transfer-ownership-missing-hpa-name",
    )
    assert "the existing hpa 'theirs' for workload 'web'" in denial.message
    assert "must be specified by name in advanced settings" in denial.message


def test_hpa_owned_by_another_scaled_object_conflicts() -> None:
    denial = index_of(hpa_body("keda-hpa-old", owner="old")).check(scaled_object("worker"))
    assert denial is not None and denial.reason == "other-hpa"


def test_hpa_events_update_and_remove() -> None:
    index = index_of()
    assert index.apply("HorizontalPodAutoscaler", hpa_body("theirs")) is True
    assert index.check(scaled_object("worker")) is not None
    index.apply("HorizontalPodAutoscaler", hpa_body("theirs", "api"))  # retargeted
    assert index.check(scaled_object("worker")) is None
    index.apply("HorizontalPodAutoscaler", hpa_body("theirs"), deleted=False)
    index.apply("HorizontalPodAutoscaler", hpa_body("theirs"), deleted=True)
    assert index.check(scaled_object("worker")) is None


def test_malformed_bodies_are_ignored() -> None:
    index = ConflictIndex()
    for body in ({}, {"metadata": None}, {"metadata": {"name": ""}}, {"metadata": {"name": "x"}, "spec": "nonsense"}):
        index.apply("ScaledObject", body)
        index.apply("HorizontalPodAutoscaler", body)
    assert index.check(scaled_object("worker")) is None


def test_replace_makes_ready_and_clear_forgets() -> None:
    index = ConflictIndex()
    assert not index.ready
    index.replace([so_body("first")], [hpa_body("theirs")])
    assert index.ready and len(index) == 2
    index.clear()
    assert not index.ready and len(index) == 0
    assert index.check(scaled_object("worker")) is None


# --- check_conflicts: index, listing fallback, confirmation ---------------------------------------------------


async def test_ready_index_answers_without_listing() -> None:
    cluster = DictCluster(so_body("first"))
    index = index_of(so_body("first"))
    denial = await check_conflicts(scaled_object("worker"), index, cluster)
    assert denial is not None and denial.reason == "other-scaled-object"
    assert cluster.lists == []
    assert cluster.gets == [("ScaledObject", "first")]  # the hit is confirmed, nothing else is read
    assert await check_conflicts(scaled_object("worker", "api"), index, cluster) is None
    assert cluster.gets == [("ScaledObject", "first")]  # no hit, no read


@pytest.mark.parametrize("index", [None, ConflictIndex()], ids=["no-index", "index-not-loaded"])
async def test_without_a_loaded_index_the_namespace_is_listed(index: ConflictIndex | None) -> None:
    cluster = DictCluster(so_body("first"), hpa_body("theirs", "api"))
    assert (await check_conflicts(scaled_object("worker"), index, cluster)) is not None
    denial = await check_conflicts(scaled_object("other", "api"), index, cluster)
    assert denial is not None and denial.reason == "other-hpa"
    assert ("ScaledObject", NS) in cluster.lists and ("HorizontalPodAutoscaler", NS) in cluster.lists


async def test_namespace_outside_the_index_is_listed() -> None:
    index = ConflictIndex()
    index.replace([], [], namespaces=["team-a"])
    assert index.covers("team-a") and not index.covers(NS)
    cluster = DictCluster(so_body("first"))
    assert (await check_conflicts(scaled_object("worker"), index, cluster)) is not None
    assert cluster.lists == [("ScaledObject", NS), ("HorizontalPodAutoscaler", NS)]


async def test_stale_entries_are_corrected_before_refusing() -> None:
    index = index_of(so_body("gone"), so_body("moved"), hpa_body("gone-hpa"))
    # The cluster no longer has "gone" nor "gone-hpa", and "moved" now scales another workload.
    cluster = DictCluster(so_body("moved", "api"))
    assert await check_conflicts(scaled_object("worker"), index, cluster) is None
    assert index.check(scaled_object("worker")) is None  # the index was corrected, not just bypassed
    assert index.check(scaled_object("worker", "api")) is not None


async def test_unreadable_cluster_is_reported() -> None:
    with pytest.raises(ClusterUnavailable, match="connection refused"):
        await check_conflicts(scaled_object("worker"), None, DictCluster(failing=True))


# --- verify_cpu_memory ------------------------------------------------------------------------------------------


async def test_cpu_trigger_needs_a_cpu_request_on_every_container() -> None:
    cluster = DictCluster(
        deployment(containers=[{"name": "app", "resources": {"requests": {"cpu": "100m"}}}, {"name": "sidecar"}])
    )
    denial = await verify_cpu_memory(scaled_object(triggers=[REDIS, CPU]), cluster)
    assert denial is not None
    assert (denial.obj, denial.field, denial.reason) == (
        "ScaledObject ns/worker",
        "spec.triggers[1]",
        "missing-requests",
    )
    assert "has a cpu trigger but the container 'sidecar' of Deployment 'web' doesn't have the cpu request" in (
        denial.message
    )
    assert "resources.requests.cpu" in denial.message


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"memory": "128Mi"}},
        {"limits": {"memory": "256Mi"}},  # a limit alone is the request Kubernetes defaults to
        {"requests": {"memory": "0"}, "limits": {"memory": "1Gi"}},
    ],
)
async def test_memory_request_or_limit_satisfies_a_memory_trigger(resources: dict[str, Any]) -> None:
    cluster = DictCluster(deployment(containers=[{"name": "app", "resources": resources}]))
    assert await verify_cpu_memory(scaled_object(triggers=[REDIS, MEMORY]), cluster) is None


async def test_zero_request_is_no_request() -> None:
    cluster = DictCluster(deployment(containers=[{"name": "app", "resources": {"requests": {"cpu": "0"}}}]))
    denial = await verify_cpu_memory(scaled_object(triggers=[REDIS, CPU]), cluster)
    assert denial is not None and denial.reason == "missing-requests"


async def test_container_name_limits_the_check_to_that_container() -> None:
    containers = [{"name": "app", "resources": {"requests": {"cpu": "1"}}}, {"name": "sidecar"}]
    cluster = DictCluster(deployment(containers=containers))
    named = {**CPU, "metadata": {"value": "60", "containerName": "app"}}
    assert await verify_cpu_memory(scaled_object(triggers=[REDIS, named]), cluster) is None


async def test_limit_range_default_satisfies_the_request() -> None:
    cluster = DictCluster(deployment(), limit_range({"defaultRequest": {"cpu": "50m"}}))
    assert await verify_cpu_memory(scaled_object(triggers=[REDIS, CPU]), cluster) is None
    pod_level = DictCluster(deployment(), limit_range({"default": {"cpu": "50m"}}, item_type="Pod"))
    assert await verify_cpu_memory(scaled_object(triggers=[REDIS, CPU]), pod_level) is not None


async def test_statefulset_is_checked_too() -> None:
    cluster = DictCluster(deployment(kind="StatefulSet"))
    so = scaled_object(kind="StatefulSet", triggers=[REDIS, CPU])
    assert (await verify_cpu_memory(so, cluster)) is not None


async def test_only_cpu_memory_triggers_cannot_scale_to_zero() -> None:
    cluster = DictCluster(deployment(containers=[{"name": "app", "resources": {"requests": {"cpu": "1"}}}]))
    denial = await verify_cpu_memory(scaled_object(triggers=[CPU]), cluster)
    assert denial is not None
    assert (denial.field, denial.reason) == ("spec.minReplicaCount", "scale-to-zero-requirements-not-met")
    assert await verify_cpu_memory(scaled_object(triggers=[CPU], minReplicaCount=1), cluster) is None


async def test_missing_target_skips_the_request_check_only() -> None:
    cluster = DictCluster()
    assert await verify_cpu_memory(scaled_object(triggers=[CPU], minReplicaCount=1), cluster) is None
    assert cluster.gets == [("Deployment", "web")]
    denial = await verify_cpu_memory(scaled_object(triggers=[CPU]), cluster)
    assert denial is not None and denial.reason == "scale-to-zero-requirements-not-met"


async def test_other_targets_and_other_triggers_are_not_read() -> None:
    cluster = DictCluster()
    rollout = scaled_object(kind="Rollout", api_version="argoproj.io/v1alpha1", triggers=[CPU])
    assert await verify_cpu_memory(rollout, cluster) is None  # KEDA checks Deployments and StatefulSets only
    assert await verify_cpu_memory(scaled_object(), cluster) is None
    assert cluster.gets == []


# --- review -------------------------------------------------------------------------------------------------------


def admission(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    kind: str = "ScaledObject",
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "keda.sh", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "keda.sh", "version": "v1alpha1", "resource": kind.lower() + "s"},
            "name": (obj or {}).get("metadata", {}).get("name", ""),
            "namespace": "" if kind == "ClusterTriggerAuthentication" else NS,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }


async def test_valid_object_is_allowed_and_the_uid_echoed() -> None:
    outcome = await review(json.dumps(admission(so_body())).encode(), kind="ScaledObject", index=index_of())
    assert outcome.allowed and outcome.validated
    assert (outcome.kind, outcome.namespace, outcome.action) == ("ScaledObject", NS, "create")
    assert outcome.response() == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True, "status": {"code": 200}},
    }


async def test_conflict_is_refused_with_status_403() -> None:
    outcome = await review(admission(so_body()), kind="ScaledObject", index=index_of(hpa_body("theirs")))
    response = outcome.response()["response"]
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "ScaledObject ns/worker: spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' "
        "is already managed by the hpa 'theirs'",
    }
    assert outcome.reason == "other-hpa"


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"minReplicaCount": 5, "maxReplicaCount": 2}, "spec.minReplicaCount", "incorrect-replicas"),
        ({"minReplicaCount": 1, "idleReplicaCount": 1}, "spec.idleReplicaCount", "incorrect-replicas"),
        (
            {"triggers": [{**REDIS, "name": "a"}, {**REDIS, "name": "a"}]},
            "spec.triggers[1].name",
            "incorrect-triggers",
        ),
        ({"triggers": [{**CPU, "useCachedMetrics": True}]}, "spec.triggers[0].useCachedMetrics", "incorrect-triggers"),
        (
            {
                "advanced": {"scalingModifiers": {"formula": "a + nope", "target": "5"}},
                "triggers": [{**REDIS, "name": "a"}],
            },
            "spec.advanced.scalingModifiers.formula",
            "scaling-modifiers",
        ),
        (
            {"advanced": {"scalingModifiers": {"formula": "a", "target": "-1"}}, "triggers": [{**REDIS, "name": "a"}]},
            "spec.advanced.scalingModifiers.target",
            "scaling-modifiers",
        ),
        (
            {"fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "scalingModifiers"}},
            "spec.fallback.behavior",
            "scaling-modifiers-fallback",
        ),
        (
            {"fallback": {"failureThreshold": 3, "replicas": 2}, "triggers": [CPU], "minReplicaCount": 1},
            "spec.fallback",
            "incorrect-fallback",
        ),
        ({"pollingInterval": "often"}, "spec.pollingInterval", "invalid-spec"),
    ],
)
async def test_field_checks_name_object_field_and_reason(spec: dict[str, Any], field: str, reason: str) -> None:
    body = so_body()
    body["spec"].update(spec)
    outcome = await review(admission(body), kind="ScaledObject", index=index_of())
    assert not outcome.allowed
    assert outcome.message.startswith(f"ScaledObject ns/worker: {field}: "), outcome.message
    assert outcome.reason == reason


@pytest.mark.parametrize(
    ("name", "hpa_name", "reason"),
    [
        ("w" * 64, None, "name-too-long"),
        ("w" * 60, None, "hpa-name-too-long"),
        ("worker", "h" * 64, "hpa-name-too-long"),
    ],
)
async def test_names_too_long_for_labels(name: str, hpa_name: str | None, reason: str) -> None:
    outcome = await review(admission(so_body(name, hpa_name=hpa_name)), kind="ScaledObject", index=index_of())
    assert not outcome.allowed and outcome.reason == reason


async def test_irrelevant_settings_are_warnings() -> None:
    body = so_body(minReplicaCount=2, pollingInterval=5, cooldownPeriod=30)
    outcome = await review(admission(body), kind="ScaledObject", index=index_of())
    assert outcome.allowed
    assert [w.split(": ")[1] for w in outcome.warnings] == ["spec.pollingInterval", "spec.cooldownPeriod"]
    assert all(w.startswith("ScaledObject ns/worker: ") for w in outcome.warnings)
    assert outcome.response()["response"]["warnings"] == list(outcome.warnings)
    plain = await review(admission(so_body()), kind="ScaledObject", index=index_of())
    assert "warnings" not in plain.response()["response"]


async def test_cpu_check_reads_the_target_and_skips_on_dry_run() -> None:
    cluster = DictCluster(deployment())
    body = so_body(triggers=[REDIS, CPU])
    outcome = await review(admission(body), kind="ScaledObject", index=index_of(), cluster=cluster)
    assert not outcome.allowed and outcome.reason == "missing-requests"
    assert "container 'app'" in outcome.message
    dry = await review(admission(body, dry_run=True), kind="ScaledObject", index=index_of(), cluster=cluster)
    assert dry.allowed


async def test_only_cpu_on_a_custom_target_is_a_warning_not_a_refusal() -> None:
    body = so_body(kind="Rollout", api_version="argoproj.io/v1alpha1", triggers=[CPU])
    outcome = await review(admission(body), kind="ScaledObject", index=index_of(), cluster=DictCluster())
    assert outcome.allowed
    assert any("spec.minReplicaCount" in w for w in outcome.warnings)


async def test_unreadable_cluster_allows_with_a_warning() -> None:
    outcome = await review(admission(so_body()), kind="ScaledObject", cluster=DictCluster(failing=True))
    assert outcome.allowed
    assert outcome.warnings == (
        "ScaledObject ns/worker: not checked against the cluster: cannot list ScaledObject in namespace ns: "
        "connection refused",
    )


async def test_namespace_comes_from_the_request_when_the_object_has_none() -> None:
    body = so_body()
    del body["metadata"]["namespace"]
    outcome = await review(admission(body), kind="ScaledObject", index=index_of(so_body("first")))
    assert outcome.message.startswith("ScaledObject ns/worker: spec.scaleTargetRef: ")


async def test_delete_is_not_validated() -> None:
    outcome = await review(admission(None, operation="DELETE"), kind="ScaledObject", index=index_of(so_body("x")))
    assert outcome.allowed and not outcome.validated and outcome.action == "delete"
    assert outcome.response()["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"


async def test_update_of_finalizers_status_or_kopf_annotations_is_not_validated() -> None:
    # An object admitted before the webhook existed, now in conflict: its bookkeeping must still go through.
    index = index_of(so_body("first"))
    old = so_body(annotations={"team": "a"})
    old["metadata"]["finalizers"] = ["finalizer.keda.sh"]
    for change in (
        lambda b: b["metadata"].update(finalizers=[]),
        lambda b: b.update(status={"conditions": []}),
        lambda b: b["metadata"]["annotations"].update({"ebb.dev/last-handled-configuration": "{}"}),
        lambda b: b["metadata"].update(resourceVersion="42", generation=3),
    ):
        new = copy.deepcopy(old)
        change(new)
        outcome = await review(admission(new, operation="UPDATE", old=old), kind="ScaledObject", index=index)
        assert outcome.allowed and not outcome.validated
    for change in (
        lambda b: b["spec"].update(maxReplicaCount=7),
        lambda b: b["metadata"]["annotations"].update(team="b"),
    ):
        new = copy.deepcopy(old)
        change(new)
        outcome = await review(admission(new, operation="UPDATE", old=old), kind="ScaledObject", index=index)
        assert outcome.validated and not outcome.allowed and outcome.action == "update"


async def test_scaled_job_trigger_names_are_checked() -> None:
    job = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {"name": "batch", "namespace": NS},
        "spec": {
            "jobTargetRef": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "triggers": [{**REDIS, "name": "q"}, {**REDIS, "name": "q"}],
        },
    }
    outcome = await review(admission(job, kind="ScaledJob"), kind="ScaledJob")
    assert not outcome.allowed and outcome.reason == "incorrect-triggers"
    assert outcome.message.startswith("ScaledJob ns/batch: spec.triggers[1].name: ")
    job["spec"]["triggers"] = [REDIS]
    assert (await review(admission(job, kind="ScaledJob"), kind="ScaledJob")).allowed


def trigger_auth(spec: dict[str, Any], *, cluster_scoped: bool = False) -> dict[str, Any]:
    kind = "ClusterTriggerAuthentication" if cluster_scoped else "TriggerAuthentication"
    meta = {"name": "auth"} if cluster_scoped else {"name": "auth", "namespace": NS}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"podIdentity": {"provider": "azure-workload", "identityId": ""}}, "spec.podIdentity.identityId"),
        (
            {"podIdentity": {"provider": "azure-workload", "identityAuthorityHost": "https://login"}},
            "spec.podIdentity.identityTenantId",
        ),
        ({"podIdentity": {"provider": "aws", "externalID": "x"}}, "spec.podIdentity.externalID"),
        (
            {"podIdentity": {"provider": "aws", "roleArn": "arn", "identityOwner": "workload"}},
            "spec.podIdentity.roleArn",
        ),
        ({"oauth2": {"type": "clientCredentials", "clientId": "id", "tokenUrl": "ftp://x"}}, "spec.oauth2.tokenUrl"),
        ({"oauth2": {"type": "clientCredentials", "tokenUrl": "https://idp/token"}}, "spec.oauth2.clientId"),
    ],
)
@pytest.mark.parametrize("cluster_scoped", [False, True], ids=["ta", "cta"])
async def test_trigger_authentication_checks(spec: dict[str, Any], field: str, cluster_scoped: bool) -> None:
    kind = "ClusterTriggerAuthentication" if cluster_scoped else "TriggerAuthentication"
    outcome = await review(admission(trigger_auth(spec, cluster_scoped=cluster_scoped), kind=kind), kind=kind)
    assert not outcome.allowed
    obj = f"{kind} auth" if cluster_scoped else f"{kind} ns/auth"
    assert outcome.message.startswith(f"{obj}: {field}: "), outcome.message


async def test_trigger_authentication_values_are_never_quoted() -> None:
    secret = 31337420
    spec = {
        "hashiCorpVault": {
            "address": "https://vault:8200",
            "authentication": "token",
            "credential": {"token": secret},
            "mount": 98765432,
            "secrets": [{"parameter": "password", "path": "kv/db", "key": "pw"}],
        },
        "oauth2": {
            "type": "clientCredentials",
            "clientId": "id",
            "tokenUrl": "https://idp/token",
            "tokenUrlParams": {"audience": ["s3cr3t-aud"]},
        },
    }
    outcome = await review(admission(trigger_auth(spec), kind="TriggerAuthentication"), kind="TriggerAuthentication")
    text = json.dumps(outcome.response())
    assert not outcome.allowed
    assert "spec.hashiCorpVault.credential.token: expected a string" in text
    assert "spec.hashiCorpVault.mount: expected a string, got an integer" in text
    assert str(secret) not in text and "s3cr3t" not in text and "98765432" not in text


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "expected an AdmissionReview object"),
        ({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}, "admission.k8s.io/v1"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request: required"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}, "uid"),
        ({**admission(so_body()), "request": {**admission(so_body())["request"], "operation": "PATCH"}}, "operation"),
        ({**admission(so_body()), "request": {**admission(so_body())["request"], "object": "x"}}, "request.object"),
        (admission(so_body(), kind="ScaledJob"), "this path validates ScaledObject objects"),
    ],
)
async def test_malformed_reviews_raise(body: Any, problem: str) -> None:
    with pytest.raises(ReviewError, match=problem):
        await review(body, kind="ScaledObject")


# --- triggers: types and parameters --------------------------------------------------------------------


def _with_trigger(trigger: dict[str, Any], kind: str = "ScaledObject") -> dict[str, Any]:
    body = so_body()
    if kind == "ScaledJob":
        body = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledJob",
            "metadata": {"name": "jobs", "namespace": NS},
            "spec": {"jobTargetRef": {"template": {"spec": {"containers": [{"name": "j", "image": "j:1"}]}}}},
        }
    body["spec"]["triggers"] = [trigger]
    return body


@pytest.mark.parametrize("kind", ["ScaledObject", "ScaledJob"])
async def test_unknown_trigger_type_is_refused_with_a_suggestion(kind: str) -> None:
    trigger = {"type": "reddis", "metadata": {"address": "r:6379", "listName": "q"}}
    outcome = await review(admission(_with_trigger(trigger, kind), kind=kind), kind=kind, index=index_of())
    assert not outcome.allowed
    assert "spec.triggers[0].type" in outcome.message and "did you mean 'redis'?" in outcome.message


@pytest.mark.parametrize("kind", ["ScaledObject", "ScaledJob"])
async def test_bad_trigger_parameters_in_metadata_are_refused(kind: str) -> None:
    trigger = {"type": "redis", "metadata": {"address": "r:6379", "listName": "q", "enableTLS": "yes"}}
    outcome = await review(admission(_with_trigger(trigger, kind), kind=kind), kind=kind, index=index_of())
    assert not outcome.allowed and outcome.reason == "incorrect-triggers"
    assert "spec.triggers[0].metadata.enableTLS" in outcome.message


async def test_triggers_with_credentials_elsewhere_are_left_to_the_operator() -> None:
    # Required parameters may come from the TriggerAuthentication's Secrets, which the webhook does not read.
    for trigger in (
        {"type": "redis", "metadata": {"listName": "q"}, "authenticationRef": {"name": "redis-auth"}},
        {"type": "redis", "metadata": {"listName": "q", "addressFromEnv": "REDIS_ADDRESS"}},
    ):
        outcome = await review(admission(_with_trigger(trigger)), kind="ScaledObject", index=index_of())
        assert outcome.allowed, trigger


async def test_unknown_parameters_and_keda_only_types_are_warnings() -> None:
    body = so_body()
    body["spec"]["triggers"] = [
        {"type": "redis", "metadata": {"address": "r:6379", "listName": "q", "listLenght": "20"}},
        {"type": "kafka", "metadata": {"bootstrapServers": "k:9092", "consumerGroup": "g", "topic": "t"}},
    ]
    outcome = await review(admission(body), kind="ScaledObject", index=index_of())
    assert outcome.allowed
    assert any("listLenght" in w and "did you mean 'listLength'?" in w for w in outcome.warnings)
    assert any("'kafka' is a KEDA trigger type that ebb does not implement" in w for w in outcome.warnings)


# --- by arrival: the operator, and the webhook on an update -------------------------------------------------------


def created(body: dict[str, Any], at: str) -> dict[str, Any]:
    body["metadata"]["creationTimestamp"] = at
    return body


def parsed(body: dict[str, Any]) -> ScaledObject:
    obj, errors = parse_object(copy.deepcopy(body))
    assert not errors and isinstance(obj, ScaledObject), errors
    return obj


def test_ordered_the_first_scaled_object_on_a_workload_keeps_it_the_later_is_refused_naming_both() -> None:
    """Made while the webhook was off: by creationTimestamp ("zulu" first, though its name sorts last)."""
    first = created(so_body("zulu"), "2026-01-01T00:00:00Z")
    later = created(so_body("alpha"), "2026-01-01T00:00:07Z")
    index = index_of(first, later)
    assert index.check(parsed(first), ordered=True) is None
    denial = index.check(parsed(later), ordered=True)
    assert denial is not None and (denial.field, denial.reason) == ("spec.scaleTargetRef", "other-scaled-object")
    assert denial.message == (
        "the workload 'web' of type 'apps/v1.Deployment' is already managed by the ScaledObject 'zulu', created "
        f"before ScaledObject {NS}/alpha (which therefore does not scale it)"
    )
    # Unordered (the webhook on a create, as KEDA): each refuses the other.
    assert index.check(parsed(first)) is not None and index.check(parsed(later)) is not None
    # The same second: the name decides.
    same = index_of(created(so_body("zulu"), "2026-01-01T00:00:00Z"), created(so_body("alpha"), "2026-01-01T00:00:00Z"))
    assert same.check(parsed(created(so_body("alpha"), "2026-01-01T00:00:00Z")), ordered=True) is None
    assert same.check(parsed(created(so_body("zulu"), "2026-01-01T00:00:00Z")), ordered=True) is not None


def test_ordered_the_first_scaled_object_keeps_a_shared_hpa_name() -> None:
    first = created(so_body("zulu", "api", hpa_name="shared"), "2026-01-01T00:00:00Z")
    later = created(so_body("alpha", "web", hpa_name="shared"), "2026-01-01T00:01:00Z")
    index = index_of(first, later)
    assert index.check(parsed(first), ordered=True) is None
    denial = index.check(parsed(later), ordered=True)
    assert denial is not None and denial.reason == "other-scaled-object-hpa"
    assert denial.message.startswith("the HPA 'shared' is already managed by the ScaledObject 'zulu', created before")
    assert index.check(parsed(first)) is not None  # KEDA's webhook on a create: any other counts


def test_ordered_an_hpa_of_a_later_or_a_deleted_scaled_object_does_not_count() -> None:
    """The HPA of the object that lost (it deletes it), or of one being deleted (garbage-collected next); a foreign
    HPA, or one of an earlier ScaledObject, still counts."""
    mine = created(so_body("worker"), "2026-01-01T00:01:00Z")
    later = created(so_body("zulu", "api"), "2026-01-01T00:02:00Z")
    going = created(so_body("going", "api"), "2026-01-01T00:00:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:03:00Z"
    earlier = created(so_body("early", "api"), "2026-01-01T00:00:00Z")
    for owner, counts in [("zulu", False), ("going", False), ("gone", False), ("early", True)]:
        index = index_of(mine, later, going, earlier, hpa_body(f"keda-hpa-{owner}", owner=owner))
        denial = index.check(parsed(mine), ordered=True)
        assert (denial is not None) is counts, owner
        assert index.check(parsed(mine)) is not None, owner  # unordered, as KEDA: every other owner counts
    assert index_of(mine, hpa_body("theirs")).check(parsed(mine), ordered=True) is not None


async def test_webhook_update_of_the_first_scaled_object_is_allowed_of_the_later_refused() -> None:
    """Consistent with the HTTPScaledObject rule: a create is refused whatever the times; an update only for the
    object that arrived second (so the first can still be edited)."""
    first = created(so_body("zulu"), "2026-01-01T00:00:00Z")
    later = created(so_body("alpha"), "2026-01-01T00:00:07Z")
    index = index_of(first, later)

    async def update(body: dict[str, Any]) -> Any:
        old = copy.deepcopy(body)
        old["spec"]["minReplicaCount"] = 3
        return await review(admission(body, operation="UPDATE", old=old), kind="ScaledObject", index=index)

    assert (await update(first)).allowed
    refused = await update(later)
    assert not refused.allowed and refused.reason == "other-scaled-object"
    assert refused.message.startswith(
        f"ScaledObject {NS}/alpha: spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' is already "
        "managed by the ScaledObject 'zulu'"
    )
    created_now = await review(admission(first), kind="ScaledObject", index=index_of(later))
    assert not created_now.allowed
    assert created_now.message == (
        f"ScaledObject {NS}/zulu: spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' is already "
        "managed by the ScaledObject 'alpha'"
    )
