"""InterceptorRoutes (http.keda.sh/v1beta1) as the interceptor serves them: routing rules, static answers.

An InterceptorRoute is a route only; the ScaledObject whose `external-push` trigger says
`interceptorRoute: <name>` scales it. Under `ebb run` that ScaledObject's target ProcessGroup serves the route
(replica i on target.port + i) and its trigger reads the interceptor's counts in process.

Static answers follow the add-on's interceptor (interceptor/middleware/static_route.go, placeholder.go,
static_response.go): a static route is matched before counting (first route, any of its rules) and never scales
anything; `Always` answers at once, `WhenUnavailable` only while no replica is ready (status 200 unless set).
A placeholder answers while no replica is ready (status 503 unless set), is counted, and wakes the scaling
loop. A body comes from `body`, or from a ConfigMap labelled `http.keda.sh/response-body: "true"` (its `key`,
else the request path without its leading "/", "index.html" for "/"), else it is empty.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from multidict import CIMultiDict

from ebb.http.interceptor import RequestHead, Route, StaticAnswer
from ebb.http.routing import HeaderMatch, RouteRule, strip_port
from ebb.spec.models import (
    RESPONSE_BODY_LABEL,
    ConfigMap,
    InterceptorRoute,
    RoutingRule,
    ScaledObject,
    StaticResponse,
    StaticRoute,
    interceptor_route_of,
)
from ebb.spec.resources import ResourceSet

DEFAULT_CONFIG_MAP_KEY = "index.html"


def scaled_objects_for(resources: ResourceSet, route: InterceptorRoute) -> list[ScaledObject]:
    """The ScaledObjects with a trigger that reads `route`, as the add-on's scaler pairs them."""
    return [
        so
        for so in resources.scaled_objects(route.metadata.namespace)
        if any(interceptor_route_of(trigger) == route.name for trigger in so.spec.triggers)
    ]


def route_rules(route: InterceptorRoute, served: Route, order: tuple[float, str, str]) -> list[RouteRule[Route]]:
    """One routing-table rule per `spec.rules` entry: each has its own hosts, paths and headers."""
    return [
        RouteRule(
            route=served,
            hosts=tuple(rule.hosts),
            path_prefixes=tuple(p.value for p in rule.paths),
            headers=tuple(HeaderMatch(h.name, h.value) for h in rule.headers),
            order=order,
        )
        for rule in route.spec.rules
    ]


def _path_segments(path: str) -> str:
    return path.strip("/")


def rule_matches(rule: RoutingRule, host: str, path: str, headers: Mapping[str, Sequence[str]]) -> bool:
    """pkg/routing/match.go: any host (exact, `*.suffix`, `*`), any path prefix on whole segments, every header."""
    if rule.hosts:
        hostname = strip_port(host).lower()
        patterns = [pattern.lower() for pattern in rule.hosts]
        if not any(
            p in ("", "*") or hostname == p or (p.startswith("*.") and hostname.endswith(p[1:])) for p in patterns
        ):
            return False
    if rule.paths:
        wanted = _path_segments(path)
        ok = False
        for match in rule.paths:
            prefix = _path_segments(match.value)
            if not prefix or wanted == prefix or wanted.startswith(prefix + "/"):
                ok = True
                break
        if not ok:
            return False
    for header in rule.headers:
        values = headers.get(header.name.lower(), ())
        if header.value is None and not values:
            return False
        if header.value is not None and header.value not in values:
            return False
    return True


def _headers(request: RequestHead) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


def config_map_problem(route: InterceptorRoute, response: StaticResponse, resources: ResourceSet) -> str | None:
    """Why a response's ConfigMap cannot give a body (said once when `ebb run` starts), or None."""
    ref = response.body_from_config_map
    if ref is None:
        return None
    config_map = resources.get(ConfigMap, route.metadata.namespace, ref.name)
    namespace = route.metadata.namespace
    if config_map is None or config_map.metadata.labels.get(RESPONSE_BODY_LABEL) != "true":
        label = f'{RESPONSE_BODY_LABEL}: "true"'
        return f"ConfigMap {namespace}/{ref.name} not found: ensure it exists and has the label {label}"
    if ref.key and ref.key not in config_map.data:
        return f"key {ref.key!r} not found in ConfigMap {namespace}/{ref.name}"
    return None


def responder(
    route: InterceptorRoute, response: StaticResponse, default_status: int, resources: ResourceSet
) -> Callable[[RequestHead], web.StreamResponse]:
    """The static response as a handler; a ConfigMap body is read from the loaded manifests."""
    status = response.status_code or default_status
    problem = config_map_problem(route, response, resources)

    def respond(request: RequestHead) -> web.StreamResponse:
        headers: CIMultiDict[str] = CIMultiDict(response.headers)
        body = response.body or ""
        ref = response.body_from_config_map
        if ref is not None:
            if problem is not None:
                return web.Response(status=500, text=f"{route.ref}: {problem}\n")
            config_map = resources.get(ConfigMap, route.metadata.namespace, ref.name)
            assert config_map is not None
            key = ref.key or (request.path.removeprefix("/") or DEFAULT_CONFIG_MAP_KEY)
            # A key derived from the path that is missing is an empty body (a missing /favicon.ico is no error).
            body = config_map.data.get(key, "")
            content_type, _ = mimetypes.guess_type(key)
            if key in config_map.data and content_type and "Content-Type" not in headers:
                headers["Content-Type"] = content_type
        return web.Response(status=status, body=body.encode(), headers=headers)

    return respond


def static_matcher(
    route: InterceptorRoute, resources: ResourceSet
) -> Callable[[RequestHead], StaticAnswer | None] | None:
    """First static route with a matching rule wins; None when the route has no static routes."""
    statics: list[tuple[StaticRoute, StaticAnswer]] = [
        (static, StaticAnswer(responder(route, static.response, 200, resources), static.response_mode == "Always"))
        for static in route.spec.static_routes
    ]
    if not statics:
        return None

    def match(request: RequestHead) -> StaticAnswer | None:
        headers = _headers(request)
        for static, answer in statics:
            if any(rule_matches(rule, request.host, request.path, headers) for rule in static.rules):
                return answer
        return None

    return match
