"""The `predictkube` trigger, served by ebb's own forecaster instead of Dysnix's SaaS (no account, offline).

KEDA's predictkube scaler reads `query` over `historyTimeWindow` at `queryStep` from Prometheus, sends it to
the PredictKube API and scales on the value predicted `predictHorizon` ahead. Here the same range query feeds
`ebb.scaling.forecast`, and the metric is max(the query's latest value, the forecast's peak over the horizon):
a forecast can only add replicas earlier, never starve current load. `apiKey` is accepted and never used.
A guard serves the latest value alone while the recent forecast error is too high.

Prometheus auth as KEDA's predictkube (its `authentication.Config`): `authModes` in the trigger's metadata or the
TriggerAuthentication, `bearer` (`bearerToken`), `basic` (`username`, `password`) and `custom`
(`customAuthHeader`, `customAuthValue`); credentials are only sent once `authModes` asks for them, and never
appear in errors.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from typing import Any, ClassVar

import aiohttp
from pydantic import field_validator

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
from ebb.scaling.forecast import ForecastGuard, Prediction, PredictiveSettings, make_forecaster, would_be_replicas

_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: At most this many points are asked of Prometheus (its own limit is 11,000 per query).
MAX_POINTS = 11000
#: The Prometheus auth modes applied (KEDA's `authModes` values; `tls` and `oauth` are not supported here).
AUTH_MODES = ("bearer", "basic", "custom")


def parse_span(value: Any) -> Any:
    """`2h`, `7d`, `1w2d`, `90s` (KEDA's str2duration forms) as seconds."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected a duration such as 30s, 2m, 2h or 7d, got {value!r}")
    return total


class PredictKubeMetadata(ScalerMetadata):
    prometheus_address: str = param(name="prometheusAddress", min_length=1)
    query: str = param(name="query", min_length=1)
    predict_horizon: float = param(name="predictHorizon", gt=0)
    history_time_window: float = param(name="historyTimeWindow", gt=0)
    query_step: float = param(name="queryStep", gt=0)
    threshold: float = param(name="threshold", gt=0, allow_inf_nan=False)
    activation_threshold: float = param(0.0, name="activationThreshold", allow_inf_nan=False)
    api_key: str | None = param(None, name="apiKey", sources=("authParams",), secret=True)
    auth_modes: tuple[str, ...] = param(
        (),
        name="authModes",
        sources=("triggerMetadata", "authParams"),
        description="Prometheus auth, comma list: `bearer`, `basic`, `custom`",
    )
    bearer_token: str | None = param(
        None, name="bearerToken", sources=("authParams",), secret=True, description="`bearer`"
    )
    username: str | None = param(None, name="username", sources=("authParams",), description="`basic`")
    password: str | None = param(None, name="password", sources=("authParams",), secret=True, description="`basic`")
    custom_auth_header: str | None = param(
        None, name="customAuthHeader", sources=("authParams",), description="`custom`"
    )
    custom_auth_value: str | None = param(
        None, name="customAuthValue", sources=("authParams",), secret=True, description="`custom`"
    )

    @field_validator("auth_modes", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        modes = tuple(m.strip() for m in value.split(",") if m.strip())
        for mode in modes:
            if mode not in AUTH_MODES:
                raise ValueError(f"auth mode {mode!r} is not supported; expected some of {', '.join(AUTH_MODES)}")
        if "basic" in modes and "bearer" in modes:
            raise ValueError("auth modes 'basic' and 'bearer' cannot be combined")
        return modes

    @field_validator("predict_horizon", "history_time_window", "query_step", mode="before")
    @classmethod
    def _span(cls, value: Any) -> Any:
        return parse_span(value)

    @field_validator("prometheus_address")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")


class PredictKubeScaler(Scaler):
    type_name: ClassVar[str] = "predictkube"
    Metadata: ClassVar[type[ScalerMetadata]] = PredictKubeMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, PredictKubeMetadata)
        self.m = meta
        self._headers = self._auth_headers()
        self._session: aiohttp.ClientSession | None = None
        self.guard = ForecastGuard()
        self._cached: tuple[float, float, float] | None = None  # (until, latest, predicted)
        self._pending: float | None = None  # the last forecast of the next step, checked by the guard
        self._prediction: Prediction | None = None

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(name=metric_name(self.ctx, "predictkube"), target=self.m.threshold)

    def _auth_headers(self) -> dict[str, str]:
        """The Prometheus query's auth headers; SpecError naming what `authModes` needs and is missing."""
        m = self.m
        missing = []
        if "bearer" in m.auth_modes and not m.bearer_token:
            missing.append("bearerToken (authModes bearer)")
        if "basic" in m.auth_modes and not m.username:
            missing.append("username (authModes basic)")
        if "custom" in m.auth_modes and not (m.custom_auth_header and m.custom_auth_value):
            missing.append("customAuthHeader and customAuthValue (authModes custom)")
        if missing:
            raise SpecError(
                self.ctx.object_ref,
                f"spec.triggers[{self.ctx.trigger_index}].authenticationRef",
                "missing auth parameter(s): " + "; ".join(missing),
            )
        headers: dict[str, str] = {}
        if "bearer" in m.auth_modes and m.bearer_token:
            headers["Authorization"] = f"Bearer {m.bearer_token}"
        elif "basic" in m.auth_modes and m.username:
            pair = f"{m.username}:{m.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if "custom" in m.auth_modes and m.custom_auth_header and m.custom_auth_value:
            headers[m.custom_auth_header] = m.custom_auth_value
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def history(self, now: float) -> list[float]:
        """The query's values over historyTimeWindow at queryStep, oldest first (missing steps as 0)."""
        step = max(self.m.query_step, self.m.history_time_window / MAX_POINTS)
        start = now - self.m.history_time_window
        params = {"query": self.m.query, "start": f"{start:.3f}", "end": f"{now:.3f}", "step": f"{step:g}"}
        url = f"{self.m.prometheus_address}/api/v1/query_range"
        async with self._get_session().get(url, params=params, headers=self._headers) as resp:
            body = await resp.read()
            if not 200 <= resp.status <= 299:
                raise self.error(f"prometheus query_range API returned HTTP {resp.status}")
        try:
            result = json.loads(body)["data"]["result"]
        except (ValueError, KeyError, TypeError):
            raise self.error(f"{url} did not answer with a Prometheus query_range response") from None
        if len(result) > 1:
            raise self.error(f"query returned {len(result)} series; it must return one (aggregate it with sum(...))")
        n = int(self.m.history_time_window // step) + 1
        values = [0.0] * n
        for stamp, raw in result[0].get("values", []) if result else []:
            i = round((float(stamp) - start) / step)
            try:
                v = float(raw)
            except (TypeError, ValueError):
                continue
            if 0 <= i < n and math.isfinite(v):
                values[i] = v
        return values

    async def read(self) -> ScalerReading:
        now = time.time()
        if self._cached is None or now >= self._cached[0]:
            values = await self.history(now)
            latest = values[-1] if values else 0.0
            if self._pending is not None:
                self.guard.record(self._pending, latest)
            model = make_forecaster(PredictiveSettings().model, self.m.query_step)
            for v in values:
                model.observe(v)
            steps = max(1, math.ceil(self.m.predict_horizon / self.m.query_step))
            fc = model.forecast(steps)
            self._pending = fc.mean[0]
            predicted = fc.peak(steps, "upper")
            self._cached = (now + self.m.query_step, latest, predicted)
            spec = self.metric_spec()
            self._prediction = Prediction(
                metric_name=spec.name,
                mode="on",
                enabled=self.guard.enabled,
                error=self.guard.error(),
                max_error=self.guard.max_error,
                at=now,
                forecast=fc,
                value=max(latest, predicted),
                replicas=would_be_replicas(max(latest, predicted), spec.target, spec.metric_type),
            )
        _, latest, predicted = self._cached
        value = max(latest, predicted) if self.guard.enabled else latest
        return ScalerReading(value=value, active=activity(value, self.m.activation_threshold))

    def prediction(self) -> Prediction | None:
        return self._prediction

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
