"""Credentials: TriggerAuthentication / ClusterTriggerAuthentication resolution and a target's environment.

Follows KEDA's resolver (pkg/scaling/resolver): `env` (from the scale target's environment), then
`configMapTargetRef`, then `secretTargetRef`, later sources overriding earlier ones; a
ClusterTriggerAuthentication reads its Secrets and ConfigMaps from one "cluster object namespace".
Unlike KEDA, which logs and passes an empty string, a missing reference is a SpecError: it names the
object, the authenticationRef and what is missing, never a secret's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

from ebb.errors import SpecError
from ebb.spec.models import (
    ClusterTriggerAuthentication,
    Container,
    EnvFromSource,
    EnvVar,
    ProcessGroup,
    ScaledJob,
    ScaledObject,
    ScaleTrigger,
    TriggerAuthentication,
    TriggerAuthenticationSpec,
)

#: KEDA reads a ClusterTriggerAuthentication's Secrets from its own namespace (KEDA_CLUSTER_OBJECT_NAMESPACE).
DEFAULT_CLUSTER_OBJECT_NAMESPACE = "ebb"

#: The TriggerAuthentication sources a local run resolves.
LOCAL_AUTH_SOURCES = ("secretTargetRef", "configMapTargetRef", "env", "oauth2")


class AuthStore(Protocol):
    """Where credentials come from: local files (ResourceSet) or, for the operator, the Kubernetes API."""

    def get_trigger_authentication(self, namespace: str, name: str) -> TriggerAuthentication | None: ...

    def get_cluster_trigger_authentication(self, name: str) -> ClusterTriggerAuthentication | None: ...

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's values, decoded to text; None when there is no such Secret."""
        ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class ResolvedAuth:
    """A trigger's authParams, and the values among them that must be masked in any output."""

    params: dict[str, str] = field(default_factory=dict)
    secret_values: frozenset[str] = frozenset()


class ResolvedEnv(dict[str, str]):
    """A target's environment; `secret_values` are the values that came from Secrets."""

    def __init__(self, values: Mapping[str, str] | None = None, secret_values: frozenset[str] = frozenset()) -> None:
        super().__init__(values or {})
        self.secret_values = secret_values


def unsupported_auth_providers(spec: TriggerAuthenticationSpec) -> list[str]:
    """The providers a TriggerAuthentication uses that a local run cannot resolve (by their field names).

    They load (KEDA manifests stay valid) but resolving them locally is an error. podIdentity with
    provider `none` is KEDA's default and needs nothing.
    """
    found: list[str] = []
    if spec.pod_identity is not None and spec.pod_identity.provider != "none":
        found.append(f"podIdentity (provider {spec.pod_identity.provider})")
    for attr, alias in (
        ("hashi_corp_vault", "hashiCorpVault"),
        ("azure_key_vault", "azureKeyVault"),
        ("gcp_secret_manager", "gcpSecretManager"),
        ("aws_secret_manager", "awsSecretManager"),
        ("file_path", "filePath"),
    ):
        if getattr(spec, attr):
            found.append(alias)
    if spec.bound_service_account_token:
        found.append("boundServiceAccountToken")
    return found


def _trigger_field(index: int | None) -> str:
    return f"spec.triggers[{index}].authenticationRef" if index is not None else "authenticationRef"


