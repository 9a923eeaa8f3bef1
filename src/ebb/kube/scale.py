"""Kubernetes scale targets: any workload with a /scale subresource, found by group, version and kind."""

from __future__ import annotations

from typing import Any

from lightkube.types import PatchType

from ebb.errors import TargetError
from ebb.kube.client import API_ERRORS, CRD, AsyncClient, api_message, namespaced, to_dict
from ebb.kube.drain import PodDrainer, selector_text
from ebb.kube.hpa import TargetKind

#: Built-in kinds with a /scale subresource; anything else is looked up among the cluster's CRDs.
BUILTIN_PLURALS = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("", "ReplicationController"): "replicationcontrollers",
}


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


async def resolve_target_kind(client: AsyncClient, api_version: str, kind: str) -> TargetKind:
    """The resource plural for apiVersion + kind (KEDA's GroupVersionKindResource). Raises TargetError."""
    group, version = split_api_version(api_version)
    plural = BUILTIN_PLURALS.get((group, kind))
    if plural is None:
        async for crd in client.list(CRD):
            spec = to_dict(crd).get("spec") or {}
            names = spec.get("names") or {}
            if spec.get("group") == group and names.get("kind") == kind:
                plural = names.get("plural")
                break
    if not plural:
        raise TargetError(f"no resource of kind {kind} in {api_version or 'v1'} is known to the cluster")
    return TargetKind(group, version, kind, plural)


class KubeScaleTarget:
    """`ebb.targets.base.ScaleTarget` over a workload's /scale subresource."""

    def __init__(self, client: AsyncClient, kind: TargetKind, name: str, namespace: str) -> None:
        self.client = client
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.resource = namespaced(kind.group, kind.version, kind.kind, kind.resource)
        self._replicas = 0
        self._selector: str | None = None
        self._spec_replicas: int | None = None
        #: Busy-aware scale-in (ebb.dev/busy-probe): set by the operator when the ScaledObject opts in.
        self.drainer: PodDrainer | None = None

    @property
    def label(self) -> str:
        """How events name the target: "Deployment ns/web"."""
        return f"{self.kind.kind} {self.namespace}/{self.name}"

    async def get_replicas(self) -> int:
        try:
            scale = await self.client.get(self.resource.Scale, self.name, namespace=self.namespace)
        except API_ERRORS as exc:
            raise TargetError(f"{self.label}: cannot read /scale: {api_message(exc)}") from None
        status = scale.status
        self._replicas = int(getattr(status, "replicas", 0) or 0) if status is not None else 0
        self._selector = (getattr(status, "selector", None) or None) if status is not None else None
        spec_replicas = int(scale.spec.replicas or 0) if scale.spec is not None else 0
        self._spec_replicas = spec_replicas
        return spec_replicas

    async def set_replicas(self, n: int) -> int:
        """Write `n` to /scale; with a busy probe, a scale-in first marks the pods and may go less far (see
        kube/drain.py). Returns the count written."""
        current = self._spec_replicas
        if self.drainer is not None and current is not None and n < current:
            n = await self.drainer.plan_scale_in(current, n)
            if n == current:
                return n
        body: dict[str, Any] = {"spec": {"replicas": n}}
        try:
            await self.client.patch(
                self.resource.Scale, self.name, body, namespace=self.namespace, patch_type=PatchType.MERGE
            )
        except API_ERRORS as exc:
            raise TargetError(f"{self.label}: cannot scale to {n}: {api_message(exc)}") from None
        self._spec_replicas = n
        return n

    async def pod_selector(self) -> str:
        """The target's pod selector: /scale's status.selector, else the workload's spec.selector."""
        if self._selector is None:
            await self.get_replicas()
        if self._selector is not None:
            return self._selector
        selector = (await self.get_manifest()).get("spec", {}).get("selector") or {}
        text = selector_text(selector)
        if not text:
            raise TargetError(f"{self.label}: no pod selector (neither /scale status.selector nor spec.selector)")
        return text

    async def busy_replicas(self) -> int | None:
        """Busy pods now, when the ScaledObject has a busy probe (ebb.dev/cooldown-from: last-activity reads it)."""
        return await self.drainer.busy_replicas() if self.drainer is not None else None

    def ready_replicas(self) -> int:
        # /scale reports status.replicas (running, not necessarily ready): the closest it offers.
        return self._replicas

    async def get_manifest(self) -> dict[str, Any]:
        """The workload itself (for its pod template's environment)."""
        return to_dict(await self.client.get(self.resource, self.name, namespace=self.namespace))

    async def close(self) -> None:
        """Nothing to release: the workload stays as it is."""
