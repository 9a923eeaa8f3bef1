"""Credentials from the cluster: the synchronous AuthStore the spec layer wants, filled from the API first.

Only what one object's triggers and its target's container reference is fetched, once per (re)build.
"""

from __future__ import annotations

import base64
from typing import Any

from ebb.errors import SpecError
from ebb.kube.client import (
    API_ERRORS,
    CLUSTER_TRIGGER_AUTHENTICATION,
    CONFIG_MAP,
    SECRET,
    TRIGGER_AUTHENTICATION,
    AsyncClient,
    is_not_found,
    to_dict,
)
from ebb.spec.auth import ResolvedEnv, resolve_env_vars
from ebb.spec.models import (
    ClusterTriggerAuthentication,
    Container,
    ScaledJob,
    ScaledObject,
    TriggerAuthentication,
    TriggerAuthenticationSpec,
)


class PrefetchedStore:
    """An AuthStore over dicts filled by `prefetch_*` (a missing entry means "not found")."""

    def __init__(self) -> None:
        self.trigger_authentications: dict[tuple[str, str], TriggerAuthentication] = {}
        self.cluster_trigger_authentications: dict[str, ClusterTriggerAuthentication] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {}

    def get_trigger_authentication(self, namespace: str, name: str) -> TriggerAuthentication | None:
        return self.trigger_authentications.get((namespace, name))

    def get_cluster_trigger_authentication(self, name: str) -> ClusterTriggerAuthentication | None:
        return self.cluster_trigger_authentications.get(name)

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.config_maps.get((namespace, name))


async def _get(client: AsyncClient, res: Any, name: str, namespace: str | None) -> dict[str, Any] | None:
    try:
        if namespace is None:
            return to_dict(await client.get(res, name))
        return to_dict(await client.get(res, name, namespace=namespace))
    except API_ERRORS as exc:
        if is_not_found(exc):
            return None
        raise


def _decode_secret(manifest: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (manifest.get("data") or {}).items()}
    values.update(manifest.get("stringData") or {})
    return values


async def _fetch_secret(client: AsyncClient, store: PrefetchedStore, namespace: str, name: str) -> None:
    if (namespace, name) not in store.secrets and (manifest := await _get(client, SECRET, name, namespace)):
        store.secrets[(namespace, name)] = _decode_secret(manifest)


async def _fetch_config_map(client: AsyncClient, store: PrefetchedStore, namespace: str, name: str) -> None:
    if (namespace, name) not in store.config_maps and (manifest := await _get(client, CONFIG_MAP, name, namespace)):
        store.config_maps[(namespace, name)] = dict(manifest.get("data") or {})


async def _fetch_auth_refs(
    client: AsyncClient, store: PrefetchedStore, spec: TriggerAuthenticationSpec, namespace: str
) -> None:
    for secret_ref in spec.secret_target_ref:
        await _fetch_secret(client, store, namespace, secret_ref.name)
    for cm_ref in spec.config_map_target_ref:
        await _fetch_config_map(client, store, namespace, cm_ref.name)
    if spec.oauth2 is not None and spec.oauth2.client_secret is not None:
        await _fetch_secret(client, store, namespace, spec.oauth2.client_secret.value_from.secret_key_ref.name)


def _parse(model: type[Any], manifest: dict[str, Any], what: str) -> Any:
    from ebb.spec.loader import parse_object

    obj, errors = parse_object(manifest, label=what)
    if errors:
        raise errors[0]
    if not isinstance(obj, model):
        raise SpecError(what, "kind", f"expected {model.__name__}")
    return obj


async def prefetch_auth(
    client: AsyncClient, obj: ScaledObject | ScaledJob, *, cluster_object_namespace: str, store: PrefetchedStore
) -> None:
    """Fetch every (Cluster)TriggerAuthentication the triggers name, and the Secrets/ConfigMaps those read."""
    namespace = obj.metadata.namespace
    for trigger in obj.spec.triggers:
        ref = trigger.authentication_ref
        if ref is None:
            continue
        if ref.kind == "ClusterTriggerAuthentication":
            if ref.name in store.cluster_trigger_authentications:
                continue
            manifest = await _get(client, CLUSTER_TRIGGER_AUTHENTICATION, ref.name, None)
            if manifest is None:
                continue
            cta = _parse(ClusterTriggerAuthentication, manifest, f"ClusterTriggerAuthentication {ref.name}")
            store.cluster_trigger_authentications[ref.name] = cta
            await _fetch_auth_refs(client, store, cta.spec, cluster_object_namespace)
        else:
            if (namespace, ref.name) in store.trigger_authentications:
                continue
            manifest = await _get(client, TRIGGER_AUTHENTICATION, ref.name, namespace)
            if manifest is None:
                continue
            ta = _parse(TriggerAuthentication, manifest, f"TriggerAuthentication {namespace}/{ref.name}")
            store.trigger_authentications[(namespace, ref.name)] = ta
            await _fetch_auth_refs(client, store, ta.spec, namespace)


def pick_container(containers: list[dict[str, Any]], wanted: str | None, obj: str, path: str) -> int:
    """envSourceContainerName, else the first container (KEDA's rule)."""
    if not containers:
        raise SpecError(obj, path, "the pod template has no containers")
    if not wanted:
        return 0
    for index, container in enumerate(containers):
        if container.get("name") == wanted:
            return index
    raise SpecError(obj, path, f"no container named {wanted!r}")


async def container_env(
    client: AsyncClient,
    store: PrefetchedStore,
    containers: list[dict[str, Any]],
    namespace: str,
    *,
    wanted: str | None,
    obj: str,
    path: str,
) -> ResolvedEnv:
    """The environment of the chosen container: value, valueFrom.secretKeyRef/configMapKeyRef and envFrom."""
    index = pick_container(containers, wanted, obj, path)
    container = Container.model_validate(containers[index])
    for var in container.env:
        source = var.value_from
        if source is not None and source.secret_key_ref is not None:
            await _fetch_secret(client, store, namespace, source.secret_key_ref.name)
        elif source is not None and source.config_map_key_ref is not None:
            await _fetch_config_map(client, store, namespace, source.config_map_key_ref.name)
    for env_from in container.env_from:
        if env_from.secret_ref is not None:
            await _fetch_secret(client, store, namespace, env_from.secret_ref.name)
        elif env_from.config_map_ref is not None:
            await _fetch_config_map(client, store, namespace, env_from.config_map_ref.name)
    # fieldRef/resourceFieldRef values exist only inside the pod; KEDA skips them too.
    env = [v for v in container.env if v.value_from is None or v.value_from.unsupported_source is None]
    return resolve_env_vars(env, container.env_from, namespace, store, obj=obj, path=f"{path}[{index}]")


def template_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """spec.template.spec.containers of a workload (Deployment, StatefulSet, most /scale CRDs)."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    return [c for c in containers if isinstance(c, dict)]
