"""The webhook's checks for HTTPScaledObjects and InterceptorRoutes: one route per host + path prefix + headers,
and one scaler per workload.

A route is a host (port dropped, lower case; none means every host), a path prefix (compared by whole segments,
as the interceptor matches: `/api` and `/api/` are one prefix) and the set of `headers` it requires; an
InterceptorRoute claims one per host, path and the headers of each of its `spec.rules`. The add-on has no
webhook for this: it accepts both objects and its routing table sends the traffic to one of them, so the other
silently never gets a request (and never scales). ebb refuses the second object at admission, naming both
objects and the field. Objects on the same host and prefix with different `headers` are different routes (the
add-on routes between them by header), not a conflict. An InterceptorRoute and an HTTPScaledObject of the same
namespace and name may overlap: that is the add-on's migration path (the route takes precedence).

A workload is scaled by one thing: an HTTPScaledObject (unless it only routes, with the add-on's
skip-scaledobject-creation annotation) and a ScaledObject on the same target are refused, either way round, and so
are two HTTPScaledObjects that both scale it. That includes a ScaledObject of the HTTPScaledObject's own name, the
one the add-on's operator creates for it (left behind by a migration from the add-on): ebb scales the
HTTPScaledObject itself, so that ScaledObject would be a second loop on the same workload; its message says to
delete it. The webhook refuses the object being created;
the operator, which also meets pairs created while the webhook was off, refuses the one that arrived second
(`arrival`: creationTimestamp, then name), so the first keeps scaling, and so does the webhook on an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ebb.http.routing import CATCH_ALL, strip_port
from ebb.kube.admission import Arrival, Cluster, Denial, arrival
from ebb.spec import parse_object
from ebb.spec.models import (
    HTTP_API_VERSION,
    IR_API_VERSION,
    SKIP_SCALING_ANNOTATION,
    HTTPScaledObject,
    InterceptorRoute,
    ScaledObject,
)

#: KEDA's webhook metric reason for this refusal (ebb's own; KEDA has no such check).
REASON: Final = "conflicting-route"
#: KEDA's webhook metric reason when two ScaledObjects scale one workload (here one is an HTTPScaledObject).
SCALED_REASON: Final = "other-scaled-object"

Routed = HTTPScaledObject | InterceptorRoute
ALL_NAMESPACES: Final = "*"

RouteKey = tuple[str, tuple[str, ...], frozenset[tuple[str, str | None]]]


def _segments(prefix: str) -> tuple[str, ...]:
    trimmed = prefix.strip("/")
    return tuple(trimmed.split("/")) if trimmed else ()


def _add(
    keys: dict[RouteKey, str],
    hosts: list[tuple[str | None, str]],
    prefixes: list[tuple[str | None, str]],
    headers: frozenset[tuple[str, str | None]],
    whole: str,
) -> None:
    for host_field, raw_host in hosts:
        host = strip_port(raw_host).lower() or CATCH_ALL
        for prefix_field, prefix in prefixes:
            keys.setdefault((host, _segments(prefix), headers), prefix_field or host_field or whole)


def route_keys(obj: Routed) -> dict[RouteKey, str]:
    """Each route the object claims, with the field that claims it (for the message)."""
    keys: dict[RouteKey, str] = {}
    if isinstance(obj, InterceptorRoute):
        for r, rule in enumerate(obj.spec.rules):
            at = f"spec.rules[{r}]"
            headers = frozenset((h.name.lower(), h.value) for h in rule.headers)
            hosts: list[tuple[str | None, str]] = [(f"{at}.hosts[{i}]", h) for i, h in enumerate(rule.hosts)]
            paths: list[tuple[str | None, str]] = [
                (f"{at}.paths[{i}].value", p.value) for i, p in enumerate(rule.paths)
            ]
            _add(keys, hosts or [(None, CATCH_ALL)], paths or [(None, "")], headers, at)
        return keys
    spec = obj.spec
    headers = frozenset((h.name.lower(), h.value) for h in spec.headers)
    hosts = [(f"spec.hosts[{i}]", h) for i, h in enumerate(spec.hosts)]
    prefixes: list[tuple[str | None, str]] = [(f"spec.pathPrefixes[{i}]", p) for i, p in enumerate(spec.path_prefixes)]
    _add(keys, hosts or [(None, CATCH_ALL)], prefixes or [(None, "")], headers, "spec.hosts")
    return keys


def _describe(key: RouteKey) -> str:
    host, segments, headers = key
    where = "every host" if host == CATCH_ALL else f"host {host!r}"
    text = f"{where} and path prefix {'/' + '/'.join(segments)!r}"
    if headers:
        text += " with headers " + ", ".join(f"{n}={v}" if v is not None else n for n, v in sorted(headers, key=str))
    return text


def route_conflict(obj: Routed, others: Iterable[Mapping[str, Any]]) -> Denial | None:
    """The first route of `obj` that another object (`others`: HTTPScaledObject and InterceptorRoute manifests,
    any namespace) already claims."""
    mine = route_keys(obj)
    own = (obj.metadata.namespace, obj.name)
    for body in others:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        kind = str(body.get("kind") or "HTTPScaledObject")
        # Itself, or its pair of the other kind (the add-on's migration path: the InterceptorRoute wins).
        if (namespace, name) == own or meta.get("deletionTimestamp"):
            continue
        other, errors = parse_object(dict(body), label=f"{kind} {namespace}/{name}")
        if errors or not isinstance(other, HTTPScaledObject | InterceptorRoute):
            continue  # it routes nothing
        theirs = route_keys(other)
        for key, field in mine.items():
            if key in theirs:
                both_hso = isinstance(obj, HTTPScaledObject) and isinstance(other, HTTPScaledObject)
                who = "two HTTPScaledObjects" if both_hso else "two routes (HTTPScaledObjects or InterceptorRoutes)"
                return Denial(
                    obj.ref,
                    field,
                    f"{_describe(key)} is already routed by {other.kind} {namespace}/{name} ({theirs[key]}); "
                    f"{who} cannot claim the same host and path prefix (give one another host, prefix or headers)",
                    REASON,
                    conflicting=(other.kind, namespace, name),
                )
    return None


async def check_routes(obj: Routed, cluster: Cluster) -> Denial | None:
    """`route_conflict` against every HTTPScaledObject and InterceptorRoute in the cluster (hosts are
    cluster-wide). Raises ClusterUnavailable."""
    others = [
        *await cluster.list(HTTP_API_VERSION, "HTTPScaledObject", ALL_NAMESPACES),
        *await cluster.list(IR_API_VERSION, "InterceptorRoute", ALL_NAMESPACES),
    ]
    return route_conflict(obj, others)


def _target(api_version: str | None, kind: str | None, name: str) -> tuple[str, str, str]:
    group = (api_version or "apps/v1").split("/")[0] if "/" in (api_version or "apps/v1") else ""
    return (group, kind or "Deployment", name)


def _earlier(meta: Mapping[str, Any], mine: Arrival | None) -> bool:
    """True when the object of `meta` counts against one that arrived at `mine` (None: every object counts, as
    for an object being created)."""
    return mine is None or arrival(meta.get("creationTimestamp"), str(meta.get("name") or "")) < mine


def _own_arrival(obj: HTTPScaledObject | ScaledObject, ordered: bool) -> Arrival | None:
    return arrival(obj.metadata.creation_timestamp, obj.name) if ordered else None


async def check_workload_of_http(obj: HTTPScaledObject, cluster: Cluster, *, ordered: bool = False) -> Denial | None:
    """An HTTPScaledObject that scales its target: no ScaledObject (its own, of the same name, included), and no
    other HTTPScaledObject that scales (not only routes), may already scale the same workload. `ordered`: only one
    that arrived before `obj` counts (the operator, and the webhook on an update); else any (the webhook on a
    create). Raises ClusterUnavailable."""
    if not obj.scales:
        return None
    ref = obj.spec.scale_target_ref
    if ref.is_process_group:
        return None
    mine = _target(ref.api_version, ref.kind, ref.name)
    since = _own_arrival(obj, ordered)
    first = _first(obj.ref if ordered else None)
    for body in await cluster.list("keda.sh/v1alpha1", "ScaledObject", obj.metadata.namespace):
        meta = body.get("metadata") or {}
        target = (body.get("spec") or {}).get("scaleTargetRef") or {}
        if meta.get("deletionTimestamp") or not target.get("name"):
            continue
        if _target(target.get("apiVersion"), target.get("kind"), str(target["name"])) != mine:
            continue
        if not _earlier(meta, since):
            continue
        fix = (
            _ADDONS_OWN
            if meta.get("name") == obj.name
            else f'delete that ScaledObject, or give this object the annotation {SKIP_SCALING_ANNOTATION}: "true" '
            "to route only"
        )
        return Denial(
            obj.ref,
            "spec.scaleTargetRef",
            f"the workload {mine[1]} {ref.name!r} is already scaled by ScaledObject "
            f"{obj.metadata.namespace}/{meta.get('name')}{first}; one workload has one scaler ({fix})",
            SCALED_REASON,
            conflicting=("ScaledObject", obj.metadata.namespace, str(meta.get("name"))),
        )
    return await _check_http_pair(obj, mine, since, first, cluster)


async def _http_scaler_of(
    cluster: Cluster, namespace: str, mine: tuple[str, str, str], since: Arrival | None, *, besides: str = ""
) -> HTTPScaledObject | None:
    """The first HTTPScaledObject of `namespace` (other than `besides`) that scales the workload `mine` (not only
    routes), not being deleted, and arrived before `since` (None: whenever it arrived)."""
    for body in await cluster.list(HTTP_API_VERSION, "HTTPScaledObject", namespace):
        meta = body.get("metadata") or {}
        if meta.get("name") == besides or meta.get("deletionTimestamp") or not _earlier(meta, since):
            continue
        hso, errors = parse_object(dict(body), label=f"HTTPScaledObject {namespace}/{meta.get('name')}")
        if errors or not isinstance(hso, HTTPScaledObject) or not hso.scales:
            continue
        target = hso.spec.scale_target_ref
        if _target(target.api_version, target.kind, target.name) == mine:
            return hso
    return None


async def _check_http_pair(
    obj: HTTPScaledObject, mine: tuple[str, str, str], since: Arrival | None, first: str, cluster: Cluster
) -> Denial | None:
    """Two HTTPScaledObjects that both scale one workload (either may route only instead)."""
    namespace, ref = obj.metadata.namespace, obj.spec.scale_target_ref
    other = await _http_scaler_of(cluster, namespace, mine, since, besides=obj.name)
    if other is None:
        return None
    return Denial(
        obj.ref,
        "spec.scaleTargetRef",
        f"the workload {mine[1]} {ref.name!r} is already scaled by HTTPScaledObject {namespace}/{other.name}"
        f"{first}; one workload has one scaler (delete one of them, or give one the annotation "
        f'{SKIP_SCALING_ANNOTATION}: "true" to route only)',
        SCALED_REASON,
        conflicting=("HTTPScaledObject", namespace, other.name),
    )


async def check_workload_of_scaled_object(
    so: ScaledObject, cluster: Cluster, *, ordered: bool = False
) -> Denial | None:
    """A ScaledObject: no HTTPScaledObject (that scales, not only routes; one of the same name included, whose
    ScaledObject the add-on would have made this) may already scale the same workload. `ordered` as for
    `check_workload_of_http`. Raises ClusterUnavailable."""
    ref, namespace = so.spec.scale_target_ref, so.metadata.namespace
    mine = _target(ref.api_version, ref.kind, ref.name)
    hso = await _http_scaler_of(cluster, namespace, mine, _own_arrival(so, ordered))
    if hso is None:
        return None
    fix = (
        _ADDONS_OWN
        if hso.name == so.name
        else f'give the HTTPScaledObject the annotation {SKIP_SCALING_ANNOTATION}: "true" and scale it with '
        "this ScaledObject's external-push trigger, or migrate it to an InterceptorRoute"
    )
    first = _first(so.ref if ordered else None)
    return Denial(
        so.ref,
        "spec.scaleTargetRef",
        f"the workload {mine[1]} {ref.name!r} is already scaled by HTTPScaledObject {namespace}/"
        f"{hso.name}{first}; one workload has one scaler ({fix})",
        SCALED_REASON,
        conflicting=("HTTPScaledObject", namespace, hso.name),
    )


#: The hint when the pair shares a name: the ScaledObject is the one the add-on's operator made for it.
_ADDONS_OWN: Final = (
    "a ScaledObject of the HTTPScaledObject's own name is the one the KEDA HTTP add-on's operator creates for it; "
    "ebb scales the HTTPScaledObject itself, so delete that ScaledObject"
)


def _first(ref: str | None) -> str:
    """At reconcile, the object refused names itself too (the message is its condition's, on it alone)."""
    return f", created before {ref} (which therefore does not scale it)" if ref else ""
