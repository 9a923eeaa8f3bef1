"""CustomResourceDefinitions for KEDA's kinds (keda.sh/v1alpha1), generated from ebb's pydantic models.

pydantic writes JSON Schema (draft 2020-12); the API server wants a *structural* OpenAPI v3 schema: every
node typed (or marked `x-kubernetes-preserve-unknown-fields`), no `$ref`, no `anyOf` with null (use
`nullable`), no `additionalProperties: false` next to `properties`. `openapi_schema` does that translation,
so the schema can never drift from the models that validate objects locally. Names, short names, printer
columns and status follow KEDA's `config/crd/bases`. `scripts/gen_crds.py` writes the YAML files.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml

from ebb.spec.models import (
    KEDA_API_VERSION,
    CloudEventSource,
    ClusterCloudEventSource,
    ClusterTriggerAuthentication,
    HTTPScaledObject,
    InterceptorRoute,
    KubeObject,
    ScaledJob,
    ScaledObject,
    TriggerAuthentication,
)

GROUP: Final = KEDA_API_VERSION.split("/")[0]
VERSION: Final = KEDA_API_VERSION.split("/")[1]
CATEGORIES: Final = ["keda", "ebb"]

Schema = dict[str, Any]

#: Fields KEDA declares int64 (JobSpec and PodSpec durations); every other integer is an int32 there.
_INT64_FIELDS = frozenset({"activeDeadlineSeconds", "terminationGracePeriodSeconds"})
#: resource.Quantity fields: a number or a string such as "100m".
_QUANTITY_FIELDS = frozenset({"tolerance"})
#: JSON Schema keywords pydantic writes that carry no meaning for the API server.
_DROPPED = frozenset({"title", "default", "$defs", "examples"})
#: Keywords that mean the same in both dialects.
_KEPT = frozenset(
    {"required", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "format"}
)


class SchemaTranslationError(ValueError):
    """A model produced JSON Schema the translation does not know how to make structural."""


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    ref = node.get("$ref")
    if ref is None:
        return node
    name = ref.rsplit("/", 1)[-1]
    resolved = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(resolved, defs)


def _structural(node: Schema, defs: dict[str, Schema], field: str = "", path: str = "") -> Schema:
    node = _resolve(node, defs)
    if field in _QUANTITY_FIELDS:
        # KEDA's CRD says int-or-string, which makes the API server refuse `tolerance: 0.1` (a float), the
        # form KEDA's own docs show. Any scalar is let through; the model checks it is a quantity.
        return {
            "description": "A quantity: a number or a string such as 0.1 or 100m.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    if "anyOf" in node:
        options = [_resolve(option, defs) for option in node["anyOf"]]
        non_null = [option for option in options if option.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaTranslationError(f"{path or '<root>'}: a union of several types cannot be made structural")
        merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **non_null[0]}
        out = _structural(merged, defs, field, path)
        if len(non_null) < len(options):
            out["nullable"] = True
        return out

    out = {}
    if "description" in node:
        out["description"] = node["description"]
    if "const" in node:
        out["enum"] = [node["const"]]
    kind = node.get("type")
    if kind is None and "const" in node:
        kind = "string" if isinstance(node["const"], str) else None
    if kind is None and not node.get("properties") and "additionalProperties" not in node:
        # `Any`: whatever the user wrote is kept.
        return {**out, "x-kubernetes-preserve-unknown-fields": True}
    kind = kind or "object"
    out["type"] = kind
    for key, value in node.items():
        if key in _DROPPED or key in ("type", "description", "const", "properties", "additionalProperties"):
            continue
        if key == "items":
            out["items"] = _structural(value, defs, "", f"{path}[]")
        elif key == "exclusiveMinimum" and kind == "integer":
            out["minimum"] = value + 1
        elif key == "exclusiveMaximum" and kind == "integer":
            out["maximum"] = value - 1
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema's numeric form; OpenAPI v3.0 (which Kubernetes speaks) uses a bound plus a flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key in _KEPT:
            out[key] = value
        else:
            raise SchemaTranslationError(f"{path or '<root>'}: unexpected JSON Schema keyword {key!r}")
    if kind == "integer" and "format" not in out:
        out["format"] = "int64" if field in _INT64_FIELDS else "int32"
    if kind == "object":
        properties = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if properties:
            out["properties"] = {
                name: _structural(child, defs, name, f"{path}.{name}" if path else name)
                for name, child in properties.items()
            }
        if isinstance(extra, dict):
            if properties:
                raise SchemaTranslationError(f"{path}: properties and a typed additionalProperties together")
            if _resolve(extra, defs).get("type") is None and not extra.get("properties"):
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = _structural(extra, defs, "", f"{path}.*")
        elif extra is True or (not properties and extra is None):
            # A permissive model (extra="allow"), or a bare `dict`: keep fields the schema does not name.
            out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[KubeObject], status: Schema | None = None) -> Schema:
    """The structural `openAPIV3Schema` of one kind: apiVersion, kind, metadata, spec (from the model), status."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    spec = _structural(raw["properties"]["spec"], defs, "spec", "spec")
    spec.pop("nullable", None)
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        # The API server validates metadata itself; a CRD may only say it is an object.
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    return {"type": "object", "properties": properties, "required": ["spec"]}


