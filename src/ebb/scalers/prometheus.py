"""The `prometheus` trigger: one PromQL instant query whose result must be a single number.

Follows KEDA's prometheus scaler: `GET {serverAddress}/api/v1/query?query=...&time=...`, a result of at most
one series, empty results (and NaN/Inf) counted as 0 while `ignoreNullValues` is true, auth by `authModes`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
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
from ebb.units import parse_duration

#: Auth modes this trigger applies (KEDA's `authModes` values that make sense for a Prometheus query).
AUTH_MODES = ("basic", "bearer", "tls", "custom")
#: KEDA accepts these in `authModes` for every HTTP scaler, but its prometheus scaler never applies them.
_UNSUPPORTED_MODES = ("apiKey", "oauth")


def parse_key_values(text: str) -> dict[str, str]:
    """KEDA's map syntax `k1=v1,k2=v2` (spaces around items trimmed)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class PrometheusMetadata(ScalerMetadata):
    server_address: str = param(name="serverAddress", min_length=1, description="`http(s)://…`")
    query: str = param(name="query", min_length=1)
    threshold: float = param(name="threshold", gt=0, allow_inf_nan=False, description="> 0")
    activation_threshold: float = param(0.0, name="activationThreshold", allow_inf_nan=False)
    namespace: str | None = param(None, name="namespace", description="Thanos tenancy (`?namespace=`)")
    custom_headers: dict[str, str] = param({}, name="customHeaders", description="`k1=v1,k2=v2`")
    query_parameters: dict[str, str] = param({}, name="queryParameters", description="`k1=v1,k2=v2`")
    ignore_null_values: bool = param(
        True,
        name="ignoreNullValues",
        description="an empty result, NaN or Inf counts as 0. With `false` it is an error",
    )
    unsafe_ssl: bool = param(False, name="unsafeSsl")
    timeout: float | None = param(
        None, name="timeout", shown_default="global (3 s)", description="ms or a duration (`5s`)"
    )
    auth_modes: tuple[str, ...] = param(
        (),
        name="authModes",
        sources=("triggerMetadata", "authParams"),
        description="comma list: `basic`, `bearer`, `tls`, `custom`",
    )
    username: str | None = param(None, name="username", sources=("authParams",), description="`basic`")
    password: str | None = param(None, name="password", sources=("authParams",), secret=True, description="`basic`")
    bearer_token: str | None = param(
        None, name="bearerToken", sources=("authParams",), secret=True, description="`bearer`"
    )
    custom_auth_header: str | None = param(
        None, name="customAuthHeader", sources=("authParams",), description="`custom`. The value is"
    )
    custom_auth_value: str | None = param(
        None, name="customAuthValue", sources=("authParams",), secret=True, description="`custom`. The value is"
    )
    ca: str | None = param(None, name="ca", sources=("authParams",), description="PEM text")
    cert: str | None = param(None, name="cert", sources=("authParams",), description="PEM text")
    key: str | None = param(None, name="key", sources=("authParams",), secret=True, description="PEM text")

    @field_validator("server_address")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("custom_headers", "query_parameters", mode="before")
    @classmethod
    def _key_values(cls, value: Any) -> Any:
        if value is None:
            return {}
        return parse_key_values(value) if isinstance(value, str) else value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("auth_modes", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        modes = tuple(m.strip() for m in value.split(",") if m.strip())
        for mode in modes:
            if mode in _UNSUPPORTED_MODES:
                raise ValueError(f"auth mode {mode!r} is not supported by the prometheus trigger")
            if mode not in AUTH_MODES:
                raise ValueError(f"unknown auth mode {mode!r}; expected some of {', '.join(AUTH_MODES)}")
        if "basic" in modes and "bearer" in modes:
            raise ValueError("auth modes 'basic' and 'bearer' cannot be combined")
        return modes


class PrometheusScaler(Scaler):
    type_name: ClassVar[str] = "prometheus"
    Metadata: ClassVar[type[ScalerMetadata]] = PrometheusMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, PrometheusMetadata)
        self.m = meta
        self._check_auth()
        try:
            self._ssl = self._ssl_context()
        except (ssl.SSLError, ValueError) as exc:
            raise SpecError(
                ctx.object_ref,
                f"spec.triggers[{ctx.trigger_index}].authenticationRef",
                f"ca, cert or key is not a valid PEM certificate/key ({type(exc).__name__})",
            ) from None
        self._session: aiohttp.ClientSession | None = None

    def _check_auth(self) -> None:
        m = self.m
        missing: list[str] = []
        if "basic" in m.auth_modes and not m.username:
            missing.append("username (authMode basic)")
        if "bearer" in m.auth_modes and not m.bearer_token:
            missing.append("bearerToken (authMode bearer)")
        if "custom" in m.auth_modes and not (m.custom_auth_header and m.custom_auth_value):
            missing.append("customAuthHeader and customAuthValue (authMode custom)")
        if "tls" in m.auth_modes and not (m.cert and m.key):
            missing.append("cert and key (authMode tls)")
        if missing:
            raise SpecError(
                self.ctx.object_ref,
                f"spec.triggers[{self.ctx.trigger_index}].authenticationRef",
                "missing auth parameter(s): " + "; ".join(missing),
            )

    @property
    def timeout(self) -> float:
        # KEDA's `timeout` replaces the global HTTP timeout for this trigger only.
        return self.m.timeout if self.m.timeout else self.ctx.timeout

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, "prometheus"),
            target=self.m.threshold,
            metric_type=self.ctx.metric_type,
        )

    def _ssl_context(self) -> ssl.SSLContext | bool:
        m = self.m
        tls = "tls" in m.auth_modes
        if not (tls or m.ca or m.unsafe_ssl):
            return True
        context = ssl.create_default_context()
        if m.ca:
            context.load_verify_locations(cadata=m.ca)
        if tls and m.cert and m.key:
            _load_cert_chain(context, m.cert, m.key)
        if m.unsafe_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _headers(self) -> dict[str, str]:
        m = self.m
        headers = dict(m.custom_headers)
        if "bearer" in m.auth_modes and m.bearer_token:
            headers["Authorization"] = f"Bearer {m.bearer_token}"
        elif "basic" in m.auth_modes and m.username:
            pair = f"{m.username}:{m.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if "custom" in m.auth_modes and m.custom_auth_header and m.custom_auth_value:
            headers[m.custom_auth_header] = m.custom_auth_value
        return headers

    def _params(self) -> list[tuple[str, str]]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = [("query", self.m.query), ("time", now)]
        if self.m.namespace:
            params.append(("namespace", self.m.namespace))
        params.extend(self.m.query_parameters.items())
        return params

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def query(self) -> float:
        """Run the query once and return its single value (0 for an empty result when nulls are ignored)."""
        session = self._get_session()
        url = f"{self.m.server_address}/api/v1/query"
        async with session.get(url, params=self._params(), headers=self._headers()) as resp:
            body = await resp.read()
            if not 200 <= resp.status <= 299:
                raise self.error(f"prometheus query API returned HTTP {resp.status}{_api_error(body)}")
        try:
            doc = json.loads(body)
            data = doc["data"]
            result_type = data["resultType"]
            result = data["result"]
        except (ValueError, KeyError, TypeError):
            raise self.error(f"{url} did not answer with a Prometheus query API response") from None
        if result_type == "scalar":
            sample: Any = result
        elif result_type == "vector":
            if len(result) > 1:
                raise self.error(
                    f"query returned {len(result)} series; it must return a single element "
                    "(aggregate it, e.g. with sum(...))"
                )
            if not result:
                return self._null("the result is empty")
            sample = result[0].get("value")
        else:
            raise self.error(f"query returned a {result_type}; it must return an instant vector or a scalar")
        if not isinstance(sample, list) or len(sample) < 2:
            return self._null("the value list is empty")
        try:
            value = float(sample[1])
        except (TypeError, ValueError):
            raise self.error(f"query returned {sample[1]!r}, which is not a number") from None
        if not math.isfinite(value):
            return self._null(f"the query returned {sample[1]}")
        return value

    def _null(self, why: str) -> float:
        if self.m.ignore_null_values:
            return 0.0
        raise self.error(f"{why} (set ignoreNullValues to true to count this as 0)")

    async def read(self) -> ScalerReading:
        value = await self.query()
        return ScalerReading(value=value, active=activity(value, self.m.activation_threshold))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _api_error(body: bytes) -> str:
    """Prometheus's own error text for a failed query (bad PromQL...), shortened."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if isinstance(doc, Mapping) and isinstance(doc.get("error"), str):
        return f": {doc['error'][:300]}"
    return ""


def _load_cert_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """ssl only loads client certificates from files: write them privately and remove them at once."""
    with tempfile.TemporaryDirectory(prefix="ebb-tls-") as tmp:
        paths = []
        for name, pem in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(pem)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])
