"""The interceptors' load, as the operator sees it: one long HTTP stream per interceptor replica.

Why not KEDA's external-push gRPC stream, as the add-on does: there, KEDA's operator opens a gRPC stream to the
add-on's scaler Deployment, which itself polls every interceptor's `/queue` (once a second); a held request
waits for that poll and then for the stream. ebb's operator is the scaler: it follows the interceptors' admin
Service through its EndpointSlices and keeps one `GET /queue/stream` open to each ready replica. An interceptor
writes a line the moment a request is held (naming the route to wake) and once a second otherwise; the
operator sums the replicas' counts per route. No gRPC, no extra Deployment, no poll on the wake path.

A replica whose stream breaks stops counting at once (its requests are either finished or will be retried
through another replica); with no replica reachable at all, reading fails (ScalerError), so the scaling loop
keeps the replicas it has rather than scaling in on a blind spot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import aiohttp

from ebb.errors import ScalerError, SpecError
from ebb.http.scaler import InterceptorMetadata
from ebb.kube.client import API_ERRORS, AsyncClient, is_not_found, to_dict
from ebb.kube.endpoints import ENDPOINT_SLICE, SERVICE_NAME_LABEL
from ebb.kube.http_endpoints import ready_endpoints
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT, INTERCEPTOR_ROUTE, route_key
from ebb.kube.informer import Informer
from ebb.scalers.base import MetricSpec, Scaler, ScalerReading, TriggerContext, metric_name
from ebb.scalers.external import ExternalScaler
from ebb.spec.loader import parse_object
from ebb.spec.models import (
    INTERCEPTOR_ROUTE_KEY,
    HTTPScaledObject,
    InterceptorRoute,
    ScaledObject,
    interceptor_route_of,
)

log = logging.getLogger("ebb.operator")

DEFAULT_SERVICE = "ebb-interceptor-admin"
DEFAULT_PORT_NAME = "admin"
#: Seconds before reopening a broken stream, doubled up to MAX_RECONNECT.
RECONNECT = 0.5
MAX_RECONNECT = 10.0
#: A stream that sends nothing for this long (the interceptor writes every second) is dropped and reopened.
STALL = 10.0

Metric = Literal["concurrency", "requestRate"]


class InterceptorFeed:
    """Sums the counts of every interceptor replica per route ("namespace/name"); wakes listeners at once."""

    def __init__(
        self,
        client: AsyncClient | None,
        namespace: str,
        service: str = DEFAULT_SERVICE,
        port_name: str = DEFAULT_PORT_NAME,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.port_name = port_name
        self.slices = (
            Informer(
                client,
                ENDPOINT_SLICE,
                namespace=namespace,
                labels={SERVICE_NAME_LABEL: service},
                on_change=self._endpoints_changed,
                what=f"EndpointSlices of Service {namespace}/{service}",
            )
            if client is not None
            else None
        )
        #: Per interceptor replica (its admin URL): the last counts it sent, by route.
        self.counts: dict[str, dict[str, dict[str, float]]] = {}
        self.listeners: dict[str, set[Callable[[], None]]] = {}
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._informer: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- what the scalers read -------------------------------------------------------------------------

    @property
    def connected(self) -> int:
        """Interceptor replicas whose counts are current."""
        return len(self.counts)

    def concurrency(self, route: str) -> float:
        return float(sum(c.get(route, {}).get("concurrency", 0) for c in self.counts.values()))

    def rate(self, route: str) -> float:
        return float(sum(c.get(route, {}).get("rate", 0.0) for c in self.counts.values()))

    def requests(self, route: str) -> float:
        """Requests counted so far, summed over the replicas (moves whenever one was served)."""
        return float(sum(c.get(route, {}).get("requests", 0) for c in self.counts.values()))

    def listen(self, route: str, notify: Callable[[], None]) -> None:
        self.listeners.setdefault(route, set()).add(notify)

    def unlisten(self, route: str, notify: Callable[[], None]) -> None:
        self.listeners.get(route, set()).discard(notify)

    def _wake(self, route: str) -> None:
        for notify in list(self.listeners.get(route, ())):
            notify()

    def apply(self, source: str, line: dict[str, Any]) -> None:
        """One line of a replica's stream: its counts now; routes named in `wake` (or newly busy) wake at once."""
        routes = line.get("routes")
        if not isinstance(routes, dict):
            return
        idle_before = {route for route in routes if self.concurrency(route) == 0}
        self.counts[source] = {str(k): dict(v) for k, v in routes.items() if isinstance(v, dict)}
        wake = {str(r) for r in line.get("wake") or ()}
        wake |= {route for route in idle_before if self.concurrency(route) > 0}
        for route in sorted(wake):
            self._wake(route)

    def forget(self, source: str) -> None:
        self.counts.pop(source, None)

    # --- following the interceptors --------------------------------------------------------------------

    def follow(self, url: str) -> None:
        """Follow the interceptor at `url` (its admin server) as if its endpoint had appeared."""
        if url not in self._streams:
            self._streams[url] = asyncio.create_task(self._follow(url), name=f"ebb-interceptor-feed {url}")

    def _endpoints_changed(self) -> None:
        assert self.slices is not None
        urls = {f"http://{host}:{port}" for host, port in ready_endpoints(self.slices.objects.values(), self.port_name)}
        for url in list(self._streams):
            if url not in urls:
                self._streams.pop(url).cancel()
                self.forget(url)
        for url in sorted(urls):
            self.follow(url)

    async def _follow(self, url: str) -> None:
        delay = RECONNECT
        while True:
            try:
                if self._session is None:
                    self._session = aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=STALL)
                    )
                async with self._session.get(url + "/queue/stream") as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status, message=response.reason or ""
                        )
                    log.info("following interceptor %s", url)
                    async for raw in response.content:
                        try:
                            line = json.loads(raw)
                        except ValueError:
                            continue
                        if isinstance(line, dict):
                            self.apply(url, line)
                            delay = RECONNECT
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("interceptor %s: %s", url, exc)
            self.forget(url)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT)

    async def start(self) -> None:
        if self.slices is not None and self._informer is None:
            self._informer = asyncio.create_task(self.slices.run(), name="ebb-interceptor-endpoints")

    async def stop(self) -> None:
        tasks = list(self._streams.values()) + ([self._informer] if self._informer is not None else [])
        self._streams.clear()
        self._informer = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.counts.clear()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None


