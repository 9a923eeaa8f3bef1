"""HTTPScaledObject as the HTTP add-on defines it: fields, defaults, checks, the ScaledObject it implies, its CRD."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.kube.crds import crd, structural_problems
from ebb.spec.loader import load_files, load_text
from ebb.spec.models import HTTPScaledObject, go_duration_seconds

ROOT = Path(__file__).resolve().parents[2]

# An HTTPScaledObject as a user of the add-on writes it, using every field of its v1alpha1 API.
ADDON_EXAMPLE = """\
kind: HTTPScaledObject
apiVersion: http.keda.sh/v1alpha1
metadata:
  name: xkcd
spec:
  hosts:
    - myhost.com
  pathPrefixes:
    - /test
  headers:
    - name: X-Canary
      value: "true"
  scaleTargetRef:
    name: xkcd
    kind: Deployment
    apiVersion: apps/v1
    service: xkcd
    port: 8080
  replicas:
    min: 5
    max: 10
  scaledownPeriod: 300
  scalingMetric:
    requestRate:
      granularity: 1s
      targetValue: 100
      window: 1m
  timeouts:
    conditionWait: 20s
    responseHeader: 5s
  coldStartTimeoutFailoverRef:
    service: fallback
    port: 8080
"""


def _one(text: str) -> HTTPScaledObject:
    loaded = load_text(text)
    assert loaded.errors == [], [str(e) for e in loaded.errors]
    [obj] = loaded.of(HTTPScaledObject)
    return obj


def _errors(spec: str) -> list[str]:
    text = "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {name: x}\nspec:\n"
    return [str(e) for e in load_text(text + textwrap.indent(textwrap.dedent(spec), "  ")).errors]


MINIMAL = "scaleTargetRef: {name: app, service: app, port: 80}\n"


def test_the_addons_example_is_accepted_unchanged() -> None:
    obj = _one(ADDON_EXAMPLE)
    spec = obj.spec
    assert spec.metric == "requestRate" and spec.metric_target == 100
    assert spec.min_replicas == 5 and spec.max_replicas == 10
    # The failover's timeoutSeconds (default 30) replaces conditionWait, as pkg/routing/table.go does.
    assert spec.condition_wait_seconds == 30.0
    assert spec.response_header_seconds == 5.0
    manifest = obj.to_manifest()
    assert manifest["spec"]["coldStartTimeoutFailoverRef"]["timeoutSeconds"] == 30


def test_defaults_are_the_addons() -> None:
    obj = _one("apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {name: x}\nspec:\n  " + MINIMAL)
    spec = obj.spec
    assert (spec.metric, spec.metric_target) == ("concurrency", 100)
    assert (spec.min_replicas, spec.max_replicas) == (0, 100)
    assert spec.condition_wait_seconds is None and spec.response_header_seconds is None
    so = obj.scaled_object()
    assert so.metadata.name == "x"
    assert so.spec.polling_interval == 15
    assert so.spec.cooldown_period == 300 and so.spec.initial_cooldown_period == 0
    assert (so.spec.min_replica_count, so.spec.max_replica_count) == (0, 100)
    assert so.spec.scale_target_ref.kind == "Deployment" and so.spec.scale_target_ref.api_version == "apps/v1"
    assert so.spec.advanced is not None and so.spec.advanced.restore_to_original_replica_count
    [trigger] = so.spec.triggers
    assert trigger.type == "external-push" and trigger.metadata["httpScaledObject"] == "x"


@pytest.mark.parametrize(
    ("extra", "metric", "target"),
    [
        ("targetPendingRequests: 7\n", "concurrency", 7),
        ("targetPendingRequests: 7\nscalingMetric: {concurrency: {targetValue: 3}}\n", "concurrency", 3),
        ("scalingMetric: {concurrency: {}}\n", "concurrency", 100),
        ("scalingMetric: {requestRate: {}}\n", "requestRate", 100),
        ("scalingMetric: {}\ntargetPendingRequests: 9\n", "concurrency", 9),
    ],
)
def test_metric_and_target(extra: str, metric: str, target: int) -> None:
    obj = _one(
        "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {name: x}\nspec:\n"
        + textwrap.indent(MINIMAL + extra, "  ")
    )
    assert (obj.spec.metric, obj.spec.metric_target) == (metric, target)


def test_a_process_group_target_gets_ebbs_api_version() -> None:
    obj = _one(
        "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {name: x}\nspec:\n"
        "  scaleTargetRef: {name: app, kind: ProcessGroup, service: app, port: 9000}\n"
    )
    assert obj.spec.scale_target_ref.is_process_group
    assert obj.scaled_object().spec.scale_target_ref.is_process_group


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "scaleTargetRef: {name: a, service: a}\n",
            "spec.scaleTargetRef: must define either the 'portName' or the 'port'",
        ),
        (
            "scaleTargetRef: {name: a, service: a, port: 1, portName: http}\n",
            "spec.scaleTargetRef: must define either the 'portName' or the 'port'",
        ),
        (
            "scaleTargetRef: {name: a, service: a, port: null, portName: null}\n",
            "spec.scaleTargetRef: must define either the 'portName' or the 'port'",
        ),
        ("scaleTargetRef: {name: a, service: a, port: 1, portName: null}\n", ""),
        ("scaleTargetRef: {name: a, port: 1}\n", "spec.scaleTargetRef.service"),
        ("hosts: [a]\n", "spec.scaleTargetRef"),
        (
            MINIMAL + "scalingMetric: {concurrency: {}, requestRate: {}}\n",
            "spec.scalingMetric: concurrency and requestRate are mutually exclusive",
        ),
        (MINIMAL + "replicas: {min: 3, max: 2}\n", "spec.replicas.min: min (3) must be less than or equal to max (2)"),
        (MINIMAL + "replicas: {min: 3}\n", ""),
        (MINIMAL + "replicas: {max: 0}\n", "spec.replicas.max: must be 1 or more"),
        (MINIMAL + "targetPendingRequests: 0\n", "spec.targetPendingRequests: must be greater than 0"),
        (
            MINIMAL + "scalingMetric: {requestRate: {window: 1x}}\n",
            "spec.scalingMetric.requestRate.window: '1x' is not",
        ),
        (
            MINIMAL + "scalingMetric: {requestRate: {window: 1s, granularity: 2s}}\n",
            "at least as long as the granularity",
        ),
        (MINIMAL + "timeouts: {conditionWait: 20}\n", "spec.timeouts.conditionWait: '20' is not a duration"),
        (MINIMAL + "headers: [{name: a}, {name: a}]\n", "spec.headers[1].name: duplicate header 'a'"),
        (MINIMAL + "headers: [{name: ''}]\n", "spec.headers[0].name"),
        (MINIMAL + "scaledownPeriod: -1\n", "spec.scaledownPeriod: must be 0 or more"),
        (MINIMAL + "coldStartTimeoutFailoverRef: {service: f}\n", "spec.coldStartTimeoutFailoverRef: must define"),
        (MINIMAL + "unknownField: 1\n", "spec.unknownField"),
    ],
)
def test_validation(spec: str, message: str) -> None:
    errors = _errors(spec)
    if not message:
        assert errors == []
        return
    assert errors and any(message in e for e in errors), errors


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("1m", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("-1s", -1.0)]
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration_seconds(text) == seconds


def test_crd_is_structural_carries_the_addons_rules_and_accepts_the_example() -> None:
    manifest = crd(HTTPScaledObject)
    assert manifest["metadata"]["name"] == "httpscaledobjects.http.keda.sh"
    assert manifest["spec"]["names"]["shortNames"] == ["httpso"]
    schema = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["scaleTargetRef"]
    assert spec["properties"]["scaleTargetRef"]["required"] == ["service"]
    assert spec["properties"]["scaleTargetRef"]["x-kubernetes-validations"][0]["rule"] == (
        "has(self.portName) != has(self.port)"
    )
    import yaml

    jsonschema.validate(yaml.safe_load(ADDON_EXAMPLE)["spec"], _json_schema(spec))


def _json_schema(node: object) -> object:
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_ebb_check_shows_the_route_and_the_addons_defaults(tmp_path: Path) -> None:
    path = tmp_path / "httpso.yaml"
    path.write_text(ADDON_EXAMPLE)
    result = CliRunner().invoke(app, ["check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "HTTPScaledObject default/xkcd" in out
    assert "hosts myhost.com; paths /test" in out
    assert "requestRate target 100 per 1s over 1m" in out
    assert "polling 15s, scaledown period 300s" in out
    assert "failover" in out and "after 30s" in out


def test_ebb_check_names_the_field_of_a_bad_object(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ADDON_EXAMPLE.replace("    port: 8080\n  replicas", "  replicas", 1))
    result = CliRunner().invoke(app, ["check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "spec.scaleTargetRef: must define either the 'portName' or the 'port'" in result.output
    assert "Traceback" not in result.output


def test_the_example_loads() -> None:
    loaded = load_files([ROOT / "examples" / "http" / "web.yaml"])
    assert loaded.errors == []
    [obj] = loaded.of(HTTPScaledObject)
    assert obj.spec.scale_target_ref.is_process_group
