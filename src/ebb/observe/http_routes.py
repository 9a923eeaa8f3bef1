"""The interceptor's routes in /metrics and in the dashboard's /api/routes: one collector reading every route's
counts (ebb.http.stats) at scrape time, so a request costs a few integer increments and nothing else.

Labels: `namespace`, `type` (HTTPScaledObject or InterceptorRoute) and `name`, as the other `ebb_*` series;
never a host, a path or a header (they are the users' data, and unbounded). It reads routes through the protocols
below, so that observe/ does not import http/ (which imports this module).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LABELS = ("namespace", "type", "name")


class _Pool(Protocol):
    def ready_count(self) -> int: ...


class _Rate(Protocol):
    granularity: float

    def average(self, now: float) -> float: ...


class _Stats(Protocol):
    requests: int
    upstream_errors: int
    timeouts: int
    rejected: int
    cold_starts: int
    abandoned: int
    upstream_waiting: int
    upstream_waits: int
    hold_sum: float
    last_cold_start: float | None
    last_cold_start_message: str | None

    def histogram(self) -> list[tuple[str, float]]: ...


class Route(Protocol):
    """What is read of an ebb.http.interceptor.Route."""

    @property
    def ref(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def pool(self) -> _Pool | None: ...
    @property
    def rate(self) -> _Rate | None: ...
    @property
    def stats(self) -> _Stats: ...
    @property
    def broken(self) -> str | None: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def held(self) -> int: ...


class _Rule(Protocol):
    """What is read of an ebb.http.routing.RouteRule."""

    @property
    def route(self) -> Route: ...
    @property
    def hosts(self) -> tuple[str, ...]: ...
    @property
    def path_prefixes(self) -> tuple[str, ...]: ...


def route_identity(ref: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of a route's `ref` ("HTTPScaledObject ns/name")."""
    kind, _, rest = ref.partition(" ")
    namespace, _, name = rest.partition("/")
    if not name:
        namespace, name = "default", namespace
    return kind, namespace, name


@dataclass(frozen=True)
class RouteInfo:
    """A route and what it matches (hosts, path prefixes), as the dashboard lists it."""

    route: Route
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


#: (name, type, help): every family the collector exports, in order (scripts/gen_metrics_docs.py reads it).
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("ebb_http_requests", "counter", "Requests routed to this route (static answers of an InterceptorRoute excluded)."),
    ("ebb_http_requests_in_flight", "gauge", "Requests of this route being answered now, held ones included."),
    ("ebb_http_requests_held", "gauge", "Requests held now, waiting for a ready replica."),
    (
        "ebb_http_upstream_waiting",
        "gauge",
        "Requests waiting now for a connection to their replica: every one of its connections is in use "
        "(at most --max-connections per replica, 1,024 by default).",
    ),
    (
        "ebb_http_upstream_waits",
        "counter",
        "Requests that had to wait for a connection to their replica (see ebb_http_upstream_waiting).",
    ),
    (
        "ebb_http_hold_seconds",
        "histogram",
        "How long held requests waited: until a replica was ready, conditionWait passed, or the client left.",
    ),
    (
        "ebb_http_upstream_errors",
        "counter",
        "Requests answered 502 or cut: the replica could not be reached or failed before or while answering.",
    ),
    (
        "ebb_http_timeouts",
        "counter",
        "Requests answered 504: no ready replica within conditionWait, no response headers within "
        "responseHeader, or past the request timeout.",
    ),
    ("ebb_http_rejected", "counter", "Requests answered 503 because the route already held as many as allowed."),
    (
        "ebb_http_cold_starts",
        "counter",
        "Cold starts: times requests began to be held on this route while no replica was ready (holds less "
        "than 0.5 s apart are one cold start, with one ColdStart Event).",
    ),
    ("ebb_http_held_abandoned", "counter", "Held requests whose client left before a replica was ready."),
    ("ebb_http_ready_replicas", "gauge", "Replicas (or endpoints) the interceptor can send this route's requests to."),
    ("ebb_http_route_broken", "gauge", "1 while the route cannot serve (its target is missing); requests get a 503."),
)


def route_view(info: RouteInfo, now: float) -> dict[str, Any]:
    """One route as /api/routes lists it."""
    route = info.route
    kind, namespace, name = route_identity(route.ref)
    stats = route.stats
    return {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "target": route.target,
        "hosts": list(info.hosts),
        "paths": list(info.paths),
        "ready_replicas": route.pool.ready_count() if route.pool is not None else 0,
        "in_flight": route.in_flight,
        "held": route.held,
        # The scaler's rate (requests per granularity, averaged over the window as the add-on does), per second.
        "rate": route.rate.average(now) / route.rate.granularity if route.rate is not None else 0.0,
        "requests": stats.requests,
        "upstream_errors": stats.upstream_errors,
        "timeouts": stats.timeouts,
        "rejected": stats.rejected,
        "cold_starts": stats.cold_starts,
        "abandoned": stats.abandoned,
        "upstream_waiting": stats.upstream_waiting,
        "last_cold_start": stats.last_cold_start,
        "last_cold_start_message": stats.last_cold_start_message,
        "broken": route.broken,
    }