class InterceptorFeedScaler(Scaler):
    """The add-on scaler's value (scaler/handlers.go), summed over the interceptor replicas: requests in flight,
    or the request rate (rounded up for HTTPScaledObjects, as it is for InterceptorRoutes)."""

    type_name: ClassVar[str] = "external-push"
    Metadata: ClassVar[type[InterceptorMetadata]] = InterceptorMetadata
    supports_push: ClassVar[bool] = True

    def __init__(
        self,
        ctx: TriggerContext,
        feed: InterceptorFeed,
        route: str,
        metric: Metric,
        target: float,
        *,
        name: str | None = None,
        ceil_rate: bool = True,
    ) -> None:
        super().__init__(ctx, InterceptorMetadata())
        self.feed = feed
        self.route = route
        self.metric = metric
        self.target = target
        #: The metric's name after KEDA's `s{index}-`: the add-on scaler's own (scaler/naming.go).
        self.name = name or f"http-{metric}"
        self.ceil_rate = ceil_rate
        #: The summed request count at the last read; None until a read with an interceptor connected (an
        #: operator started after traffic must not count the interceptors' past requests as new ones).
        self._requests_seen: float | None = None

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(name=metric_name(self.ctx, self.name), target=self.target)

    async def read(self) -> ScalerReading:
        if not self.feed.connected:
            raise ScalerError(
                self.ctx.object_ref,
                self.ctx.trigger_ref,
                f"no interceptor reachable (Service {self.feed.namespace}/{self.feed.service}, "
                f"port {self.feed.port_name!r}): is `ebb interceptor` running?",
            )
        if self.metric == "requestRate":
            rate = self.feed.rate(self.route)
            value = float(math.ceil(rate)) if self.ceil_rate else rate
        else:
            value = self.feed.concurrency(self.route)
        # A request served since the last read keeps the route active even if none is in flight now (sparse but
        # steady traffic must keep resetting the cooldown, unlike the add-on's #1352).
        # Only a rise counts: a replica that restarts or leaves takes its count with it.
        requests = self.feed.requests(self.route)
        served = self._requests_seen is not None and requests > self._requests_seen
        self._requests_seen = requests
        return ScalerReading(value=value, active=value > 0 or served)

    async def watch(self, notify: Callable[[], None]) -> None:
        self.feed.listen(self.route, notify)
        try:
            await asyncio.Event().wait()
        finally:
            self.feed.unlisten(self.route, notify)

    def describe(self) -> dict[str, object]:
        return {"metric": self.metric, "targetValue": self.target, "interceptors": self.feed.connected}


