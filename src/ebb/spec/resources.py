"""An index of loaded objects by (kind, namespace, name), with the lookups the runtime and auth need.

A ResourceSet also refuses what KEDA's admission webhook refuses across objects: the same object twice,
two ScaledObjects scaling one target, two ScaledObjects sharing one HPA name; and what ebb's webhook refuses: an
HTTPScaledObject and a ScaledObject (or two HTTPScaledObjects) scaling one target. An HTTPScaledObject with the
add-on's skip-scaledobject-creation annotation only routes (on Kubernetes), and claims nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from ebb.errors import SpecError
from ebb.spec.models import (
    EBB_API_VERSION,
    ClusterTriggerAuthentication,
    ConfigMap,
    HTTPScaledObject,
    KubeObject,
    PathElement,
    ProcessGroup,
    ScaledJob,
    ScaledObject,
    Secret,
    TriggerAuthentication,
    kind_of,
)
from ebb.spec.paths import format_path

T = TypeVar("T", bound=KubeObject)
Scaler = ScaledObject | HTTPScaledObject


class ResourceSet:
    """Objects keyed by (kind, namespace, name); cluster-scoped kinds use "" as namespace.

    Implements `ebb.spec.auth.AuthStore` for objects loaded from local files.
    """

    def __init__(self, objects: Iterable[KubeObject] = ()) -> None:
        self._objects: dict[tuple[str, str, str], KubeObject] = {}
        # Indexes that keep adding N objects linear in N: objects by kind, and ScaledObjects by what they
        # claim (target, HPA name), each keyed by (namespace, ...) -> {object key: object}.
        self._by_kind: dict[str, dict[tuple[str, str, str], KubeObject]] = {}
        self._by_target: dict[tuple[str, str, str, str], dict[tuple[str, str, str], Scaler]] = {}
        self._by_hpa: dict[tuple[str, str], dict[tuple[str, str, str], ScaledObject]] = {}
        for obj in objects:
            self.add(obj)

    # --- adding and removing ---------------------------------------------------------------------

    def conflicts(self, obj: KubeObject) -> list[tuple[tuple[PathElement, ...], str]]:
        """What stops `obj` from joining this set, as (field path, message) pairs; empty when it fits."""
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        existing = self._objects.get(obj.key)
        if existing is not None and existing is not obj:
            where = f" (first at {existing.source})" if existing.source else ""
            issues.append((("metadata", "name"), f"{obj.ref} is defined more than once{where}"))
            return issues
        if isinstance(obj, ScaledObject | HTTPScaledObject):
            issues.extend(self._scaled_object_conflicts(obj))
        return issues

    @staticmethod
    def _target_key(obj: Scaler) -> tuple[str, str, str, str] | None:
        """What `obj` scales: (namespace, apiVersion, kind, name); None for an HTTPScaledObject that only routes."""
        if isinstance(obj, HTTPScaledObject):
            if not obj.scales:
                return None
            obj = obj.scaled_object()
        target = obj.spec.scale_target_ref
        api_version = EBB_API_VERSION if target.is_process_group else target.api_version
        return (obj.metadata.namespace, api_version, target.kind, target.name)

    def _scaled_object_conflicts(self, so: Scaler) -> list[tuple[tuple[PathElement, ...], str]]:
        issues: list[tuple[tuple[PathElement, ...], str]] = []
        key = self._target_key(so)
        if key is not None:
            _, _, kind, name = key
            for other in self._by_target.get(key, {}).values():
                if other.key != so.key:
                    issues.append(
                        (
                            ("spec", "scaleTargetRef", "name"),
                            f"{kind} {name!r} is already scaled by {other.ref}",
                        )
                    )
        if not isinstance(so, ScaledObject):
            return issues
        for other in self._by_hpa.get((so.metadata.namespace, so.hpa_name), {}).values():
            if other.key != so.key:
                custom = so.hpa_name != f"keda-hpa-{so.name}"
                path: tuple[PathElement, ...] = (
                    ("spec", "advanced", "horizontalPodAutoscalerConfig", "name") if custom else ("metadata", "name")
                )
                issues.append((path, f"the HPA {so.hpa_name!r} is already managed by {other.ref}"))
        return issues

    def add(self, obj: KubeObject) -> None:
        """Add `obj`, or raise SpecError naming the conflict."""
        issues = self.conflicts(obj)
        if issues:
            path, message = issues[0]
            raise SpecError(obj.ref, format_path(path), message)
        self._store(obj)

    def replace(self, obj: KubeObject) -> None:
        """Add or overwrite `obj` without conflict checks (an object the API server already admitted)."""
        self._store(obj)

    def discard(self, kind: str, namespace: str | None, name: str) -> KubeObject | None:
        obj = self._objects.pop((kind, namespace or "", name), None)
        if obj is not None:
            self._unindex(obj)
        return obj

    def _store(self, obj: KubeObject) -> None:
        previous = self._objects.get(obj.key)
        if previous is not None:
            self._unindex(previous)
        self._objects[obj.key] = obj
        self._by_kind.setdefault(obj.kind, {})[obj.key] = obj
        if isinstance(obj, ScaledObject | HTTPScaledObject):
            key = self._target_key(obj)
            if key is not None:
                self._by_target.setdefault(key, {})[obj.key] = obj
        if isinstance(obj, ScaledObject):
            self._by_hpa.setdefault((obj.metadata.namespace, obj.hpa_name), {})[obj.key] = obj

    def _unindex(self, obj: KubeObject) -> None:
        self._by_kind.get(obj.kind, {}).pop(obj.key, None)
        if isinstance(obj, ScaledObject | HTTPScaledObject):
            key = self._target_key(obj)
            if key is not None:
                self._by_target.get(key, {}).pop(obj.key, None)
        if isinstance(obj, ScaledObject):
            self._by_hpa.get((obj.metadata.namespace, obj.hpa_name), {}).pop(obj.key, None)

    # --- lookups ---------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[KubeObject]:
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, obj: object) -> bool:
        return isinstance(obj, KubeObject) and self._objects.get(obj.key) is obj

    def get(self, model: type[T], namespace: str | None, name: str) -> T | None:
        """The object of that kind, namespace (ignored for cluster-scoped kinds) and name, if loaded."""
        ns = "" if model.cluster_scoped else (namespace or "default")
        obj = self._objects.get((kind_of(model), ns, name))
        return obj if isinstance(obj, model) else None

    def lookup(self, kind: str, namespace: str | None, name: str) -> KubeObject | None:
        """The object of that kind name, namespace ("" or None for cluster-scoped kinds) and name, if loaded."""
        return self._objects.get((kind, namespace or "", name))

    def all(self, model: type[T], namespace: str | None = None) -> list[T]:
        """Every object of that kind (in `namespace` if given), in the order they were added."""
        return [
            obj
            for obj in self._by_kind.get(kind_of(model), {}).values()
            if isinstance(obj, model) and (namespace is None or obj.namespace == namespace)
        ]

    def scaled_objects(self, namespace: str | None = None) -> list[ScaledObject]:
        return self.all(ScaledObject, namespace)

    def scaled_jobs(self, namespace: str | None = None) -> list[ScaledJob]:
        return self.all(ScaledJob, namespace)

    def process_groups(self, namespace: str | None = None) -> list[ProcessGroup]:
        return self.all(ProcessGroup, namespace)

    def scale_target(self, so: ScaledObject) -> ProcessGroup | None:
        """The ProcessGroup a ScaledObject scales, if it names one and that group is loaded."""
        target = so.spec.scale_target_ref
        if not target.is_process_group:
            return None
        return self.get(ProcessGroup, so.metadata.namespace, target.name)

    def scaled_object_for(self, group: ProcessGroup) -> ScaledObject | None:
        """The ScaledObject that scales `group`, if any (a ProcessGroup without one holds spec.replicas)."""
        claims = self._by_target.get((group.metadata.namespace, EBB_API_VERSION, "ProcessGroup", group.name), {})
        return next((obj for obj in claims.values() if isinstance(obj, ScaledObject)), None)

    # --- AuthStore -------------------------------------------------------------------------------

    def get_trigger_authentication(self, namespace: str, name: str) -> TriggerAuthentication | None:
        return self.get(TriggerAuthentication, namespace, name)

    def get_cluster_trigger_authentication(self, name: str) -> ClusterTriggerAuthentication | None:
        return self.get(ClusterTriggerAuthentication, None, name)

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = self.get(Secret, namespace, name)
        return secret.decoded() if secret is not None else None

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        config_map = self.get(ConfigMap, namespace, name)
        return dict(config_map.data) if config_map is not None else None
