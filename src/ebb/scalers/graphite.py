"""`graphite`: KEDA's Graphite scaler. The metric is the latest non-null point of one series.

As KEDA (pkg/scalers/graphite_scaler.go): GET `<serverAddress>/render?from=<queryTime>&target=<query>&format=json`
(Graphite's render API, served by graphite-web and by its compatible servers); no series counts 0, a series
with no points counts 0, more than one series is an error, and so is a series whose points are all null.
With `authMode: basic` the request carries HTTP Basic credentials (for a proxy in front of Graphite:
graphite-web itself does not authenticate render requests).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, NoReturn
from urllib.parse import quote_plus, urlsplit

import aiohttp

from ebb.errors import SpecError
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    activity,
    metric_name,
    param,
)
from ebb.scalers.rabbitmq import basic_auth


class GraphiteMetadata(ScalerMetadata):
    server_address: str = param(
        name="serverAddress",
        min_length=1,
        description="`http(s)://host:port` of graphite-web, with no query and no credentials",
    )
    query: str = param(name="query", min_length=1, description="a render target, e.g. `sumSeries(jobs.*.pending)`")
    threshold: float = param(100.0, name="threshold", gt=0, allow_inf_nan=False, description="> 0, per replica")
    activation_threshold: float = param(0.0, name="activationThreshold", allow_inf_nan=False)
    query_time: str = param(
        name="queryTime", min_length=1, description="the render API's `from`, e.g. `-10Minutes`, `-1h`"
    )
    auth_mode: Literal["basic"] | None = param(None, name="authMode", description="`basic`")
    username: str | None = param(
        None, name="username", sources=("authParams",), description="required with `authMode: basic`"
    )
    password: str | None = param(None, name="password", sources=("authParams",), secret=True)


class GraphiteScaler(Scaler):
    """Scales on a Graphite series' latest value; `threshold` per replica."""

    type_name: ClassVar[str] = "graphite"
    Metadata: ClassVar[type[ScalerMetadata]] = GraphiteMetadata
    meta: GraphiteMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        m = self.meta
        if m.auth_mode == "basic" and not m.username:
            self._bad("username", "required when authMode is basic (from a TriggerAuthentication)")
        parts = urlsplit(m.server_address)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.username:
            self._bad("serverAddress", "expected http(s)://host:port, with no query and no credentials")
        self.url = (
            f"{m.server_address.rstrip('/')}/render?from={m.query_time}"
            f"&target={quote_plus(m.query, safe='')}&format=json"
        )
        # KEDA sends Basic credentials whenever it has any (an empty password included).
        self._auth = basic_auth(m.username, m.password or "") if m.username else None
        self._session: aiohttp.ClientSession | None = None

    def _bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, "graphite"), target=self.meta.threshold, metric_type=self.ctx.metric_type
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def read(self) -> ScalerReading:
        value = await self._query()
        return ScalerReading(value=value, active=activity(value, self.meta.activation_threshold))

    async def _query(self) -> float:
        headers = {"Authorization": self._auth} if self._auth else {}
        where = self.meta.server_address
        try:
            async with self._client().get(self.url, headers=headers) as resp:
                if resp.status != 200:
                    body = " ".join((await resp.text(errors="replace")).split())[:200]
                    raise self.error(f"Graphite at {where} answered {resp.status} {resp.reason}: {body}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientConnectionError as exc:
            raise self.error(f"cannot reach Graphite at {where}: {exc}") from None
        except ValueError:
            raise self.error(f"Graphite at {where} did not answer with JSON: is serverAddress graphite-web?") from None
        return self._latest(data)

    def _latest(self, data: Any) -> float:
        if not isinstance(data, list):
            raise self.error("the render API answered something other than a list of series")
        if not data:
            return 0.0
        if len(data) > 1:
            raise self.error(f"graphite query {self.meta.query!r} returned {len(data)} series; it must return one")
        points = data[0].get("datapoints") if isinstance(data[0], dict) else None
        for point in reversed(points or []):
            if isinstance(point, list) and point and point[0] is not None:
                value = point[0]
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    return float(value)
                raise self.error(f"graphite query {self.meta.query!r} returned a point that is not a number: {value!r}")
        if not points:
            return 0.0
        raise self.error(
            f"no non-null point in graphite query {self.meta.query!r} from {self.meta.query_time}: "
            "increase queryTime or check the query"
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
