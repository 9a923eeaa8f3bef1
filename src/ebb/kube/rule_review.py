"""The audited KEDA rules that need the cluster's state (ebb.spec.keda_rules, outcome `cluster`), put to ebb's
admission webhook against an in-memory cluster that holds the rule's `existing` objects."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ebb.kube.admission import KINDS_BY_PATH, Cluster, review
from ebb.runtime.check import Finding
from ebb.spec.keda_rules import Rule, manifests


class MemoryCluster(Cluster):
    """A cluster made of manifests: what `get` and `list` return."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = list(objects)

    def _matches(self, obj: Mapping[str, Any], api_version: str, kind: str, namespace: str) -> bool:
        meta = obj.get("metadata") or {}
        return (
            obj.get("apiVersion") == api_version
            and obj.get("kind") == kind
            and (meta.get("namespace") or "default") == namespace
        )

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        for obj in self.objects:
            if self._matches(obj, api_version, kind, namespace) and (obj.get("metadata") or {}).get("name") == name:
                return obj
        return None

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        return [obj for obj in self.objects if self._matches(obj, api_version, kind, namespace)]


def admission_request(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "keda.sh", "version": "v1alpha1", "kind": obj["kind"]},
            "operation": "CREATE",
            "namespace": meta.get("namespace", "default"),
            "name": meta.get("name"),
            "object": dict(obj),
        },
    }


async def webhook_findings(rule: Rule, edits: dict[str, Any]) -> list[Finding]:
    """The webhook's answer to the rule's case, as findings: a refusal is an error naming its field."""
    obj = manifests(rule, edits)[0]
    assert obj["kind"] in KINDS_BY_PATH.values()
    answer = await review(admission_request(obj), kind=obj["kind"], cluster=MemoryCluster(rule.existing))
    if answer.allowed:
        return [Finding("warning", "", "", warning) for warning in answer.warnings]
    return [Finding("error", "", _field_of(answer.message), answer.message)]


def _field_of(message: str) -> str:
    """The field a denial names: "ScaledObject ns/x: spec.a: ..." -> "spec.a"."""
    parts = message.split(": ")
    return parts[1] if len(parts) > 2 else ""
