"""The webhook's route check for HTTPScaledObjects: no two objects may claim the same route.

A route is a host (port dropped, lower case; none means every host), a path prefix (compared by whole segments,
as the interceptor matches: `/api` and `/api/` are one prefix) and the set of `headers` it requires. The add-on
has no webhook for this: it accepts both objects and its routing table sends the traffic to the older one, so
the newer one silently never gets a request (and never scales). ebb refuses the second object at admission,
naming both objects and the field. Objects on the same host and prefix with different `headers` are different
routes (the add-on routes between them by header), not a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ebb.http.routing import CATCH_ALL, strip_port
from ebb.kube.admission import Cluster, Denial
from ebb.spec import parse_object
from ebb.spec.models import HTTP_API_VERSION, HTTPScaledObject

#: KEDA's webhook metric reason for this refusal (ebb's own; KEDA has no such check).
REASON: Final = "conflicting-route"
ALL_NAMESPACES: Final = "*"

RouteKey = tuple[str, tuple[str, ...], frozenset[tuple[str, str | None]]]


def _segments(prefix: str) -> tuple[str, ...]:
    trimmed = prefix.strip("/")
    return tuple(trimmed.split("/")) if trimmed else ()


def route_keys(obj: HTTPScaledObject) -> dict[RouteKey, str]:
    """Each route the object claims, with the field that claims it (for the message)."""
    spec = obj.spec
    headers = frozenset((h.name.lower(), h.value) for h in spec.headers)
    hosts: list[tuple[int | None, str]] = [*enumerate(spec.hosts)] or [(None, CATCH_ALL)]
    prefixes: list[tuple[int | None, str]] = [*enumerate(spec.path_prefixes)] or [(None, "")]
    keys: dict[RouteKey, str] = {}
    for host_index, raw_host in hosts:
        host = strip_port(raw_host).lower() or CATCH_ALL
        for prefix_index, prefix in prefixes:
            if prefix_index is not None:
                field = f"spec.pathPrefixes[{prefix_index}]"
            elif host_index is not None:
                field = f"spec.hosts[{host_index}]"
            else:
                field = "spec.hosts"
            keys.setdefault((host, _segments(prefix), headers), field)
    return keys


def _describe(key: RouteKey) -> str:
    host, segments, headers = key
    where = "every host" if host == CATCH_ALL else f"host {host!r}"
    text = f"{where} and path prefix {'/' + '/'.join(segments)!r}"
    if headers:
        text += " with headers " + ", ".join(f"{n}={v}" if v is not None else n for n, v in sorted(headers, key=str))
    return text


def route_conflict(obj: HTTPScaledObject, others: Iterable[Mapping[str, Any]]) -> Denial | None:
    """The first route of `obj` that another object (`others`: manifests, any namespace) already claims."""
    mine = route_keys(obj)
    own = (obj.metadata.namespace, obj.name)
    for body in others:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        if (namespace, name) == own or meta.get("deletionTimestamp"):
            continue
        other, errors = parse_object(dict(body), label=f"HTTPScaledObject {namespace}/{name}")
        if errors or not isinstance(other, HTTPScaledObject):
            continue  # it routes nothing
        theirs = route_keys(other)
        for key, field in mine.items():
            if key in theirs:
                return Denial(
                    obj.ref,
                    field,
                    f"{_describe(key)} is already routed by HTTPScaledObject {namespace}/{name} ({theirs[key]}); "
                    "two HTTPScaledObjects cannot claim the same host and path prefix (give one another host, "
                    "prefix or headers)",
                    REASON,
                    conflicting=("HTTPScaledObject", namespace, name),
                )
    return None


async def check_routes(obj: HTTPScaledObject, cluster: Cluster) -> Denial | None:
    """`route_conflict` against every HTTPScaledObject in the cluster (hosts are cluster-wide). Raises
    ClusterUnavailable."""
    return route_conflict(obj, await cluster.list(HTTP_API_VERSION, "HTTPScaledObject", ALL_NAMESPACES))
