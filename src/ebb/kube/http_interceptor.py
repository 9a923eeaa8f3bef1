"""`ebb interceptor`: the HTTP interceptor as its own Deployment on Kubernetes.

Routes come from HTTPScaledObjects and InterceptorRoutes (http.keda.sh/v1beta1), followed through watches (an
edit takes effect without a restart; an InterceptorRoute shadows an HTTPScaledObject of the same name, as in
the add-on). Each route's replicas are the ready endpoints of its Service, followed through watches of Services
and EndpointSlices; placeholder and static bodies come from ConfigMaps labelled
`http.keda.sh/response-body: "true"`, also watched. Requests to a route without a ready endpoint are held
(ebb.http.interceptor), and the first one held is pushed at once to every operator that follows this
interceptor's admin stream.

The admin port serves:
- `GET /queue`: the counts per route, as JSON, `{"routes": {"ns/name": {"concurrency", "rate", "held", "requests"}}}`;
- `GET /queue/stream`: the same as one JSON line each time a request is held (with `"wake": [routes]`) and
  every `push_interval` seconds otherwise (newline-delimited JSON, one long response);
- `GET /metrics`: the per-route series (`ebb_http_*`, ebb.observe.http_routes) for Prometheus;
- `GET /api/routes`: the routes as the dashboard lists them (hosts, paths, ready endpoints, counts);
- `GET /livez`, `GET /readyz` (ready once the first listings are loaded).

Each cold start is a Kubernetes Event on its HTTPScaledObject or InterceptorRoute (ColdStart, ColdStartTimedOut,
ColdStartAbandoned).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from ebb.errors import SpecError
from ebb.http.interceptor import (
    DEFAULT_CONDITION_WAIT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HELD,
    DEFAULT_RESPONSE_HEADER_TIMEOUT,
    Interceptor,
    Route,
)
from ebb.http.interceptor_route import configure_route, route_rules
from ebb.http.rate import RequestRate
from ebb.http.routing import HeaderMatch, RouteRule, RoutingTable
from ebb.kube import status as st
from ebb.kube.client import API_ERRORS, EVENT, AsyncClient, namespaced
from ebb.kube.endpoints import ENDPOINT_SLICE, SERVICE_NAME_LABEL
from ebb.kube.http_endpoints import EndpointPool, ready_endpoints, service_port_name
from ebb.kube.informer import Informer, Key
from ebb.observe.http_routes import RouteInfo, register_routes, route_infos, routes_api
from ebb.observe.metrics import metrics_routes
from ebb.scaling.types import ScalingEvent
from ebb.spec.convert import created_at
from ebb.spec.loader import parse_object
from ebb.spec.models import RESPONSE_BODY_LABEL, ConfigMap, HTTPScaledObject, InterceptorRoute
from ebb.web.server import AppServer

log = logging.getLogger("ebb.interceptor")

HTTP_SCALED_OBJECT = namespaced("http.keda.sh", "v1alpha1", "HTTPScaledObject", "httpscaledobjects")
INTERCEPTOR_ROUTE = namespaced("http.keda.sh", "v1beta1", "InterceptorRoute", "interceptorroutes")
SERVICE = namespaced("", "v1", "Service", "services")
CONFIG_MAP = namespaced("", "v1", "ConfigMap", "configmaps")

DEFAULT_ADMIN_PORT = 9090
_POST_ERRORS: tuple[type[Exception], ...] = (*API_ERRORS, OSError)
#: Seconds between two lines of the admin stream when nothing is held (rates move with time).
DEFAULT_PUSH_INTERVAL = 1.0


def route_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class InterceptorOptions:
    host: str = "0.0.0.0"
    port: int = 8080
    admin_host: str = "0.0.0.0"
    admin_port: int = DEFAULT_ADMIN_PORT
    #: Namespaces whose HTTPScaledObjects are routed; empty: every namespace.
    namespaces: Sequence[str] = ()
    max_held: int = DEFAULT_MAX_HELD
    #: Connections open at once to one endpoint (None: no limit).
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    condition_wait: float = DEFAULT_CONDITION_WAIT
    response_header: float = DEFAULT_RESPONSE_HEADER_TIMEOUT
    push_interval: float = DEFAULT_PUSH_INTERVAL
    #: Seconds that requests in flight get to finish on SIGTERM.
    drain_grace: float = 30.0


@dataclass
class _Parsed:
    version: str
    obj: HTTPScaledObject | InterceptorRoute | None
    problem: str | None


def _service_port(service: Mapping[str, Any] | None, port: int | None, port_name: str | None) -> int | None:
    """The Service port number for `port` or `portName` (a URL to the Service goes through its port)."""
    if port is not None:
        return port
    for entry in ((service or {}).get("spec") or {}).get("ports") or ():
        if entry.get("name") == port_name and entry.get("port") is not None:
            return int(entry["port"])
    return None


def _failover_url(namespace: str, spec: Any, services: Mapping[Key, dict[str, Any]]) -> str | None:
    ref = spec.cold_start_timeout_failover_ref
    if ref is None:
        return None
    port = _service_port(services.get((namespace, ref.service)), ref.port, ref.port_name)
    return None if port is None else f"http://{ref.service}.{namespace}.svc:{port}"


def _fallback_url(namespace: str, ir: InterceptorRoute, services: Mapping[Key, dict[str, Any]]) -> str | None:
    """coldStart.fallback.service as a URL through the Service (kube-proxy picks its endpoint)."""
    ref = ir.spec.fallback
    if ref is None:
        return None
    port = _service_port(services.get((namespace, ref.name)), ref.port, ref.port_name)
    return None if port is None else f"http://{ref.name}.{namespace}.svc:{port}"


def _config_map(body: Mapping[str, Any]) -> ConfigMap | None:
    try:
        return ConfigMap.model_validate(
            {"metadata": body.get("metadata") or {}, "data": body.get("data") or {}}, strict=False
        )
    except ValueError:
        return None


PoolKey = tuple[str, str, str]


#: The source of the Events `ebb interceptor` posts (cold starts), as `kubectl get events` shows it.
EVENT_COMPONENT = "ebb-interceptor"


class KubeRoutes:
    """The interceptor's routes, from the watched HTTPScaledObjects, InterceptorRoutes, Services, ConfigMaps and
    EndpointSlices.

    A change of a route, a Service or a ConfigMap rebuilds the routing table (parsing is cached by
    resourceVersion). An EndpointSlice event only updates the pools of that slice's Service: the slices are kept
    indexed by Service, so its cost does not grow with the number of routes (bench/http_endpoints.py).
    """

    def __init__(
        self,
        client: AsyncClient,
        options: InterceptorOptions,
        *,
        on_held: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.options = options
        self.clock = clock
        self.on_held = on_held
        self.routes: dict[Key, Route] = {}
        #: What each route key is ("HTTPScaledObject" or "InterceptorRoute"), for the admin stream.
        self.kinds: dict[Key, str] = {}
        self.pools: dict[PoolKey, EndpointPool] = {}
        self.interceptor = Interceptor(
            RoutingTable([]),
            [],
            host=options.host,
            port=options.port,
            max_held=options.max_held,
            max_connections=options.max_connections,
            clock=clock,
        )
        namespaces: Sequence[str | None] = list(options.namespaces) or [None]
        self.informers: dict[str, list[Informer]] = {
            kind: [
                Informer(
                    client,
                    resource,
                    namespace=ns,
                    labels=labels,
                    on_change=self._slices_listed if kind == "EndpointSlices" else self.rebuild,
                    on_event=self.slice_event if kind == "EndpointSlices" else None,
                    what=f"{kind} in {ns or 'all'}",
                )
                for ns in namespaces
            ]
            for kind, resource, labels in (
                ("HTTPScaledObjects", HTTP_SCALED_OBJECT, None),
                ("InterceptorRoutes", INTERCEPTOR_ROUTE, None),
                ("Services", SERVICE, None),
                # Only labelled ConfigMaps may give a body (the add-on's ResponseBodyLabels): no other is read.
                ("ConfigMaps", CONFIG_MAP, {RESPONSE_BODY_LABEL: "true"}),
                ("EndpointSlices", ENDPOINT_SLICE, None),
            )
        }
        self._parsed: dict[tuple[str, Key], _Parsed] = {}
        self._problems: dict[tuple[str, Key], str] = {}
        #: EndpointSlices by their Service, and the Service of each slice (a deleted slice's body may be bare).
        self._slices: dict[Key, dict[Key, dict[str, Any]]] = {}
        self._slice_service: dict[Key, Key] = {}
        #: The pools of each Service, by its port name.
        self._service_pools: dict[Key, dict[str, EndpointPool]] = {}
        self._config_maps: dict[Key, ConfigMap | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.rules: list[RouteRule[Route]] = []
        self._posts: set[asyncio.Task[None]] = set()

    def _all(self, kind: str) -> dict[Key, dict[str, Any]]:
        merged: dict[Key, dict[str, Any]] = {}
        for informer in self.informers[kind]:
            merged.update(informer.objects)
        return merged

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for group in self.informers.values() for i in group)

    def _parse(self, kind: str, key: Key, body: dict[str, Any]) -> _Parsed:
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        cached = self._parsed.get((kind, key))
        if cached is not None and cached.version == version and version:
            return cached
        obj, errors = parse_object(body, label=f"{kind} {key[0]}/{key[1]}")
        if errors or not isinstance(obj, HTTPScaledObject | InterceptorRoute) or obj.kind != kind:
            problem = "; ".join(f"{e.field}: {e.message}" if isinstance(e, SpecError) else str(e) for e in errors)
            parsed = _Parsed(version, None, problem or f"not an {kind}")
        else:
            parsed = _Parsed(version, obj, None)
        self._parsed[(kind, key)] = parsed
        return parsed

    def _report(self, kind: str, key: Key, problem: str | None) -> None:
        """Each route's problem is logged once when it appears (the operator puts it in a condition and an Event).

        Not before every first listing is in: a route listed before the Services would otherwise be logged with its
        Service "missing" at every start (seen on a real cluster)."""
        if not self.synced:
            return
        if problem is None:
            self._problems.pop((kind, key), None)
        elif self._problems.get((kind, key)) != problem:
            self._problems[(kind, key)] = problem
            log.warning("%s %s/%s: %s", kind, key[0], key[1], problem)

    def _route(self, kind: str, key: Key) -> Route:
        route = self.routes.get(key)
        if route is None or self.kinds.get(key) != kind:
            route = Route(ref=f"{kind} {key[0]}/{key[1]}", target="?", pool=None)
            name = route_key(*key)
            route.listeners.append(lambda: self.on_held(name) if self.on_held is not None else None)
            route.stats.listeners.append(lambda event: self._post_event(kind, key, event))
            route.stats.ready = lambda: route.pool.ready_count() if route.pool is not None else 0
            route.stats.condition_wait = lambda: route.condition_wait
            route.stats.later = lambda delay, call: asyncio.get_running_loop().call_later(delay, call)
        return route

    def _post_event(self, kind: str, key: Key, event: ScalingEvent) -> None:
        """A cold start's Event on its object, posted in the background (never holding a request)."""
        body = self._all(kind + "s").get(key)
        if body is None:
            return
        involved = st.object_reference(body)
        log.info("%s %s/%s: %s: %s", kind, key[0], key[1], event.reason, event.message)

        async def post() -> None:
            try:
                await self.client.create(EVENT(st.event_manifest(involved, event, self.clock(), EVENT_COMPONENT)))
            except _POST_ERRORS as exc:
                log.warning("cannot post Event %s on %s %s/%s: %s", event.reason, kind, *key, exc)

        task = asyncio.get_running_loop().create_task(post())
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    def _lookup_config_map(self, namespace: str, name: str) -> ConfigMap | None:
        key = (namespace, name)
        if key not in self._config_maps:
            body = self._all("ConfigMaps").get(key)
            self._config_maps[key] = _config_map(body) if body is not None else None
        return self._config_maps[key]

    def _target(
        self,
        route: Route,
        namespace: str,
        service_name: str,
        port: int | None,
        port_name: str | None,
        services: Mapping[Key, dict[str, Any]],
        pools: dict[PoolKey, EndpointPool],
    ) -> None:
        """The route's pool: the ready endpoints of the Service port, or why there is none (`route.broken`)."""
        route.target = f"Service {namespace}/{service_name}"
        service = services.get((namespace, service_name))
        found = service_port_name(service, port, port_name) if service is not None else None
        if service is None:
            route.broken = f"Service {namespace}/{service_name} does not exist"
            route.pool = None
        elif found is None:
            wanted = f"port {port}" if port_name is None else f"a port named {port_name!r}"
            route.broken = f"Service {namespace}/{service_name} has no {wanted}"
            route.pool = None
        else:
            pool_key = (namespace, service_name, found)
            pool = pools.get(pool_key) or self.pools.get(pool_key) or EndpointPool()
            pools[pool_key] = pool
            route.pool = pool
            route.broken = None

    def rebuild(self) -> None:
        """Routes, pools and the routing table from what the watches hold now (cheap: parsing is cached)."""
        services = self._all("Services")
        self._config_maps = {}
        rules: list[RouteRule[Route]] = []
        routes: dict[Key, Route] = {}
        kinds: dict[Key, str] = {}
        pools: dict[PoolKey, EndpointPool] = {}
        irs = self._all("InterceptorRoutes")
        objects = self._all("HTTPScaledObjects")
        for key, body in sorted(irs.items()):
            parsed = self._parse("InterceptorRoute", key, body)
            ir = parsed.obj
            if not isinstance(ir, InterceptorRoute):
                self._report("InterceptorRoute", key, parsed.problem)
                continue
            route = self._route("InterceptorRoute", key)
            routes[key], kinds[key] = route, "InterceptorRoute"
            target = ir.spec.target
            self._target(route, key[0], target.service, target.port, target.port_name, services, pools)
            problems = configure_route(
                route,
                ir,
                fallback_url=_fallback_url(key[0], ir, services),
                config_maps=self._lookup_config_map,
                condition_wait=self.options.condition_wait,
                response_header=self.options.response_header,
            )
            self._report("InterceptorRoute", key, "; ".join(filter(None, [route.broken, *problems])) or None)
            rules.extend(route_rules(ir, route, (created_at(ir), key[0], key[1])))  # type: ignore[arg-type]
        for key, body in sorted(objects.items()):
            if key in routes:
                # The add-on's routing table: an InterceptorRoute of the same name takes precedence (migration).
                self._report("HTTPScaledObject", key, None)
                continue
            parsed = self._parse("HTTPScaledObject", key, body)
            obj = parsed.obj
            if not isinstance(obj, HTTPScaledObject):
                self._report("HTTPScaledObject", key, parsed.problem)
                continue  # its hosts and paths are unknown: nothing to route
            namespace = key[0]
            spec = obj.spec
            target_ref = spec.scale_target_ref
            route = self._route("HTTPScaledObject", key)
            routes[key], kinds[key] = route, "HTTPScaledObject"
            route.condition_wait = spec.condition_wait_seconds or self.options.condition_wait
            route.response_header = spec.response_header_seconds or self.options.response_header
            route.failover = _failover_url(namespace, spec, services)
            rate = spec.scaling_metric.request_rate if spec.scaling_metric is not None else None
            window, granularity = (rate.window_seconds, rate.granularity_seconds) if rate else (60.0, 1.0)
            if route.rate is None or (route.rate.window, route.rate.granularity) != (window, granularity):
                route.rate = RequestRate(window, granularity)
            self._target(route, namespace, target_ref.service, target_ref.port, target_ref.port_name, services, pools)
            self._report("HTTPScaledObject", key, route.broken)
            rules.append(
                RouteRule(
                    route=route,
                    hosts=tuple(spec.hosts),
                    path_prefixes=tuple(spec.path_prefixes),
                    headers=tuple(HeaderMatch(h.name, h.value) for h in spec.headers),
                    order=(created_at(obj), namespace, key[1]),  # type: ignore[arg-type]
                )
            )
        service_pools: dict[Key, dict[str, EndpointPool]] = {}
        for (namespace, service_name, port_name), pool in pools.items():
            service_pools.setdefault((namespace, service_name), {})[port_name] = pool
        self._service_pools = service_pools
        for service_key in service_pools:
            self._refresh(service_key)
        live = {("InterceptorRoute", k) for k in irs} | {("HTTPScaledObject", k) for k in objects}
        for parsed_key in set(self._parsed) - live:
            del self._parsed[parsed_key]
        for problem_key in set(self._problems) - live:
            del self._problems[problem_key]
        self.routes, self.kinds, self.pools = routes, kinds, pools
        self.rules = rules
        self.interceptor.table = RoutingTable(rules)
        self.interceptor.routes = [rule.route for rule in rules]

    # --- EndpointSlices: only the pools of the Service whose slice changed ---------------------------------

    def _refresh(self, service_key: Key) -> None:
        pools = self._service_pools.get(service_key)
        if not pools:
            return
        slices = list(self._slices.get(service_key, {}).values())
        for port_name, pool in pools.items():
            pool.update(ready_endpoints(slices, port_name))

    def slice_event(self, key: Key, body: dict[str, Any] | None) -> None:
        """One EndpointSlice added, changed or deleted: re-read that Service's slices into its pools."""
        before = self._slice_service.pop(key, None)
        if before is not None:
            self._slices.get(before, {}).pop(key, None)
        after: Key | None = None
        if body is not None:
            service_name = ((body.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service_name:
                after = (key[0], str(service_name))
                self._slices.setdefault(after, {})[key] = body
                self._slice_service[key] = after
        for service_key in {before, after} - {None}:
            assert service_key is not None
            if not self._slices.get(service_key):
                self._slices.pop(service_key, None)
            self._refresh(service_key)

    def _slices_listed(self) -> None:
        """A (re)listing of EndpointSlices: index them all again, then every pool."""
        self.index_slices()
        for service_key in self._service_pools:
            self._refresh(service_key)

    def index_slices(self) -> None:
        """Every EndpointSlice the watches hold, indexed by its Service (a listing; events keep it current)."""
        self._slices, self._slice_service = {}, {}
        for key, body in self._all("EndpointSlices").items():
            service_name = ((body.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service_name:
                service_key = (key[0], str(service_name))
                self._slices.setdefault(service_key, {})[key] = body
                self._slice_service[key] = service_key

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Counts per route: requests in flight (held ones included; 1 at least while a placeholder answered and no
        replica is ready yet), the request rate, requests held, requests counted so far."""
        now = self.clock()
        out: dict[str, dict[str, float]] = {}
        for key, route in self.routes.items():
            in_flight = route.in_flight
            if route.placeholder_pending:
                if route.pool is not None and route.pool.ready_count() > 0:
                    route.placeholder_pending = False
                else:
                    in_flight = max(in_flight, 1)
            out[route_key(*key)] = {
                "concurrency": in_flight,
                "rate": route.rate.average(now) if route.rate is not None else 0.0,
                "held": route.held,
                "requests": route.requests,
            }
        return out

    async def start(self) -> None:
        for group in self.informers.values():
            for informer in group:
                self._tasks.append(asyncio.create_task(informer.run(), name=f"ebb-informer-{informer.what}"))
        await self.interceptor.start()

    def route_infos(self) -> list[RouteInfo]:
        return route_infos(self.rules)

    async def stop(self, grace: float = 30.0) -> None:
        await self.interceptor.stop(grace)
        if self._posts:
            await asyncio.wait(set(self._posts), timeout=5.0)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(eq=False)
class _Subscriber:
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: set[str] = field(default_factory=set)


class AdminServer(AppServer):
    """The interceptor's counts for operators: a snapshot, and a stream that pushes held requests at once."""

    label = "interceptor admin"

    def __init__(self, routes: KubeRoutes, host: str, port: int, *, push_interval: float = DEFAULT_PUSH_INTERVAL):
        super().__init__(host, port)
        self.routes = routes
        self.push_interval = push_interval
        self._subscribers: set[_Subscriber] = set()
        self._closing = asyncio.Event()
        self.registry = CollectorRegistry(auto_describe=True)
        register_routes(self.registry, lambda: self.routes.routes.values())

    def held(self, route: str) -> None:
        """A request is held on `route`: every stream sends a line now."""
        for subscriber in self._subscribers:
            subscriber.wake.add(route)
            subscriber.changed.set()

    def _line(self, wake: Sequence[str] = ()) -> bytes:
        body: dict[str, Any] = {"routes": self.routes.snapshot()}
        if wake:
            body["wake"] = sorted(wake)
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    async def _queue(self, request: web.Request) -> web.Response:
        return web.Response(body=self._line(), content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"})
        await response.prepare(request)
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        try:
            while not self._closing.is_set():
                wake, subscriber.wake = subscriber.wake, set()
                subscriber.changed.clear()
                await response.write(self._line(sorted(wake)))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.push_interval):
                        await subscriber.changed.wait()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(subscriber)
        return response

    async def _livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.routes.synced:
            return web.Response(text="ok\n")
        return web.Response(
            status=503, text="loading HTTPScaledObjects, InterceptorRoutes, Services, ConfigMaps and EndpointSlices\n"
        )

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/queue", self._queue)
        app.router.add_get("/queue/stream", self._stream)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.add_routes(metrics_routes(self.registry))
        app.add_routes(routes_api(self.routes.route_infos))
        return app

    async def stopping(self) -> None:
        self._closing.set()
        for subscriber in self._subscribers:
            subscriber.changed.set()


class KubeInterceptor:
    """The routes and the admin server together: what `ebb interceptor` runs."""

    def __init__(self, client: AsyncClient, options: InterceptorOptions) -> None:
        self.options = options
        self.routes = KubeRoutes(client, options, on_held=self._held)
        self.admin = AdminServer(
            self.routes, options.admin_host, options.admin_port, push_interval=options.push_interval
        )

    def _held(self, route: str) -> None:
        self.admin.held(route)

    @property
    def port(self) -> int:
        return self.routes.interceptor.bound_port

    async def start(self) -> None:
        await self.routes.start()
        await self.admin.start()

    async def stop(self) -> None:
        # Requests in flight finish first (the admin stream keeps reporting them meanwhile).
        await self.routes.stop(self.options.drain_grace)
        await self.admin.stop()


async def interceptor_main(options: InterceptorOptions, client: AsyncClient | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    from ebb.kube.client import default_client

    own = client is None
    client = client or default_client()
    interceptor = KubeInterceptor(client, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await interceptor.start()
        log.info("interceptor serving on %s:%d", options.host, interceptor.port)
        await stop.wait()
    finally:
        await interceptor.stop()
        if own:
            await client.aclose()
