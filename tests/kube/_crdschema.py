"""What a real API server keeps of a status write: KEDA's CRD schemas (deploy/crds) as JSON Schema.

A real API server prunes every field its structural schema does not declare (unless the schema says
`x-kubernetes-preserve-unknown-fields`), silently; kmock keeps everything. `status_violations` names what a real
one would drop or refuse, so that tests against kmock fail where a real cluster would lose data.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kmock as km
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"


def strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI v3 schema as JSON Schema that refuses what the API server would prune."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = strict(value)
        elif not key.startswith("x-kubernetes-") and key != "nullable":
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserved = schema.get("x-kubernetes-preserve-unknown-fields")
    if schema.get("type") == "object" and "additionalProperties" not in schema and not preserved:
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@cache
def _status_schemas() -> dict[str, dict[str, Any]]:
    """plural -> the strict schema of its status."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                status = version["schema"]["openAPIV3Schema"].get("properties", {}).get("status")
                if status is not None:
                    found[crd["spec"]["names"]["plural"]] = strict(status)
    return found


def _without_nulls(value: Any) -> Any:
    """A merge patch's nulls delete keys: they never reach the stored object."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def status_violations(plural: str, status: Mapping[str, Any]) -> list[str]:
    """What in a status (or a merge patch of one) the CRD's schema does not allow: pruned fields, wrong types."""
    schema = _status_schemas()[plural]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"status{''.join(f'[{p!r}]' for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(_without_nulls(status))
    ]


def status_writes(server: km.KubernetesEmulator) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(plural, name, status) of every write to the status of a keda.sh (or http.keda.sh) object that `server`
    received."""
    for request in server:
        resource = request.resource
        if resource is None or resource.group not in ("keda.sh", "http.keda.sh") or request.subresource != "status":
            continue
        if request.method not in ("PATCH", "PUT") or not isinstance(request.data, Mapping):
            continue
        status = request.data.get("status")
        if isinstance(status, Mapping):
            yield str(resource.plural), str(request.name), dict(status)