#: An `external-push` trigger's metadata naming what it reads (the add-on's pkg/k8s/scaledobject.go).
HTTP_SCALED_OBJECT_KEY = "httpScaledObject"


def _escape(name: str) -> str:
    """The add-on's escapeString: every character outside [-.0-9A-Za-z] as _XXXX (its code point, hex)."""
    return re.sub(r"[^-.0-9A-Za-z]", lambda m: f"_{ord(m.group()):04X}", name)


async def _read_object(
    client: AsyncClient, resource: Any, kind: str, so: ScaledObject, index: int, key: str, name: str
) -> Any:
    field = f"spec.triggers[{index}].metadata.{key}"
    try:
        body = to_dict(await client.get(resource, name, namespace=so.metadata.namespace))
    except API_ERRORS as exc:
        if is_not_found(exc):
            raise SpecError(so.ref, field, f"{kind} {so.metadata.namespace}/{name} does not exist") from None
        raise
    obj, errors = parse_object(body, label=f"{kind} {so.metadata.namespace}/{name}")
    if errors or obj is None:
        text = "; ".join(f"{e.field}: {e.message}" if isinstance(e, SpecError) else str(e) for e in errors)
        raise SpecError(so.ref, field, f"{kind} {so.metadata.namespace}/{name} is invalid: {text}")
    return obj


async def interceptor_scalers(
    client: AsyncClient, so: ScaledObject, scalers: list[Scaler], feed: InterceptorFeed
) -> list[Scaler]:
    """A ScaledObject's `external-push` triggers that name an InterceptorRoute or an HTTPScaledObject, read from the
    interceptors' load in this operator instead of through the add-on's gRPC scaler (`scalerAddress` is not
    dialled): one scaler per metric the route sets, named as the add-on names them (`s0-http_<route>_concurrency`
    and `s0-http_<route>_rate`; an HTTPScaledObject's `s0-http-<namespace>_002F<name>`). Raises SpecError naming
    the trigger's field when the object it names is missing or invalid. Other scalers pass through."""
    out: list[Scaler] = []
    for scaler in scalers:
        index = scaler.ctx.trigger_index
        trigger = so.spec.triggers[index] if isinstance(scaler, ExternalScaler) else None
        if trigger is None or trigger.type != "external-push":
            out.append(scaler)
            continue
        ir_name = interceptor_route_of(trigger)
        hso_name = trigger.metadata.get(HTTP_SCALED_OBJECT_KEY) or None
        if ir_name is None and hso_name is None:
            out.append(scaler)
            continue
        await scaler.close()
        namespace = so.metadata.namespace
        if ir_name is not None:
            ir = await _read_object(
                client, INTERCEPTOR_ROUTE, "InterceptorRoute", so, index, INTERCEPTOR_ROUTE_KEY, ir_name
            )
            assert isinstance(ir, InterceptorRoute)
            metric = ir.spec.scaling_metric
            route = route_key(namespace, ir_name)
            if metric.concurrency is not None:
                out.append(
                    InterceptorFeedScaler(
                        scaler.ctx,
                        feed,
                        route,
                        "concurrency",
                        float(metric.concurrency.target_value),
                        name=f"http_{ir_name}_concurrency",
                    )
                )
            if metric.request_rate is not None:
                out.append(
                    InterceptorFeedScaler(
                        scaler.ctx,
                        feed,
                        route,
                        "requestRate",
                        float(metric.request_rate.target_value),
                        name=f"http_{ir_name}_rate",
                        ceil_rate=False,
                    )
                )
        else:
            assert hso_name is not None
            hso = await _read_object(
                client, HTTP_SCALED_OBJECT, "HTTPScaledObject", so, index, HTTP_SCALED_OBJECT_KEY, hso_name
            )
            assert isinstance(hso, HTTPScaledObject)
            out.append(
                InterceptorFeedScaler(
                    scaler.ctx,
                    feed,
                    route_key(namespace, hso_name),
                    hso.spec.metric,
                    float(hso.spec.metric_target),
                    name=_escape(f"http-{namespace}/{hso_name}"),
                )
            )
    return out