# --- status (ebb writes these; there is no pydantic model of them) --------------------------------------


def _conditions() -> Schema:
    return {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "reason": {"type": "string"},
                "status": {"type": "string"},
                "type": {"type": "string"},
            },
            "required": ["status", "type"],
        },
    }


def _string_list() -> Schema:
    return {"type": "array", "items": {"type": "string"}}


def _triggers_activity() -> Schema:
    return {
        "type": "object",
        "additionalProperties": {"type": "object", "properties": {"isActive": {"type": "boolean"}}},
    }


SCALED_OBJECT_STATUS: Final[Schema] = {
    "type": "object",
    "properties": {
        "authenticationsTypes": {"type": "string"},
        "compositeScalerName": {"type": "string"},
        "conditions": _conditions(),
        "externalMetricNames": _string_list(),
        "health": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "numberOfFailures": {"type": "integer", "format": "int32"},
                    "status": {"type": "string"},
                },
            },
        },
        "hpaName": {"type": "string"},
        "lastActiveTime": {"type": "string", "format": "date-time"},
        "originalReplicaCount": {"type": "integer", "format": "int32"},
        "pausedReplicaCount": {"type": "integer", "format": "int32"},
        "resourceMetricNames": _string_list(),
        "scaleTargetGVKR": {
            "type": "object",
            "properties": {
                "group": {"type": "string"},
                "kind": {"type": "string"},
                "resource": {"type": "string"},
                "version": {"type": "string"},
            },
            "required": ["group", "kind", "resource", "version"],
        },
        "scaleTargetKind": {"type": "string"},
        "triggersActivity": _triggers_activity(),
        "triggersTypes": {"type": "string"},
    },
}

SCALED_JOB_STATUS: Final[Schema] = {
    "type": "object",
    "properties": {
        "Paused": {"type": "string"},
        "authenticationsTypes": {"type": "string"},
        "conditions": _conditions(),
        "externalMetricNames": _string_list(),
        "lastActiveTime": {"type": "string", "format": "date-time"},
        "triggersActivity": _triggers_activity(),
        "triggersTypes": {"type": "string"},
    },
}


def _metav1_conditions() -> Schema:
    """The add-on's conditions are metav1.Condition: KEDA's four fields, a transition time and a generation."""
    schema = _conditions()
    schema["items"]["properties"]["lastTransitionTime"] = {"type": "string", "format": "date-time"}
    schema["items"]["properties"]["observedGeneration"] = {"type": "integer", "format": "int64"}
    return schema


HTTP_SCALED_OBJECT_STATUS: Final[Schema] = {
    "type": "object",
    "properties": {
        "conditions": _metav1_conditions(),
        "targetService": {"type": "string"},
        "targetWorkload": {"type": "string"},
    },
}

CLOUD_EVENT_SOURCE_STATUS: Final[Schema] = {"type": "object", "properties": {"conditions": _conditions()}}

TRIGGER_AUTHENTICATION_STATUS: Final[Schema] = {
    "type": "object",
    "properties": {"scaledjobs": {"type": "string"}, "scaledobjects": {"type": "string"}},
}


# --- the CRDs -----------------------------------------------------------------------------------------


def _column(name: str, json_path: str, kind: str = "string", priority: int | None = None) -> Schema:
    column: Schema = {"name": name, "type": kind, "jsonPath": json_path}
    if priority is not None:
        column["priority"] = priority
    return column


def _condition(name: str) -> Schema:
    return _column(name, f'.status.conditions[?(@.type=="{name}")].status')


_AGE = _column("Age", ".metadata.creationTimestamp", "date")
_AUTH_COLUMNS = [
    _column("PodIdentity", ".spec.podIdentity.provider"),
    _column("Secret", ".spec.secretTargetRef[*].name"),
    _column("Env", ".spec.env[*].name"),
]
_AUTH_USERS = [
    _column("ScaledObjects", ".status.scaledobjects", priority=1),
    _column("ScaledJobs", ".status.scaledjobs", priority=1),
]

