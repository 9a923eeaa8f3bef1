"""How `ebb check` shows an HTTPScaledObject: its route, target, metric and the add-on's defaults filled in."""

from __future__ import annotations

from ebb.spec.models import HTTP_POLLING_INTERVAL, HTTPScaledObject


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