class HTTPRoutesCollector(Collector):
    """Reads the routes `routes()` returns at each scrape (routes come and go with `ebb interceptor`'s watches)."""

    def __init__(self, routes: Callable[[], Iterable[Route]]) -> None:
        self.routes = routes

    def describe(self) -> Iterator[Metric]:
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        return self._families(list(self.routes()))

    def _families(self, routes: Sequence[Route]) -> Iterator[Metric]:
        doc = {name: help_text for name, _, help_text in FAMILIES}
        counters = {
            name: CounterMetricFamily(name, doc[name], labels=LABELS)
            for name in (
                "ebb_http_requests",
                "ebb_http_upstream_errors",
                "ebb_http_timeouts",
                "ebb_http_rejected",
                "ebb_http_cold_starts",
                "ebb_http_held_abandoned",
                "ebb_http_upstream_waits",
            )
        }
        gauges = {
            name: GaugeMetricFamily(name, doc[name], labels=LABELS)
            for name in (
                "ebb_http_requests_in_flight",
                "ebb_http_requests_held",
                "ebb_http_upstream_waiting",
                "ebb_http_ready_replicas",
                "ebb_http_route_broken",
            )
        }
        hold = HistogramMetricFamily("ebb_http_hold_seconds", doc["ebb_http_hold_seconds"], labels=LABELS)
        seen: set[tuple[str, str, str]] = set()
        for route in routes:
            labels = route_identity(route.ref)
            if labels in seen:  # an InterceptorRoute's rules share one route
                continue
            seen.add(labels)
            kind, namespace, name = labels
            values = [namespace, kind, name]
            s = route.stats
            for family, value in (
                ("ebb_http_requests", s.requests),
                ("ebb_http_upstream_errors", s.upstream_errors),
                ("ebb_http_timeouts", s.timeouts),
                ("ebb_http_rejected", s.rejected),
                ("ebb_http_cold_starts", s.cold_starts),
                ("ebb_http_held_abandoned", s.abandoned),
                ("ebb_http_upstream_waits", s.upstream_waits),
            ):
                counters[family].add_metric(values, float(value))
            ready = route.pool.ready_count() if route.pool is not None else 0
            for family, value in (
                ("ebb_http_requests_in_flight", route.in_flight),
                ("ebb_http_requests_held", route.held),
                ("ebb_http_upstream_waiting", s.upstream_waiting),
                ("ebb_http_ready_replicas", ready),
                ("ebb_http_route_broken", 1 if route.broken is not None else 0),
            ):
                gauges[family].add_metric(values, float(value))
            hold.add_metric(values, s.histogram(), s.hold_sum)
        by_name: dict[str, Metric] = {**counters, **gauges, "ebb_http_hold_seconds": hold}
        for name, _, _ in FAMILIES:
            yield by_name[name]


def register_routes(registry: CollectorRegistry, routes: Callable[[], Iterable[Route]]) -> HTTPRoutesCollector:
    collector = HTTPRoutesCollector(routes)
    registry.register(collector)
    return collector


def routes_api(routes: Callable[[], Iterable[RouteInfo]], clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    """`GET /api/routes`: `{now, routes: [...]}`, one entry per route (route_view)."""

    async def handle(request: web.Request) -> web.Response:
        now = clock()
        seen: set[int] = set()
        out = []
        for info in routes():
            if id(info.route) in seen:
                continue
            seen.add(id(info.route))
            out.append(route_view(info, now))
        out.sort(key=lambda r: (r["namespace"], r["name"], r["kind"]))
        return web.json_response({"now": now, "routes": out})

    return [web.get("/api/routes", handle)]


def route_infos(rules: Iterable[_Rule]) -> list[RouteInfo]:
    """One RouteInfo per route, with the hosts and path prefixes of all its rules (an InterceptorRoute has several)."""
    merged: dict[int, tuple[Route, list[str], list[str]]] = {}
    for rule in rules:
        _, hosts, paths = merged.setdefault(id(rule.route), (rule.route, [], []))
        hosts.extend(h for h in rule.hosts if h not in hosts)
        paths.extend(p for p in rule.path_prefixes if p not in paths)
    return [RouteInfo(route, tuple(hosts), tuple(paths)) for route, hosts, paths in merged.values()]
