"""Helpers shared by the spec tests."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from ebb.errors import SpecError
from ebb.spec import LoadResult, load_text

MINIMAL_SCALED_OBJECT: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "worker"},
    "spec": {
        "scaleTargetRef": {"name": "worker"},
        "triggers": [{"type": "redis", "metadata": {"address": "localhost:6379", "listName": "jobs"}}],
    },
}

MINIMAL_SCALED_JOB: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledJob",
    "metadata": {"name": "tasks"},
    "spec": {
        "jobTargetRef": {"template": {"spec": {"containers": [{"name": "task", "command": ["run-task"]}]}}},
        "triggers": [{"type": "redis", "metadata": {"address": "localhost:6379", "listName": "tasks"}}],
    },
}

MINIMAL_TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "TriggerAuthentication",
    "metadata": {"name": "auth"},
    "spec": {"secretTargetRef": [{"parameter": "password", "name": "creds", "key": "password"}]},
}

MINIMAL_PROCESS_GROUP: dict[str, Any] = {
    "apiVersion": "ebb.dev/v1alpha1",
    "kind": "ProcessGroup",
    "metadata": {"name": "worker"},
    "spec": {"command": ["python", "-m", "worker"]},
}

MINIMAL_SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "stringData": {"password": "s3cret"},
}

_DELETE = object()
DELETE: Any = _DELETE


def edited(base: dict[str, Any], *edits: tuple[str | tuple[str | int, ...], Any]) -> dict[str, Any]:
    """A deep copy of `base` with edits applied at dotted paths ("spec.triggers.0.name") or key tuples.

    DELETE as the value removes the key.
    """
    doc = copy.deepcopy(base)
    for path, value in edits:
        keys: list[str | int] = (
            list(path)
            if isinstance(path, tuple)
            else [int(part) if part.isdigit() else part for part in path.split(".")]
        )
        target: Any = doc
        for key in keys[:-1]:
            if isinstance(key, str) and key not in target:
                target[key] = {}
            target = target[key]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return doc


def load_docs(*docs: dict[str, Any], source: str = "test.yaml") -> LoadResult:
    return load_text(yaml.safe_dump_all(docs, sort_keys=False), source)


def fields_of(errors: Sequence[SpecError]) -> list[str]:
    return [error.field for error in errors]


def assert_contains(original: Any, dumped: Any, path: str = "") -> None:
    """Everything in `original` is in `dumped` unchanged (defaults may be added around it).

    A YAML number or boolean written where Kubernetes wants a string compares equal to its string form.
    """
    if isinstance(original, dict):
        assert isinstance(dumped, dict), f"{path}: expected a mapping, got {dumped!r}"
        for key, value in original.items():
            assert key in dumped, f"{path}.{key} missing after loading"
            assert_contains(value, dumped[key], f"{path}.{key}")
    elif isinstance(original, list):
        assert isinstance(dumped, list) and len(dumped) == len(original), f"{path}: {dumped!r}"
        for index, (item, dumped_item) in enumerate(zip(original, dumped, strict=True)):
            assert_contains(item, dumped_item, f"{path}[{index}]")
    elif isinstance(dumped, str) and isinstance(original, bool | int | float):
        expected = ("true" if original else "false") if isinstance(original, bool) else str(original)
        assert dumped == expected, f"{path}: {original!r} became {dumped!r}"
    else:
        assert dumped == original, f"{path}: {original!r} became {dumped!r}"
