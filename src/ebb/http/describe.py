"""How `ebb check` shows HTTPScaledObjects and InterceptorRoutes: route, target, metric, the add-on's defaults."""

from __future__ import annotations

from ebb.spec.models import (
    HTTP_POLLING_INTERVAL,
    HTTPScaledObject,
    InterceptorRoute,
    RoutingRule,
    ScaledObject,
    go_duration_seconds,
)


def describe_http(obj: HTTPScaledObject) -> list[tuple[str, str]]:
    spec = obj.spec
    target = spec.scale_target_ref
    so = obj.scaled_object().spec
    headers = ", ".join(f"{h.name}={h.value}" if h.value is not None else h.name for h in spec.headers)
    port = f"port {target.port}" if target.port is not None else f"portName {target.port_name}"
    rows = [
        ("route", f"hosts {', '.join(spec.hosts) or '*'}; paths {', '.join(spec.path_prefixes) or '/'}"),
        (
            "target",
            f"{target.kind or 'Deployment'} {target.name} ({target.api_version or 'apps/v1'}); "
            f"service {target.service}, {port}",
        ),
        ("replicas", f"min {so.min_replica_count}, max {so.max_replica_count}"),
    ]
    if headers:
        rows.insert(1, ("headers", headers))
    metric = f"{spec.metric} target {spec.metric_target}"
    rate = spec.scaling_metric.request_rate if spec.scaling_metric is not None else None
    if rate is not None:
        metric += f" per {rate.granularity} over {rate.window}"
    if spec.target_pending_requests is not None and spec.scaling_metric is None:
        metric += " (from the deprecated targetPendingRequests)"
    rows.append(("metric", metric))
    rows.append(
        (
            "timing",
            f"polling {HTTP_POLLING_INTERVAL}s, scaledown period {so.cooldown_period}s, "
            f"initial cooldown {so.initial_cooldown_period}s",
        )
    )
    wait = spec.condition_wait_seconds
    header = spec.response_header_seconds
    rows.append(
        (
            "timeouts",
            f"conditionWait {f'{wait:g}s' if wait is not None else 'interceptor default'}, "
            f"responseHeader {f'{header:g}s' if header is not None else 'interceptor default'}",
        )
    )
    failover = spec.cold_start_timeout_failover_ref
    if failover is not None:
        where = f"port {failover.port}" if failover.port is not None else f"portName {failover.port_name}"
        rows.append(("failover", f"service {failover.service}, {where}, after {failover.timeout_seconds}s"))
    return rows


def _rule_text(rule: RoutingRule) -> str:
    hosts = ", ".join(rule.hosts) or "*"
    paths = ", ".join(p.value for p in rule.paths) or "/"
    text = f"hosts {hosts}; paths {paths}"
    if rule.headers:
        text += "; headers " + ", ".join(f"{h.name}={h.value}" if h.value is not None else h.name for h in rule.headers)
    return text


def _duration(value: str | None, unset: str) -> str:
    if value is None:
        return unset
    seconds = go_duration_seconds(value)
    return "none" if seconds <= 0 else f"{seconds:g}s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "interceptor default"
    return "none" if value <= 0 else f"{value:g}s"


def describe_route(route: InterceptorRoute, scaled_objects: list[ScaledObject]) -> list[tuple[str, str]]:
    """How `ebb check` shows an InterceptorRoute: its rules, target, metrics, cold start, the ScaledObjects on it."""
    spec = route.spec
    target = spec.target
    port = f"port {target.port}" if target.port is not None else f"portName {target.port_name}"
    rows: list[tuple[str, str]] = []
    if not spec.rules:
        rows.append(("rules", "none: no request is routed to it (the add-on routes by rules only)"))
    for index, rule in enumerate(spec.rules):
        rows.append((f"rules[{index}]", _rule_text(rule)))
    rows.append(("target", f"service {target.service}, {port}"))
    metrics = []
    if spec.scaling_metric.concurrency is not None:
        metrics.append(f"concurrency target {spec.scaling_metric.concurrency.target_value}")
    rate = spec.scaling_metric.request_rate
    if rate is not None:
        metrics.append(f"requestRate target {rate.target_value} per {rate.granularity} over {rate.window}")
    rows.append(("metric", "; ".join(metrics) + (" (the larger replica count wins)" if len(metrics) > 1 else "")))
    readiness = spec.readiness_seconds
    rows.append(
        (
            "timeouts",
            f"readiness {_seconds(readiness)}, "
            f"request {_duration(spec.timeouts.request, 'interceptor default')}, "
            f"responseHeader {_duration(spec.timeouts.response_header, 'interceptor default')}",
        )
    )
    fallback = spec.fallback
    if fallback is not None:
        where = f"port {fallback.port}" if fallback.port is not None else f"portName {fallback.port_name}"
        rows.append(("fallback", f"service {fallback.name}, {where}, after {readiness:g}s"))
    placeholder = spec.placeholder
    if placeholder is not None:
        rows.append(("placeholder", f"status {placeholder.status_code or 503} while no replica is ready"))
    for index, static in enumerate(spec.static_routes):
        when = "always" if static.response_mode == "Always" else "when no replica is ready"
        rules = " | ".join(_rule_text(rule) for rule in static.rules)
        rows.append((f"staticRoutes[{index}]", f"{rules}: status {static.response.status_code or 200} {when}"))
    if scaled_objects:
        rows.append(("scaled by", ", ".join(so.ref for so in scaled_objects)))
    else:
        rows.append(
            ("scaled by", "no ScaledObject: none has an external-push trigger with interceptorRoute: " + route.name)
        )
    return rows