def resolve_trigger_auth(
    trigger: ScaleTrigger,
    namespace: str,
    store: AuthStore,
    target_env: Mapping[str, str] | None = None,
    *,
    obj: str | None = None,
    trigger_index: int | None = None,
    cluster_object_namespace: str = DEFAULT_CLUSTER_OBJECT_NAMESPACE,
) -> ResolvedAuth:
    """The authParams of one trigger of an object in `namespace`.

    `target_env` is the scale target's environment (for `env` entries; `containerName` is ignored
    locally). `obj` ("ScaledObject default/worker") and `trigger_index` only shape error messages.
    """
    ref = trigger.authentication_ref
    if ref is None:
        return ResolvedAuth()
    who = obj or f"trigger {trigger.name or trigger.type}"
    where = _trigger_field(trigger_index)

    spec: TriggerAuthenticationSpec
    if ref.kind == "ClusterTriggerAuthentication":
        cta = store.get_cluster_trigger_authentication(ref.name)
        if cta is None:
            raise SpecError(who, where, f"ClusterTriggerAuthentication {ref.name} not found")
        spec, refs_namespace = cta.spec, cluster_object_namespace
        label = f"ClusterTriggerAuthentication {ref.name}"
    else:
        ta = store.get_trigger_authentication(namespace, ref.name)
        if ta is None:
            raise SpecError(who, where, f"TriggerAuthentication {namespace}/{ref.name} not found")
        spec, refs_namespace = ta.spec, namespace
        label = f"TriggerAuthentication {namespace}/{ref.name}"

    def fail(message: str) -> SpecError:
        return SpecError(who, where, f"{label}: {message}")

    unsupported = unsupported_auth_providers(spec)
    if unsupported:
        raise fail(
            f"{', '.join(unsupported)} cannot be resolved when running locally; use {', '.join(LOCAL_AUTH_SOURCES)}"
        )

    params: dict[str, str] = {}
    secrets: set[str] = set()
    for index, env in enumerate(spec.env):
        if target_env is None:
            raise fail(f"env[{index}] reads {env.name!r} from the scale target, which has no environment")
        if env.name not in target_env:
            raise fail(f"env[{index}]: the scale target has no environment variable {env.name!r}")
        params[env.parameter] = target_env[env.name]
        # Environment variables named in a TriggerAuthentication are credentials more often than not.
        secrets.add(target_env[env.name])
    for index, cm_ref in enumerate(spec.config_map_target_ref):
        values = store.get_config_map(refs_namespace, cm_ref.name)
        if values is None:
            raise fail(f"configMapTargetRef[{index}]: ConfigMap {refs_namespace}/{cm_ref.name} not found")
        if cm_ref.key not in values:
            where_cm = f"configMapTargetRef[{index}]: ConfigMap {refs_namespace}/{cm_ref.name}"
            raise fail(f"{where_cm} has no key {cm_ref.key!r}")
        params[cm_ref.parameter] = values[cm_ref.key]
    for index, secret_ref in enumerate(spec.secret_target_ref):
        params[secret_ref.parameter] = _secret_value(
            store, refs_namespace, secret_ref.name, secret_ref.key, f"secretTargetRef[{index}]", fail
        )
        secrets.add(params[secret_ref.parameter])
    if spec.oauth2 is not None:
        oauth2 = spec.oauth2
        params["oauthTokenURI"] = oauth2.token_url
        params["clientID"] = oauth2.client_id
        params["clientSecret"] = ""
        if oauth2.client_secret is not None:
            selector = oauth2.client_secret.value_from.secret_key_ref
            params["clientSecret"] = _secret_value(
                store, refs_namespace, selector.name, selector.key, "oauth2.clientSecret", fail
            )
            secrets.add(params["clientSecret"])
        if oauth2.scopes:
            params["scopes"] = ",".join(oauth2.scopes)
        if oauth2.token_url_params:
            params["endpointParams"] = urlencode(sorted(oauth2.token_url_params.items()))
    return ResolvedAuth(params=params, secret_values=frozenset(value for value in secrets if value))


class _Fail(Protocol):
    def __call__(self, message: str) -> SpecError: ...


def _secret_value(store: AuthStore, namespace: str, name: str, key: str, what: str, fail: _Fail) -> str:
    values = store.get_secret(namespace, name)
    if values is None:
        raise fail(f"{what}: Secret {namespace}/{name} not found")
    if key not in values:
        raise fail(f"{what}: Secret {namespace}/{name} has no key {key!r}")
    return values[key]


def resolve_triggers_auth(
    obj: ScaledObject | ScaledJob,
    store: AuthStore,
    target_env: Mapping[str, str] | None = None,
    *,
    cluster_object_namespace: str = DEFAULT_CLUSTER_OBJECT_NAMESPACE,
) -> list[ResolvedAuth]:
    """resolve_trigger_auth for every trigger of `obj`, in order; the first failure raises."""
    return [
        resolve_trigger_auth(
            trigger,
            obj.metadata.namespace,
            store,
            target_env,
            obj=obj.ref,
            trigger_index=index,
            cluster_object_namespace=cluster_object_namespace,
        )
        for index, trigger in enumerate(obj.spec.triggers)
    ]


# --- a target's environment ------------------------------------------------------------------------


