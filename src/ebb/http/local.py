"""HTTPScaledObjects under `ebb run`: a route and a scaling loop each, and one interceptor for all.

Each HTTPScaledObject becomes what the add-on's operator would create, a ScaledObject of the same name with
one push trigger, scaled by the same loop and core as any ScaledObject; its trigger reads the interceptor's
counts for the route. Its ProcessGroup's replicas listen on scaleTargetRef.port + their index (PORT and
EBB_PORT in their environment); `service` is not used locally (replicas are on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ebb.errors import EbbError
from ebb.http.interceptor import (
    DEFAULT_CONDITION_WAIT,
    DEFAULT_HOST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HELD,
    DEFAULT_PORT,
    DEFAULT_RESPONSE_HEADER_TIMEOUT,
    Interceptor,
    Route,
)
from ebb.http.interceptor_route import configure_route, manifest_config_maps, route_rules, scaled_objects_for
from ebb.http.pool import DrainingTarget, ReplicaPool, replica_env
from ebb.http.rate import RequestRate
from ebb.http.routing import HeaderMatch, RouteRule, RoutingTable
from ebb.http.scaler import InterceptorScaler
from ebb.observe.http_routes import RouteInfo, route_identity, route_infos
from ebb.runtime.build import object_ref
from ebb.runtime.observer import ObjectRef
from ebb.runtime.scaled_object import ScaledObjectLoop
from ebb.scalers.base import TriggerContext
from ebb.scalers.external import ExternalScaler
from ebb.scaling.lifecycle import ScaledObjectDecider, pause_state
from ebb.spec.convert import created_at, object_policy
from ebb.spec.models import (
    HTTPScaledObject,
    InterceptorRoute,
    ScaledObject,
    interceptor_route_of,
)
from ebb.targets.process import ProcessGroupTarget

if TYPE_CHECKING:
    from ebb.runtime.local import LocalRuntime

#: ebb's annotation on an HTTPScaledObject: poll this often instead of the add-on's fixed 15 s.
POLLING_ANNOTATION = "ebb.dev/polling-interval"
#: ebb's annotation: readiness is a GET of this path (answering below 400) instead of a TCP connect.
READINESS_PATH_ANNOTATION = "ebb.dev/readiness-path"


@dataclass
class HTTPOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_held: int = DEFAULT_MAX_HELD
    #: Connections open at once to one replica (None: no limit); more requests wait their turn.
    max_connections: int | None = DEFAULT_MAX_CONNECTIONS
    condition_wait: float = DEFAULT_CONDITION_WAIT
    response_header: float = DEFAULT_RESPONSE_HEADER_TIMEOUT
    #: Called with the address once the interceptor listens.
    announce: Callable[[str], None] | None = None


def _polling_interval(obj: HTTPScaledObject, default: int) -> float:
    raw = obj.metadata.annotations.get(POLLING_ANNOTATION)
    if raw is None:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise EbbError(
            f"{obj.ref}: metadata.annotations[{POLLING_ANNOTATION}]: expected a number of seconds > 0, got {raw!r}"
        )
    return value


def _route_port(ref: str, port: int | None, port_name: str | None, group: ProcessGroupTarget) -> int:
    """Replica 0's port for a route: scaleTargetRef.port, or portName looked up in the group's ports."""
    declared = ", ".join(f"{p.name or '(unnamed)'}={p.container_port}" for p in group.ports) or "none"
    if port is None:
        if not group.ports:
            raise EbbError(
                f"{ref}: spec.scaleTargetRef.portName: ProcessGroup {group.name} declares no ports: give `port` "
                "(replica i listens on port + i), or declare spec.ports in the ProcessGroup"
            )
        try:
            return group.port_number(port_name or "")
        except KeyError:
            raise EbbError(
                f"{ref}: spec.scaleTargetRef.portName: ProcessGroup {group.name} has no port named {port_name!r} "
                f"(declared: {declared})"
            ) from None
    if not 0 < port < 65536:
        raise EbbError(f"{ref}: spec.scaleTargetRef.port: expected 1..65535, got {port}")
    if group.ports and all(p.container_port != port for p in group.ports):
        raise EbbError(
            f"{ref}: spec.scaleTargetRef.port: {port} is not one of ProcessGroup {group.name}'s ports "
            f"(declared: {declared})"
        )
    return port


@dataclass
class HTTPFrontend:
    """Builds routes and loops into a LocalRuntime (`build`), then serves them (`start` / `stop`)."""

    options: HTTPOptions = field(default_factory=HTTPOptions)
    routes: dict[ObjectRef, Route] = field(default_factory=dict)
    pools: list[ReplicaPool] = field(default_factory=list)
    targets: list[DrainingTarget] = field(default_factory=list)
    problem: Callable[[ObjectRef, str], None] | None = None
    interceptor: Interceptor | None = None
    rules: list[RouteRule[Route]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def build(self, runtime: LocalRuntime) -> None:
        self.problem = lambda ref, message: runtime.observer.problem(ref, message, runtime.options.clock())
        rules: list[RouteRule[Route]] = []
        claimed: dict[tuple[str, str], str] = {
            (loop.ref.namespace, name): str(loop.ref)
            for loop in runtime.loops.values()
            if (name := getattr(loop.target, "name", None))
        }
        for obj in runtime.resources.all(HTTPScaledObject):
            if runtime.resources.get(InterceptorRoute, obj.metadata.namespace, obj.name) is not None:
                # The add-on's routing table skips an HTTPScaledObject an InterceptorRoute of the same name shadows.
                self.problem(
                    ObjectRef(obj.kind, obj.metadata.namespace, obj.name),
                    f"{obj.ref}: not routed: InterceptorRoute {obj.metadata.namespace}/{obj.name} takes precedence "
                    "(as in the add-on)",
                )
                continue
            try:
                route = self._build_one(runtime, obj, claimed)
            except EbbError as exc:
                self.problem(ObjectRef(obj.kind, obj.metadata.namespace, obj.name), str(exc))
                route = Route(ref=obj.ref, target="?", pool=None, broken=str(exc))
            self._observe(runtime, route)
            spec = obj.spec
            rules.append(
                RouteRule(
                    route=route,
                    hosts=tuple(spec.hosts),
                    path_prefixes=tuple(spec.path_prefixes),
                    headers=tuple(HeaderMatch(h.name, h.value) for h in spec.headers),
                    order=(created_at(obj.scaled_object()), obj.metadata.namespace, obj.name),
                )
            )
        for ir in runtime.resources.all(InterceptorRoute):
            try:
                route = self._build_route(runtime, ir)
            except EbbError as exc:
                self.problem(ObjectRef(ir.kind, ir.metadata.namespace, ir.name), str(exc))
                route = Route(ref=ir.ref, target="?", pool=None, broken=str(exc))
            self._observe(runtime, route)
            order = (created_at(ir), ir.metadata.namespace, ir.name)  # type: ignore[arg-type]
            rules.extend(route_rules(ir, route, order))
        self._unpaired_triggers(runtime)
        self.rules = rules
        self.interceptor = Interceptor(
            RoutingTable(rules),
            [rule.route for rule in rules],
            host=self.options.host,
            port=self.options.port,
            max_held=self.options.max_held,
            max_connections=self.options.max_connections,
        )

    def _observe(self, runtime: LocalRuntime, route: Route) -> None:
        """The route's cold starts reach ebb's Event recorder (event log, console, CloudEvents, metrics)."""
        kind, namespace, name = route_identity(route.ref)
        ref = ObjectRef(kind, namespace, name)
        observer, clock = runtime.observer, runtime.options.clock
        route.stats.listeners.append(lambda event: observer.event(ref, event, clock()))
        route.stats.ready = lambda: route.pool.ready_count() if route.pool is not None else 0
        route.stats.condition_wait = lambda: route.condition_wait
        route.stats.later = lambda delay, call: asyncio.get_running_loop().call_later(delay, call)

    def route_infos(self) -> list[RouteInfo]:
        """The routes with their hosts and paths (empty until `build`), for /metrics and /api/routes."""
        return route_infos(self.rules)

    def _build_one(self, runtime: LocalRuntime, obj: HTTPScaledObject, claimed: dict[tuple[str, str], str]) -> Route:
        spec = obj.spec
        ref = obj.ref
        target_ref = spec.scale_target_ref
        if not target_ref.is_process_group:
            raise EbbError(
                f"{ref}: spec.scaleTargetRef: ebb run scales ProcessGroups (kind: ProcessGroup); "
                f"{target_ref.kind or 'Deployment'} {target_ref.name!r} needs a cluster"
            )
        failover_url = None
        failover = spec.cold_start_timeout_failover_ref
        if failover is not None:
            if failover.port is None or not 0 < failover.port < 65536:
                raise EbbError(f"{ref}: spec.coldStartTimeoutFailoverRef.port: locally, give a port (1..65535)")
            failover_url = f"http://127.0.0.1:{failover.port}"
        namespace = obj.metadata.namespace
        key = (namespace, target_ref.name)
        group = runtime.targets.get(key)
        if group is None:
            raise EbbError(f"{ref}: spec.scaleTargetRef: ProcessGroup {namespace}/{target_ref.name} is not loaded")
        if key in claimed:
            raise EbbError(
                f"{ref}: spec.scaleTargetRef: ProcessGroup {target_ref.name!r} is already scaled by {claimed[key]}"
            )
        so = obj.scaled_object()
        so_ref = object_ref(so)
        base_port = _route_port(ref, target_ref.port, target_ref.port_name, group)
        if group.ports:  # the group's own ports already reach each replica (PORT, PORT_<NAME>)
            group.replica_env = lambda index: {"EBB_PORT": str(base_port + index)}
        else:
            group.replica_env = lambda index: replica_env(base_port, index)
        pool = ReplicaPool(group, base_port, readiness_path=obj.metadata.annotations.get(READINESS_PATH_ANNOTATION))
        rate_spec = spec.scaling_metric.request_rate if spec.scaling_metric is not None else None
        route = Route(
            ref=ref,
            target=f"ProcessGroup {namespace}/{target_ref.name}",
            pool=pool,
            condition_wait=spec.condition_wait_seconds or self.options.condition_wait,
            response_header=spec.response_header_seconds or self.options.response_header,
            failover=failover_url,
            rate=RequestRate(rate_spec.window_seconds, rate_spec.granularity_seconds)
            if rate_spec is not None
            else RequestRate(60.0, 1.0),
        )
        ctx = TriggerContext(
            kind=so_ref.kind,
            namespace=so_ref.namespace,
            name=so_ref.name,
            trigger_index=0,
            trigger_type="external-push",
            metric_type="AverageValue",
            timeout=runtime.options.scaler_timeout,
        )
        scaler = InterceptorScaler(ctx, route, spec.metric, float(spec.metric_target), clock=runtime.options.clock)
        pause_state(so.metadata.annotations, str(so_ref))
        decider = ScaledObjectDecider(
            object_policy(so, now=runtime.options.clock()),
            state=runtime.state.lifecycle(so_ref.key),
            mode="direct",
            obj=str(so_ref),
            target=route.target,
            trigger_names=[],
        )
        target: DrainingTarget | ProcessGroupTarget
        if group.busy_probe is not None:
            # The group drains by its busyProbe: a draining replica leaves the pool at once (it is no longer
            # "running"), finishes its requests, and is stopped once its probe says idle.
            target = group
            group.listeners.append(pool.sync)
        else:
            target = DrainingTarget(group, pool)
            self.targets.append(target)
        loop = ScaledObjectLoop(
            so_ref,
            [scaler],
            target,
            decider,
            polling_interval=_polling_interval(obj, so.spec.polling_interval),
            observer=runtime.observer,
            annotations=so.metadata.annotations,
            state=runtime.state,
            clock=runtime.options.clock,
        )
        runtime.loops[so_ref] = loop
        claimed[key] = str(ref)
        self.routes[so_ref] = route
        self.pools.append(pool)
        return route

    def _build_route(self, runtime: LocalRuntime, ir: InterceptorRoute) -> Route:
        """The route of an InterceptorRoute, served by the ProcessGroup of the ScaledObject whose trigger reads it."""
        ref = ir.ref
        spec = ir.spec
        if spec.target.port is None:
            raise EbbError(f"{ref}: spec.target.portName: locally, give `port` (replica i listens on port + i)")
        fallback_url = None
        if spec.fallback is not None:
            if spec.fallback.port is None:
                raise EbbError(f"{ref}: spec.coldStart.fallback.service.portName: locally, give `port`")
            fallback_url = f"http://127.0.0.1:{spec.fallback.port}"
        paired = scaled_objects_for(runtime.resources, ir)
        if not paired:
            raise EbbError(
                f"{ref}: no ScaledObject scales it: give one an external-push trigger with "
                f"`interceptorRoute: {ir.name}` and a ProcessGroup as scaleTargetRef (its replicas serve the route)"
            )
        loops = [(so, runtime.loops.get(object_ref(so))) for so in paired]
        running = [(so, loop) for so, loop in loops if loop is not None]
        if not running:
            names = ", ".join(so.ref for so in paired)
            raise EbbError(f"{ref}: {names} cannot run (see its own problem), so nothing serves the route")
        base_port = spec.target.port
        so, first = running[0]
        pool: ReplicaPool | None = None
        if isinstance(first.target, DrainingTarget):  # already serving another route (or this one)
            pool = first.target.pool
            if pool.base_port != base_port:
                raise EbbError(
                    f"{ref}: spec.target.port: {so.ref} already serves another route on port {pool.base_port}; "
                    "a ProcessGroup listens on one port"
                )
        else:
            group = first.target
            if not isinstance(group, ProcessGroupTarget):
                raise EbbError(f"{ref}: {so.ref} does not scale a local ProcessGroup")
            group.replica_env = lambda index: replica_env(base_port, index)
            pool = ReplicaPool(group, base_port, readiness_path=ir.metadata.annotations.get(READINESS_PATH_ANNOTATION))
            draining = DrainingTarget(group, pool)
            first.target = draining
            self.targets.append(draining)
            self.pools.append(pool)
        route = Route(
            ref=ref,
            target=f"ProcessGroup {first.target.name}" if hasattr(first.target, "name") else so.ref,
            pool=pool,
        )
        problems = configure_route(
            route,
            ir,
            fallback_url=fallback_url,
            config_maps=manifest_config_maps(runtime.resources),
            condition_wait=self.options.condition_wait,
            response_header=self.options.response_header,
        )
        for problem in problems:
            if self.problem is not None:
                self.problem(
                    ObjectRef(ir.kind, ir.metadata.namespace, ir.name), f"{ref}: {problem} (answers get a 500)"
                )
        for so, loop in running:
            self._read_route(so, loop, ir, route)
        self.routes[object_ref(so)] = route
        return route

    def _read_route(self, so: ScaledObject, loop: ScaledObjectLoop, ir: InterceptorRoute, route: Route) -> None:
        """The ScaledObject's triggers that name the route read it in process, a scaler per metric it sets."""
        metric = ir.spec.scaling_metric
        for index, trigger in enumerate(so.spec.triggers):
            if interceptor_route_of(trigger) != ir.name:
                continue
            position = next(
                (
                    i
                    for i, s in enumerate(loop.scalers)
                    if s.ctx.trigger_index == index and isinstance(s, ExternalScaler)
                ),
                None,
            )
            if position is None:
                continue
            ctx = loop.scalers[position].ctx
            readers: list[InterceptorScaler] = []
            clock = loop.clock
            if metric.concurrency is not None:
                readers.append(
                    InterceptorScaler(
                        ctx,
                        route,
                        "concurrency",
                        float(metric.concurrency.target_value),
                        clock,
                        name=f"http_{ir.name}_concurrency",
                    )
                )
            if metric.request_rate is not None:
                readers.append(
                    InterceptorScaler(
                        ctx,
                        route,
                        "requestRate",
                        float(metric.request_rate.target_value),
                        clock,
                        name=f"http_{ir.name}_rate",
                        ceil_rate=False,
                    )
                )
            loop.scalers[position : position + 1] = readers

    def _unpaired_triggers(self, runtime: LocalRuntime) -> None:
        """A trigger naming an InterceptorRoute that is not loaded: said once (its reads fail as in the add-on)."""
        if self.problem is None:
            return
        for so in runtime.resources.scaled_objects():
            for index, trigger in enumerate(so.spec.triggers):
                name = interceptor_route_of(trigger)
                if name is None or runtime.resources.get(InterceptorRoute, so.metadata.namespace, name) is not None:
                    continue
                self.problem(
                    object_ref(so),
                    f"{so.ref}: spec.triggers[{index}].metadata.interceptorRoute: InterceptorRoute "
                    f"{so.metadata.namespace}/{name} is not in the loaded manifests",
                )

    async def start(self) -> None:
        assert self.interceptor is not None
        for pool in self.pools:
            self._tasks.append(asyncio.create_task(pool.run(), name=f"ebb-http-probe-{pool.group.name}"))
        try:
            await self.interceptor.start()
        except OSError as exc:
            where = f"{self.options.host}:{self.options.port}"
            if self.problem is not None:
                self.problem(
                    ObjectRef("interceptor", "", "ebb"), f"cannot serve HTTP on {where}: {exc.strerror or exc}"
                )
            self.interceptor = None
            return
        if self.options.announce is not None:
            self.options.announce(f"HTTP interceptor on http://{self.options.host}:{self.interceptor.bound_port}")

    async def stop(self, grace: float = 30.0) -> None:
        if self.interceptor is not None:
            await self.interceptor.stop(grace)
        for target in self.targets:
            await target.cancel()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
