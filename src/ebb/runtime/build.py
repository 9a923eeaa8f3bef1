"""From manifests to live parts: scalers with their credentials resolved, and the core's decider.

Shared by `ebb run`, `ebb check`, `ebb metrics` and the operator (which passes its own AuthStore).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ebb.errors import SpecError
from ebb.runtime.observer import ObjectRef
from ebb.scalers import available_types, build_scaler
from ebb.scalers.base import DEFAULT_TIMEOUT, EndpointSliceLister, MetricType, Scaler, TriggerContext
from ebb.spec.auth import DEFAULT_CLUSTER_OBJECT_NAMESPACE, AuthStore, resolve_triggers_auth
from ebb.spec.models import ScaledJob, ScaledObject
from ebb.spec.resources import ResourceSet

METRIC_TYPES: tuple[MetricType, ...] = ("AverageValue", "Value", "Utilization")


def object_ref(obj: ScaledObject | ScaledJob) -> ObjectRef:
    return ObjectRef(obj.kind, obj.metadata.namespace or "default", obj.metadata.name)


def _metric_type(obj: ScaledObject | ScaledJob, index: int) -> MetricType:
    trigger = obj.spec.triggers[index]
    if trigger.metric_type is not None:
        return trigger.metric_type
    if trigger.is_resource:
        # cpu/memory before metricType existed said it in metadata.type (deprecated, still honoured by KEDA).
        legacy = trigger.metadata.get("type", "")
        for mt in METRIC_TYPES:
            if legacy == mt:
                return mt
        raise SpecError(
            obj.ref,
            f"spec.triggers[{index}].metricType",
            f"{trigger.type} triggers need metricType Utilization or AverageValue",
        )
    return "AverageValue"


def _target_requests(obj: ScaledObject | ScaledJob, store: AuthStore) -> dict[str, float] | None:
    """A local ProcessGroup target's requests (for cpu/memory Utilization); None when the target is not one."""
    if not isinstance(obj, ScaledObject) or not isinstance(store, ResourceSet):
        return None
    group = store.scale_target(obj)
    if group is None:
        return None
    return group.spec.resources.effective_requests() if group.spec.resources is not None else {}


def build_scalers(
    obj: ScaledObject | ScaledJob,
    store: AuthStore,
    target_env: Mapping[str, str] | None = None,
    *,
    env_secrets: frozenset[str] = frozenset(),
    timeout: float = DEFAULT_TIMEOUT,
    cluster_object_namespace: str = DEFAULT_CLUSTER_OBJECT_NAMESPACE,
    target_pids: Callable[[], Sequence[int]] | None = None,
    endpoint_slices: EndpointSliceLister | None = None,
    skip_types: frozenset[str] = frozenset(),
) -> list[Scaler]:
    """One scaler per trigger, not connected yet. Raises SpecError naming the object, trigger and field.

    `target_pids` gives the running workers of a local ProcessGroup, which cpu and memory triggers measure;
    `endpoint_slices` the cluster's EndpointSlices (in the operator), for metrics-api aggregation.
    Triggers whose type is in `skip_types` are left out (`ebb check` validates the others of an object that
    also uses KEDA trigger types ebb lacks).
    """
    env = dict(target_env or {})
    requests = _target_requests(obj, store)
    auths = resolve_triggers_auth(obj, store, env, cluster_object_namespace=cluster_object_namespace)
    modifiers = isinstance(obj, ScaledObject) and obj.spec.scaling_modifiers is not None
    ref = object_ref(obj)
    scalers: list[Scaler] = []
    for index, (trigger, auth) in enumerate(zip(obj.spec.triggers, auths, strict=True)):
        if trigger.type in skip_types:
            continue
        ctx = TriggerContext(
            kind=ref.kind,
            namespace=ref.namespace,
            name=ref.name,
            trigger_index=index,
            trigger_type=trigger.type,
            trigger_name=trigger.name,
            metric_type=_metric_type(obj, index),
            timeout=timeout,
            secrets=auth.secret_values | env_secrets,
            as_metric_source=modifiers,
            target_pids=target_pids,
            target_requests=requests,
            endpoint_slices=endpoint_slices,
        )
        scalers.append(build_scaler(trigger.type, trigger.metadata, ctx=ctx, auth_params=auth.params, resolved_env=env))
    return scalers


def self_contained_trigger_errors(obj: ScaledObject | ScaledJob) -> list[SpecError]:
    """The parameter errors of every trigger whose parameters are all in its own metadata.

    For the admission webhook, which has no Secrets and no pod environment: a trigger with an
    authenticationRef or a `…FromEnv` key is left to the controller, as KEDA leaves every trigger to it.
    Triggers of KEDA types ebb lacks are skipped too.
    """
    ref = object_ref(obj)
    modifiers = isinstance(obj, ScaledObject) and obj.spec.scaling_modifiers is not None
    errors: list[SpecError] = []
    for index, trigger in enumerate(obj.spec.triggers):
        if trigger.authentication_ref is not None or any(key.endswith("FromEnv") for key in trigger.metadata):
            continue
        if trigger.type not in available_types():
            continue
        try:
            ctx = TriggerContext(
                kind=ref.kind,
                namespace=ref.namespace,
                name=ref.name,
                trigger_index=index,
                trigger_type=trigger.type,
                trigger_name=trigger.name,
                metric_type=_metric_type(obj, index),
                as_metric_source=modifiers,
            )
            build_scaler(trigger.type, trigger.metadata, ctx=ctx)
        except SpecError as exc:
            errors.append(exc)
    return errors
