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
from ebb.http.rate import RequestRate
from ebb.http.routing import HeaderMatch, RouteRule, strip_port
from ebb.spec.models import (
    RESPONSE_BODY_LABEL,
    ConfigMap,
    InterceptorRoute,
    InterceptorRouteTimeouts,
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


#: Finds a ConfigMap by (namespace, name): the loaded manifests under `ebb run`, a watch on Kubernetes.
ConfigMaps = Callable[[str, str], ConfigMap | None]


def manifest_config_maps(resources: ResourceSet) -> ConfigMaps:
    return lambda namespace, name: resources.get(ConfigMap, namespace, name)


def config_map_problem(route: InterceptorRoute, response: StaticResponse, config_maps: ConfigMaps) -> str | None:
    """Why a response's ConfigMap cannot give a body (said once per change of the route), or None."""
    ref = response.body_from_config_map
    if ref is None:
        return None
    config_map = config_maps(route.metadata.namespace, ref.name)
    namespace = route.metadata.namespace
    if config_map is None or config_map.metadata.labels.get(RESPONSE_BODY_LABEL) != "true":
        label = f'{RESPONSE_BODY_LABEL}: "true"'
        return f"ConfigMap {namespace}/{ref.name} not found: ensure it exists and has the label {label}"
    if ref.key and ref.key not in config_map.data:
        return f"key {ref.key!r} not found in ConfigMap {namespace}/{ref.name}"
    return None


def responder(
    route: InterceptorRoute, response: StaticResponse, default_status: int, config_maps: ConfigMaps
) -> Callable[[RequestHead], web.StreamResponse]:
    """The static response as a handler; a ConfigMap body is read when answering (an edit applies at once)."""
    status = response.status_code or default_status
    problem = config_map_problem(route, response, config_maps)

    def respond(request: RequestHead) -> web.StreamResponse:
        headers: CIMultiDict[str] = CIMultiDict(response.headers)
        body = response.body or ""
        ref = response.body_from_config_map
        if ref is not None:
            if problem is not None:
                return web.Response(status=500, text=f"{route.ref}: {problem}\n")
            config_map = config_maps(route.metadata.namespace, ref.name)
            if config_map is None:  # deleted since the route was configured
                return web.Response(status=500, text=f"{route.ref}: ConfigMap {ref.name} is gone\n")
            key = ref.key or (request.path.removeprefix("/") or DEFAULT_CONFIG_MAP_KEY)
            # A key derived from the path that is missing is an empty body (a missing /favicon.ico is no error).
            body = config_map.data.get(key, "")
            content_type, _ = mimetypes.guess_type(key)
            if key in config_map.data and content_type and "Content-Type" not in headers:
                headers["Content-Type"] = content_type
        return web.Response(status=status, body=body.encode(), headers=headers)

    return respond


def static_matcher(
    route: InterceptorRoute, config_maps: ConfigMaps
) -> Callable[[RequestHead], StaticAnswer | None] | None:
    """First static route with a matching rule wins; None when the route has no static routes."""
    statics: list[tuple[StaticRoute, StaticAnswer]] = [
        (static, StaticAnswer(responder(route, static.response, 200, config_maps), static.response_mode == "Always"))
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


def configure_route(
    route: Route,
    ir: InterceptorRoute,
    *,
    fallback_url: str | None,
    config_maps: ConfigMaps,
    condition_wait: float | None,
    response_header: float | None,
) -> list[str]:
    """Set `route` from the InterceptorRoute's spec (`ebb run` and `ebb interceptor` alike); returns the problems
    of its static responses (a ConfigMap that cannot give a body: those answers get a 500).

    `condition_wait` and `response_header` are the interceptor's own settings, used where the route leaves a
    timeout unset; "0s" (or less) is no deadline of that kind. A changed window or granularity starts a new
    rate; an unchanged one keeps counting (an edit of the route does not zero its load).
    """
    spec = ir.spec
    readiness = spec.readiness_seconds
    header = InterceptorRouteTimeouts.seconds(spec.timeouts.response_header)
    request = InterceptorRouteTimeouts.seconds(spec.timeouts.request)
    route.condition_wait = condition_wait if readiness is None else (readiness if readiness > 0 else None)
    route.response_header = response_header if header is None else (header if header > 0 else None)
    route.request_timeout = request if request is not None and request > 0 else None
    route.failover = fallback_url
    rate_spec = spec.scaling_metric.request_rate
    window, granularity = (rate_spec.window_seconds, rate_spec.granularity_seconds) if rate_spec else (60.0, 1.0)
    if route.rate is None or (route.rate.window, route.rate.granularity) != (window, granularity):
        route.rate = RequestRate(window, granularity)
    placeholder = spec.placeholder
    route.placeholder = responder(ir, placeholder, 503, config_maps) if placeholder is not None else None
    route.static = static_matcher(ir, config_maps)
    responses = [static.response for static in spec.static_routes] + ([placeholder] if placeholder else [])
    return [problem for r in responses if (problem := config_map_problem(ir, r, config_maps)) is not None]