#: (model, plural, scope, short names, printer columns, status schema), as in KEDA's config/crd/bases.
_KINDS: Final[list[tuple[type[KubeObject], str, str, list[str], list[Schema], Schema]]] = [
    (
        ScaledObject,
        "scaledobjects",
        "Namespaced",
        ["so"],
        [
            _column("ScaleTargetKind", ".status.scaleTargetKind"),
            _column("ScaleTargetName", ".spec.scaleTargetRef.name"),
            _column("Min", ".spec.minReplicaCount", "integer"),
            _column("Max", ".spec.maxReplicaCount", "integer"),
            _condition("Ready"),
            _condition("Active"),
            _condition("Fallback"),
            _condition("Paused"),
            _column("Triggers", ".status.triggersTypes"),
            _column("Authentications", ".status.authenticationsTypes"),
            _AGE,
        ],
        SCALED_OBJECT_STATUS,
    ),
    (
        ScaledJob,
        "scaledjobs",
        "Namespaced",
        ["sj"],
        [
            _column("Min", ".spec.minReplicaCount", "integer"),
            _column("Max", ".spec.maxReplicaCount", "integer"),
            _condition("Ready"),
            _condition("Active"),
            _condition("Paused"),
            _column("Triggers", ".status.triggersTypes"),
            _column("Authentications", ".status.authenticationsTypes"),
            _AGE,
        ],
        SCALED_JOB_STATUS,
    ),
    (
        TriggerAuthentication,
        "triggerauthentications",
        "Namespaced",
        ["ta", "triggerauth"],
        [*_AUTH_COLUMNS, _column("VaultAddress", ".spec.hashiCorpVault.address"), *_AUTH_USERS],
        TRIGGER_AUTHENTICATION_STATUS,
    ),
    (
        ClusterTriggerAuthentication,
        "clustertriggerauthentications",
        "Cluster",
        ["cta", "clustertriggerauth"],
        [
            *_AUTH_COLUMNS,
            _column("FilePath", ".spec.filePath"),
            _column("VaultAddress", ".spec.hashiCorpVault.address"),
            *_AUTH_USERS,
        ],
        TRIGGER_AUTHENTICATION_STATUS,
    ),
    (CloudEventSource, "cloudeventsources", "Namespaced", [], [_condition("Active")], CLOUD_EVENT_SOURCE_STATUS),
    (
        ClusterCloudEventSource,
        "clustercloudeventsources",
        "Cluster",
        [],
        [_condition("Active")],
        CLOUD_EVENT_SOURCE_STATUS,
    ),
    (
        HTTPScaledObject,
        "httpscaledobjects",
        "Namespaced",
        ["httpso"],
        [
            _column("TargetWorkload", ".status.targetWorkload"),
            _column("TargetService", ".status.targetService"),
            _column("MinReplicas", ".spec.replicas.min", "integer"),
            _column("MaxReplicas", ".spec.replicas.max", "integer"),
            _AGE,
            _condition("Ready"),
        ],
        HTTP_SCALED_OBJECT_STATUS,
    ),
    (
        InterceptorRoute,
        "interceptorroutes",
        "Namespaced",
        [],
        [_column("TargetService", ".spec.target.service"), _condition("Ready"), _AGE],
        # metav1.Condition, as the add-on's InterceptorRouteStatus (its controller writes a transition time).
        {"type": "object", "properties": {"conditions": _metav1_conditions()}},
    ),
]

#: The HTTP add-on's CEL rule on scaleTargetRef and coldStartTimeoutFailoverRef.
_ONE_PORT_RULES = [
    {"message": "must define either the 'portName' or the 'port'", "rule": "has(self.portName) != has(self.port)"}
]

#: KEDA's CEL rule on ScaledObject.spec (maxReplicaCount defaults to 100).
_SCALED_OBJECT_RULES = [
    {
        "message": "minReplicaCount must be less than or equal to maxReplicaCount",
        "rule": "!has(self.minReplicaCount) || self.minReplicaCount <= "
        "(has(self.maxReplicaCount) ? self.maxReplicaCount : 100)",
    }
]


