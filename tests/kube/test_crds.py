"""The CRDs generated from the spec models: checked-in files current, schemas structural, KEDA's examples valid."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ebb.kube.crds import all_crds, crd, render, structural_problems
from ebb.spec.models import ClusterTriggerAuthentication, ScaledJob, ScaledObject, TriggerAuthentication

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "spec" / "keda_examples"
CRD_DIRS = [ROOT / "deploy" / "crds", ROOT / "deploy" / "helm" / "ebb" / "crds"]
KINDS = {"ScaledObject", "ScaledJob", "TriggerAuthentication", "ClusterTriggerAuthentication"}


def _schema(model: type[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes' dialect) to a draft-4 JSON Schema: `nullable` becomes a null type."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("nullable") and "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    if out.get("type") == "object" and "properties" in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        # The API server prunes unknown fields; for the examples, an unknown field means a schema gap.
        out["additionalProperties"] = False
    return out


def _validator(model: type[Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_as_json_schema(_schema(model)))


def _examples() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(document, dict) and document.get("kind") in KINDS:
                found.append((f"{path.name}#{index}", document))
    return found


MODELS = {
    "ScaledObject": ScaledObject,
    "ScaledJob": ScaledJob,
    "TriggerAuthentication": TriggerAuthentication,
    "ClusterTriggerAuthentication": ClusterTriggerAuthentication,
}


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda path: str(path.relative_to(ROOT)))
def test_checked_in_crds_equal_the_generator_output(directory: Path) -> None:
    generated = all_crds()
    assert sorted(path.name for path in directory.glob("*.yaml")) == sorted(generated)
    for name, manifest in generated.items():
        assert (directory / name).read_text() == render(manifest), f"{name}: run python scripts/gen_crds.py"


def test_generator_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_crds.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("model", list(MODELS.values()), ids=list(MODELS))
def test_schema_is_structural(model: type[Any]) -> None:
    schema = _schema(model)
    assert structural_problems(schema) == []
    assert "$ref" not in render(crd(model))
    assert "anyOf" not in render(crd(model))


def test_structural_check_finds_problems() -> None:
    broken = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/x"},
            "b": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "c": {"type": "object", "properties": {"d": {}}, "additionalProperties": False},
        },
    }
    problems = structural_problems(broken)
    assert any(p.startswith("a:") and "$ref" in p for p in problems)
    assert any(p.startswith("b:") and "anyOf" in p for p in problems)
    assert "c.d: no type" in problems
    assert any(p.startswith("c:") and "additionalProperties" in p for p in problems)


@pytest.mark.parametrize(("where", "document"), _examples(), ids=[where for where, _ in _examples()])
def test_keda_documentation_examples_validate(where: str, document: dict[str, Any]) -> None:
    errors = sorted(_validator(MODELS[document["kind"]]).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, f"{where}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_examples_cover_every_kind() -> None:
    assert {document["kind"] for _, document in _examples()} == KINDS


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda spec: spec.pop("scaleTargetRef"), []),
        (lambda spec: spec.update(triggers=[]), ["spec", "triggers"]),
        (lambda spec: spec.update(minReplicaCount=-1), ["spec", "minReplicaCount"]),
        (lambda spec: spec.update(pollingInterval="30"), ["spec", "pollingInterval"]),
        (lambda spec: spec["triggers"][0].update(metricType="Sometimes"), ["spec", "triggers", 0, "metricType"]),
        (lambda spec: spec["triggers"][0].update(metadata={"listLength": 5}), ["spec", "triggers", 0, "metadata"]),
        (lambda spec: spec.update(fallback={"replicas": 2}), ["spec", "fallback"]),
    ],
)
def test_schema_rejects_what_kubernetes_would(mutate: Any, path: list[Any]) -> None:
    document = copy.deepcopy(_first("ScaledObject"))
    mutate(document["spec"])
    errors = list(_validator(ScaledObject).iter_errors(document))
    assert errors
    assert any(list(error.path)[: len(path)] == path for error in errors)


def _first(kind: str) -> dict[str, Any]:
    return next(document for _, document in _examples() if document["kind"] == kind)


def test_job_target_ref_keeps_unknown_fields() -> None:
    job_target = _schema(ScaledJob)["properties"]["spec"]["properties"]["jobTargetRef"]
    assert job_target["x-kubernetes-preserve-unknown-fields"] is True
    pod_spec = job_target["properties"]["template"]["properties"]["spec"]
    assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
    assert job_target["properties"]["activeDeadlineSeconds"]["format"] == "int64"
    document = copy.deepcopy(_first("ScaledJob"))
    document["spec"]["jobTargetRef"]["ttlSecondsAfterFinished"] = 60
    document["spec"]["jobTargetRef"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert not list(_validator(ScaledJob).iter_errors(document))


def test_names_columns_and_subresources_follow_keda() -> None:
    so = crd(ScaledObject)["spec"]
    assert so["names"]["shortNames"] == ["so"]
    assert [column["name"] for column in so["versions"][0]["additionalPrinterColumns"]] == [
        "ScaleTargetKind",
        "ScaleTargetName",
        "Min",
        "Max",
        "Ready",
        "Active",
        "Fallback",
        "Paused",
        "Triggers",
        "Authentications",
        "Age",
    ]
    ready = next(c for c in so["versions"][0]["additionalPrinterColumns"] if c["name"] == "Ready")
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert crd(ScaledJob)["spec"]["names"]["shortNames"] == ["sj"]
    assert crd(TriggerAuthentication)["spec"]["names"]["shortNames"] == ["ta", "triggerauth"]
    cta = crd(ClusterTriggerAuthentication)["spec"]
    assert (cta["names"]["shortNames"], cta["scope"]) == (["cta", "clustertriggerauth"], "Cluster")
    for model in MODELS.values():
        version = crd(model)["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert "status" in version["schema"]["openAPIV3Schema"]["properties"]
        assert crd(model)["spec"]["names"]["categories"]
