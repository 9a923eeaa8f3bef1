"""A route's load as a trigger of its scaling loop: the add-on's external-push scaler, in process.

The value is what the add-on's scaler reports (scaler/handlers.go): requests in flight for `concurrency`, or
the windowed request rate for `requestRate` (rounded up for HTTPScaledObjects); the target is the object's
target. The route is active when the value is above 0, a request is in flight (held ones included), or one
was counted since the last read. `watch` makes the loop poll at once when a request is held.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import ClassVar, Literal

from ebb.http.interceptor import Route
from ebb.scalers.base import MetricSpec, Scaler, ScalerMetadata, ScalerReading, TriggerContext, metric_name


class InterceptorMetadata(ScalerMetadata):
    """The trigger the add-on's operator writes: scalerAddress and httpScaledObject; nothing to parse."""


class InterceptorScaler(Scaler):
    type_name: ClassVar[str] = "external-push"
    Metadata: ClassVar[type[ScalerMetadata]] = InterceptorMetadata
    supports_push: ClassVar[bool] = True

    def __init__(
        self,
        ctx: TriggerContext,
        route: Route,
        metric: Literal["concurrency", "requestRate"],
        target: float,
        clock: Callable[[], float] = time.time,
        *,
        name: str | None = None,
        ceil_rate: bool = True,
    ) -> None:
        super().__init__(ctx, InterceptorMetadata())
        self.route = route
        self.metric = metric
        self.target = target
        self.clock = clock
        #: The metric's name after KEDA's `s{index}-` (InterceptorRoutes: the add-on's `http_<route>_<metric>`).
        self.name = name or f"http-{self.metric}"
        #: HTTPScaledObjects report the rate rounded up; InterceptorRoutes as it is (scaler/handlers.go).
        self.ceil_rate = ceil_rate
        self._requests_seen = route.requests

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(name=metric_name(self.ctx, self.name), target=self.target)

    def value(self) -> float:
        if self.metric == "requestRate" and self.route.rate is not None:
            rate = self.route.rate.average(self.clock())
            return float(math.ceil(rate)) if self.ceil_rate else rate
        in_flight = float(self.route.in_flight)
        if self.route.placeholder_pending:
            # A placeholder answered at once, so nothing stays in flight: the answered request still asks for
            # a replica, until one is ready.
            pool = self.route.pool
            if pool is not None and pool.ready_count() > 0:
                self.route.placeholder_pending = False
            else:
                return max(in_flight, 1.0)
        return in_flight

    async def read(self) -> ScalerReading:
        value = self.value()
        # A request counted since the last read makes the route active even if none is in flight now: short
        # requests between polls must keep resetting the cooldown (the add-on's #1352 scales sparse but steady
        # traffic to zero because its scaler only sees the requests in flight at the instant it polls).
        requests = self.route.requests
        served = requests != self._requests_seen
        self._requests_seen = requests
        # And a request in flight (held ones included) keeps it active whatever the metric: with requestRate the
        # rate of a slow cold start's held request falls to 0 after one window, and must not scale it back in.
        return ScalerReading(value=value, active=value > 0 or served or self.route.in_flight > 0)

    async def watch(self, notify: Callable[[], None]) -> None:
        self.route.listeners.append(notify)
        try:
            await asyncio.Event().wait()
        finally:
            self.route.listeners.remove(notify)

    def describe(self) -> dict[str, object]:
        return {"metric": self.metric, "targetValue": self.target}