def crd(model: type[KubeObject]) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for one of KEDA's kinds (or the HTTP add-on's HTTPScaledObject)."""
    entry = next((entry for entry in _KINDS if entry[0] is model), None)
    if entry is None:
        raise KeyError(f"no CRD for {model.__name__}")
    _, plural, scope, short_names, columns, status = entry
    kind = model.__name__
    schema = openapi_schema(model, copy.deepcopy(status))
    if model is ScaledObject:
        schema["properties"]["spec"]["x-kubernetes-validations"] = copy.deepcopy(_SCALED_OBJECT_RULES)
    if model is HTTPScaledObject:
        spec = schema["properties"]["spec"]["properties"]
        for field in ("scaleTargetRef", "coldStartTimeoutFailoverRef"):
            spec[field]["x-kubernetes-validations"] = copy.deepcopy(_ONE_PORT_RULES)
        spec["headers"]["x-kubernetes-list-type"] = "map"
        spec["headers"]["x-kubernetes-list-map-keys"] = ["name"]
    if model is InterceptorRoute:
        _interceptor_route_rules(schema["properties"]["spec"])
    group, version = _group_version(model)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": {"app.kubernetes.io/name": "ebb", "app.kubernetes.io/part-of": "ebb"},
        },
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": list(short_names),
                "categories": list(CATEGORIES),
            },
            "scope": scope,
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": copy.deepcopy(columns),
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _cel(message: str, rule: str) -> list[dict[str, str]]:
    return [{"message": message, "rule": rule}]


def _interceptor_route_rules(spec: Schema) -> None:
    """The add-on's CEL rules and list types on InterceptorRoute (operator/apis/http/v1beta1)."""
    props = spec["properties"]
    one_port = _cel("exactly one of 'port' or 'portName' must be set", "has(self.port) != has(self.portName)")

    def rule_lists(rule: Schema) -> None:
        rule["properties"]["hosts"]["x-kubernetes-list-type"] = "set"
        rule["properties"]["paths"]["x-kubernetes-list-type"] = "atomic"
        headers = rule["properties"]["headers"]
        headers["x-kubernetes-list-type"] = "map"
        headers["x-kubernetes-list-map-keys"] = ["name"]

    def static_response(response: Schema) -> None:
        response["x-kubernetes-validations"] = _cel(
            "at most one of 'body' or 'bodyFromConfigMap' may be set",
            "!(has(self.body) && has(self.bodyFromConfigMap))",
        )

    props["target"]["x-kubernetes-validations"] = copy.deepcopy(one_port)
    props["scalingMetric"]["x-kubernetes-validations"] = _cel(
        "at least one of 'concurrency' or 'requestRate' must be set", "has(self.concurrency) || has(self.requestRate)"
    )
    cold = props["coldStart"]
    cold["x-kubernetes-validations"] = _cel(
        "at least one of 'fallback' or 'placeholder' must be set", "has(self.fallback) || has(self.placeholder)"
    )
    cold["properties"]["fallback"]["properties"]["service"]["x-kubernetes-validations"] = copy.deepcopy(one_port)
    static_response(cold["properties"]["placeholder"]["properties"]["response"])
    props["rules"]["x-kubernetes-list-type"] = "atomic"
    rule_lists(props["rules"]["items"])
    statics = props["staticRoutes"]
    statics["x-kubernetes-list-type"] = "atomic"
    statics["items"]["properties"]["rules"]["x-kubernetes-list-type"] = "atomic"
    rule_lists(statics["items"]["properties"]["rules"]["items"])
    static_response(statics["items"]["properties"]["response"])


def all_crds() -> dict[str, dict[str, Any]]:
    """Every CRD by the file name KEDA (or the add-on) uses for it (`keda.sh_scaledobjects.yaml` ...)."""
    return {f"{_group(model)}_{plural}.yaml": crd(model) for model, plural, *_ in _KINDS}


def _group(model: type[KubeObject]) -> str:
    """keda.sh, eventing.keda.sh for the CloudEventSource kinds, http.keda.sh for HTTPScaledObject."""
    return _group_version(model)[0]


def _group_version(model: type[KubeObject]) -> tuple[str, str]:
    api_version = model.model_fields["api_version"].default
    assert isinstance(api_version, str)
    group, _, version = api_version.partition("/")
    return group, version


HEADER: Final = "# Generated by scripts/gen_crds.py from src/ebb/spec/models.py. Do not edit.\n"


def render(manifest: dict[str, Any]) -> str:
    """The YAML text of a manifest as the generator writes it."""
    return HEADER + "---\n" + yaml.safe_dump(manifest, sort_keys=False, width=120, allow_unicode=True)


def structural_problems(schema: Schema, path: str = "") -> list[str]:
    """Where `schema` is not structural: untyped nodes (without preserve-unknown-fields), `$ref`, nullable
    unions, `properties` next to `additionalProperties`. Empty when it is fine."""
    problems: list[str] = []
    where = path or "<root>"
    if "$ref" in schema:
        problems.append(f"{where}: $ref")
    has_type = "type" in schema or schema.get("x-kubernetes-int-or-string")
    if not has_type and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{where}: no type")
    if "anyOf" in schema and not schema.get("x-kubernetes-int-or-string"):
        problems.append(f"{where}: anyOf")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties")
    if schema.get("additionalProperties") is False:
        problems.append(f"{where}: additionalProperties false")
    for name, child in (schema.get("properties") or {}).items():
        problems += structural_problems(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}.*")
    return problems