def expand_references(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known earlier variables are substituted, `$$` is a literal `$`,
    and a reference to an unknown variable is left as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            following = value[cursor + 1]
            advance = 1
            if following == "$":
                out.append("$")
            elif following == "(":
                close = value.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                else:
                    name = value[cursor + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + following)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(value[checkpoint:])
    return "".join(out)


def resolve_env_vars(
    env: Sequence[EnvVar],
    env_from: Sequence[EnvFromSource],
    namespace: str,
    store: AuthStore,
    *,
    obj: str,
    path: str,
) -> ResolvedEnv:
    """Kubernetes semantics: envFrom first, then env in order (overriding), with $(VAR) expansion.

    `obj` and `path` ("spec" for a ProcessGroup) place errors. Optional references that are missing
    are skipped; required ones raise SpecError.
    """
    resolved: dict[str, str] = {}
    secrets: set[str] = set()
    for index, source in enumerate(env_from):
        if source.secret_ref is not None:
            ref, what, lookup = source.secret_ref, "Secret", store.get_secret
            field_path = f"{path}.envFrom[{index}].secretRef"
        else:
            assert source.config_map_ref is not None
            ref, what, lookup = source.config_map_ref, "ConfigMap", store.get_config_map
            field_path = f"{path}.envFrom[{index}].configMapRef"
        values = lookup(namespace, ref.name)
        if values is None:
            if ref.optional:
                continue
            raise SpecError(obj, field_path, f"{what} {namespace}/{ref.name} not found")
        for key, value in values.items():
            resolved[(source.prefix or "") + key] = value
            if what == "Secret":
                secrets.add(value)
    for index, var in enumerate(env):
        field_path = f"{path}.env[{index}]"
        if var.value_from is None:
            resolved[var.name] = expand_references(var.value or "", resolved)
            continue
        source_ref = var.value_from
        if source_ref.unsupported_source is not None:
            raise SpecError(
                obj,
                f"{field_path}.valueFrom.{source_ref.unsupported_source}",
                "cannot be resolved for a local process: use value, secretKeyRef or configMapKeyRef",
            )
        if source_ref.secret_key_ref is not None:
            selector, what, lookup = source_ref.secret_key_ref, "Secret", store.get_secret
            sub = "secretKeyRef"
        else:
            assert source_ref.config_map_key_ref is not None
            selector, what, lookup = source_ref.config_map_key_ref, "ConfigMap", store.get_config_map
            sub = "configMapKeyRef"
        values = lookup(namespace, selector.name)
        if values is None or selector.key not in values:
            if selector.optional:
                continue
            missing = (
                f"{what} {namespace}/{selector.name} not found"
                if values is None
                else f"{what} {namespace}/{selector.name} has no key {selector.key!r}"
            )
            raise SpecError(obj, f"{field_path}.valueFrom.{sub}", missing)
        resolved[var.name] = values[selector.key]
        if what == "Secret":
            secrets.add(values[selector.key])
    return ResolvedEnv(resolved, frozenset(value for value in secrets if value))


def resolve_container_env(
    container: Container, namespace: str, store: AuthStore, *, obj: str, path: str
) -> ResolvedEnv:
    """The environment of one container of a job template (`path` locates it for errors)."""
    return resolve_env_vars(container.env, container.env_from, namespace, store, obj=obj, path=path)


def resolve_env(target: ProcessGroup | ScaledJob, store: AuthStore, *, container: str | None = None) -> ResolvedEnv:
    """The environment a ProcessGroup's replicas get, or that of a ScaledJob's container.

    For a ScaledJob, `container` names the container; by default the envSourceContainerName one (else the
    first), which is where KEDA resolves `*FromEnv` parameters and TriggerAuthentication `env` from.
    """
    namespace = target.metadata.namespace
    if isinstance(target, ProcessGroup):
        return resolve_env_vars(target.spec.env, target.spec.env_from, namespace, store, obj=target.ref, path="spec")
    containers = target.spec.job_target_ref.template.spec.containers
    wanted = container or target.spec.env_source_container_name
    index = next((i for i, c in enumerate(containers) if c.name == wanted), None) if wanted else 0
    if index is None:
        raise SpecError(target.ref, "spec.jobTargetRef.template.spec.containers", f"no container named {wanted!r}")
    return resolve_container_env(
        containers[index],
        namespace,
        store,
        obj=target.ref,
        path=f"spec.jobTargetRef.template.spec.containers[{index}]",
    )
