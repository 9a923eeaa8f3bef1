"""`metrics-api`: KEDA's metrics-api scaler. GET a URL, pick one number out of the answer.

Parity with KEDA's pkg/scalers/metrics_api_scaler.go: only HTTP 200 is an answer; `valueLocation` is a
GJSON path for json (here also for yaml and xml: see `_gjson`) or a metric selector for prometheus; the value
is a number or a string holding a Kubernetes quantity ("10", "1.5k", "500m"); active iff value >
activationTargetValue. Auth as KEDA's authentication.Config: apiKey (header or query), basic, bearer, tls.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import re
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, quote_plus
from xml.etree import ElementTree

import aiohttp
import yaml
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from yarl import URL

from ebb.errors import ScalerError, SpecError
from ebb.scalers import _gjson as gjson
from ebb.scalers import _prometheus_text as prometheus_text
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    Source,
    TriggerContext,
    activity,
    metric_name,
    param,
    require_target_unless_metric_source,
)
from ebb.units import parse_duration, parse_quantity

Format = Literal["json", "xml", "yaml", "prometheus"]
AggregationType = Literal["average", "sum", "max", "min"]
AuthMode = Literal["apiKey", "basic", "tls", "bearer", "custom", "oauth"]
_SUPPORTED_AUTH = ("apiKey", "basic", "tls", "bearer")
_AUTH: tuple[Source, ...] = ("triggerMetadata", "authParams")

# ---------------------------------------------------------------------------------------------------------
# Prometheus text exposition: `valueLocation` is a selector, `name{label="v",other=~"re"}`.

_SELECTOR = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*", re.DOTALL)
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*(,|$)""",
    re.DOTALL,
)


@dataclass(frozen=True)
class _Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]

    def matches(self, labels: dict[str, str]) -> bool:
        for label, op, want in self.matchers:
            have = labels.get(label, "")  # PromQL: a missing label matches as the empty string
            if op == "=" and have != want:
                return False
            if op == "!=" and have == want:
                return False
            if op in ("=~", "!~") and (re.fullmatch(want, have) is not None) != (op == "=~"):
                return False
        return True


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text, flags=re.DOTALL)


def parse_selector(text: str) -> _Selector:
    """Parse a PromQL instant-vector selector; ValueError says what is wrong."""
    match = _SELECTOR.fullmatch(text)
    if match is None or (match.group(1) is None and match.group(2) is None):
        raise ValueError('expected a metric selector such as http_requests_total{code="500"}')
    name, body = match.group(1) or "", match.group(2) or ""
    matchers: list[tuple[str, str, str]] = []
    pos = 0
    while body[pos:].strip():
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(f"cannot parse label matcher at {body[pos:]!r}")
        label, op, quoted = m.group(1), m.group(2), m.group(3)
        value = quoted[1:-1] if quoted[0] == "`" else _unescape(quoted[1:-1])
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"label {label}: bad regular expression: {exc}") from None
        if label == "__name__":
            if op != "=":
                raise ValueError("__name__ must be matched with =")
            name = value
        else:
            matchers.append((label, op, value))
        pos = m.end()
    if not name:
        raise ValueError("the selector names no metric")
    return _Selector(name, tuple(matchers))


# ---------------------------------------------------------------------------------------------------------
# Response bodies as plain data


def _json_body(body: bytes) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(body, parse_constant=refuse)


def _plain_keys(value: Any) -> Any:
    """YAML allows any key type; paths are text, so keys become text (as KEDA's GetValueByPath does)."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else str(k)): _plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_keys(v) for v in value]
    return value


def _yaml_body(body: bytes) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _plain_keys(yaml.load(body, Loader=loader))


def _xml_element(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        key, value = _local_name(child.tag), _xml_element(child)
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list):
            out[key].append(value)
        else:
            out[key] = [out[key], value]  # repeated elements become an array: item.0, item.1, item.#
    return out


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_body(body: bytes) -> Any:
    """Elements as nested objects, from the root element down; text of leaves; attributes ignored."""
    # ElementTree resolves no external entities, and the bundled expat limits entity expansion.
    root = ElementTree.fromstring(body)
    return {_local_name(root.tag): _xml_element(root)}


_BODY_PARSERS: dict[str, Callable[[bytes], Any]] = {"json": _json_body, "yaml": _yaml_body, "xml": _xml_body}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:40] + "...'"


# ---------------------------------------------------------------------------------------------------------
# aggregateFromKubeServiceEndpoints (KEDA's getEndpointsUrlsFromServiceURL and aggregateMetricsFromMultipleEndpoints)

#: KEDA queries at most 5 endpoints at a time.
MAX_CONCURRENT_ENDPOINTS = 5
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service_of(url: str) -> tuple[str, str]:
    """(service, namespace): the first two labels of the url's host, as KEDA reads them."""
    parts = (URL(url).raw_host or "").split(".")
    return parts[0], parts[1]


def endpoint_urls(url: URL, slices: list[dict[str, Any]], service: str) -> list[URL]:
    """One URL per ready endpoint address of `service`'s EndpointSlices, as KEDA builds them.

    An endpoint counts unless its `conditions.ready` is false (unset counts as ready); an address seen in an
    earlier slice is skipped. The port is the url's (else 80/443 by scheme) if the slice lists that port number,
    else none (the scheme's default). The path is the url's; its query string is not kept (nor in KEDA).
    """
    port = url.explicit_port or (443 if url.scheme == "https" else 80)
    seen: set[str] = set()
    out: list[URL] = []
    for endpoint_slice in slices:
        labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
        if labels.get(SERVICE_NAME_LABEL) != service:  # the API server filters by label; be sure
            continue
        slice_ports = [p.get("port") for p in endpoint_slice.get("ports") or () if isinstance(p, dict)]
        found = port if port in slice_ports else None
        for endpoint in endpoint_slice.get("endpoints") or ():
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or ():
                if address in seen:
                    continue
                seen.add(address)
                out.append(URL.build(scheme=url.scheme, host=address, port=found, path=url.path))
    return out


def aggregate(values: list[float], kind: AggregationType) -> float:
    if kind == "sum":
        return sum(values)
    if kind == "max":
        return max(values)
    if kind == "min":
        return min(values)
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------------------
# Metadata


class MetricsApiMetadata(ScalerMetadata):
    url: str = param(name="url", description="`http://` or `https://`")
    format: Format = param("json", name="format", description="`json`, `xml`, `yaml`, `prometheus`")
    value_location: str = param(
        name="valueLocation",
        description=(
            "GJSON path, as KEDA's GJSON reads it: keys, wildcards, `#`, queries (nested "
            "too), modifiers (`@reverse`), pipes, multipaths, literals, JSON lines (`..`). "
            "With `prometheus`: a metric selector"
        ),
    )
    target_value: float | None = param(
        None,
        name="targetValue",
        gt=0,
        allow_inf_nan=False,
        validate_default=True,
        description="> 0. Optional when the trigger only feeds `scalingModifiers`",
    )
    activation_target_value: float = param(0.0, name="activationTargetValue", allow_inf_nan=False)
    unsafe_ssl: bool = param(False, name="unsafeSsl", description="skip certificate verification")
    timeout: float | None = param(
        None, name="timeout", shown_default="global (3 s)", description="ms, or a Go duration (`500ms`, `2s`)"
    )
    aggregate_from_kube_service_endpoints: bool = param(
        False,
        name="aggregateFromKubeServiceEndpoints",
        description="query every ready endpoint of the Service `url` names, then aggregate (operator only)",
    )
    aggregation_type: AggregationType = param(
        "average", name="aggregationType", description="`average`, `sum`, `max` or `min` over the endpoints"
    )
    auth_modes: tuple[AuthMode, ...] = param(
        (), name="authModes", sources=_AUTH, description="comma list: `apiKey`, `basic`, `bearer`, `tls`"
    )
    auth_mode: tuple[AuthMode, ...] = param(
        (), name="authMode", sources=_AUTH, description="comma list: `apiKey`, `basic`, `bearer`, `tls`"
    )
    api_key: str | None = param(
        None,
        name="apiKey",
        sources=("authParams",),
        secret=True,
        description=(
            "Sent in header `keyParamName` (default `X-API-KEY`), or with `method: query` in "
            "the query (default `api_key`)"
        ),
    )
    method: Literal["header", "query"] = param("header", name="method", sources=_AUTH)
    key_param_name: str | None = param(None, name="keyParamName", sources=_AUTH)
    username: str | None = param(None, name="username", sources=("authParams",), description="`basic`")
    password: str | None = param(None, name="password", sources=("authParams",), secret=True, description="`basic`")
    token: str | None = param(None, name="token", sources=("authParams",), secret=True, description="`bearer`")
    bearer_token: str | None = param(
        None, name="bearerToken", sources=("authParams",), secret=True, description="`bearer`"
    )
    cert: str | None = param(None, name="cert", sources=("authParams",), description="`tls`: PEM text")
    key: str | None = param(None, name="key", sources=("authParams",), secret=True, description="`tls`: PEM text")
    ca: str | None = param(None, name="ca", sources=("authParams",), description="`tls`: PEM text")

    _target = field_validator("target_value")(require_target_unless_metric_source)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = URL(value)
        except ValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise PydanticCustomError("url", "url must be an http:// or https:// URL with a host")
        return value

    @field_validator("value_location")
    @classmethod
    def _location(cls, value: str, info: ValidationInfo) -> str:
        try:
            if info.data.get("format") == "prometheus":
                parse_selector(value)
            else:
                gjson.check_path(value)
        except ValueError as exc:
            raise PydanticCustomError("valueLocation", "{err}", {"err": str(exc)}) from None
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise PydanticCustomError(
                "duration", "timeout must be milliseconds or a duration such as 500ms, 2s or 1m"
            ) from None
        return seconds or None  # 0 means "the default", as in KEDA

    @field_validator("aggregate_from_kube_service_endpoints")
    @classmethod
    def _service_host(cls, value: bool, info: ValidationInfo) -> bool:
        # KEDA finds this out at each poll ("invalid hostname ... expected at least 2 elements"); ebb at load.
        url = info.data.get("url")
        if value and isinstance(url, str) and len((URL(url).raw_host or "").split(".")) < 2:
            raise PydanticCustomError(
                "url",
                "with aggregateFromKubeServiceEndpoints, the url host must be <service>.<namespace>[.svc...], "
                "got {host!r}",
                {"host": URL(url).raw_host},
            )
        return value

    @field_validator("auth_modes", "auth_mode", mode="before")
    @classmethod
    def _mode_list(cls, value: Any) -> Any:
        # KEDA's list parameters are comma-separated: "apiKey,tls".
        if isinstance(value, str):
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @property
    def modes(self) -> tuple[str, ...]:
        return self.auth_modes or self.auth_mode


# ---------------------------------------------------------------------------------------------------------
# The scaler


class MetricsApiScaler(Scaler):
    type_name = "metrics-api"
    Metadata = MetricsApiMetadata

    def __init__(self, ctx: TriggerContext, meta: Any) -> None:
        super().__init__(ctx, meta)
        self.meta: MetricsApiMetadata = meta
        self._check_auth()
        self.url = URL(meta.url)
        self.headers: dict[str, str] = {}
        modes = meta.modes
        if "apiKey" in modes and meta.api_key:
            if meta.method == "query":
                self.url = self.url.update_query({meta.key_param_name or "api_key": meta.api_key})
            else:
                self.headers[meta.key_param_name or "X-API-KEY"] = meta.api_key
        if "basic" in modes:
            pair = f"{meta.username or ''}:{meta.password or ''}".encode()
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if "bearer" in modes:
            self.headers["Authorization"] = f"Bearer {meta.bearer_token or meta.token}"
        # Secrets may reach a message URL-encoded (an api key in the query string): mask those forms too.
        self.secrets = self.secrets | {f(s) for s in self.secrets for f in (quote, quote_plus) if f(s) != s}
        self.selector: _Selector | None = None
        if meta.format == "prometheus":
            self.selector = parse_selector(meta.value_location)
        self._session: aiohttp.ClientSession | None = None
        self._ssl_setting: ssl.SSLContext | bool = True
        self._proxy_url: URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None
        self._endpoint_count = 1
        if meta.aggregate_from_kube_service_endpoints and ctx.endpoint_slices is None:
            raise SpecError(
                ctx.object_ref,
                f"spec.triggers[{ctx.trigger_index}].metadata.aggregateFromKubeServiceEndpoints",
                "needs the Kubernetes API to find the Service's endpoints (ebb operator); when running locally, "
                "point url at one endpoint, or give each endpoint a metrics-api trigger with a name and combine "
                "them with scalingModifiers.formula (e.g. a + b for sum, (a + b) / 2 for average)",
            )

    def _check_auth(self) -> None:
        meta, where = self.meta, f"spec.triggers[{self.ctx.trigger_index}].metadata"
        key = "authModes" if meta.auth_modes else "authMode"

        def fail(message: str) -> SpecError:
            return SpecError(self.ctx.object_ref, f"{where}.{key}", message)

        modes = meta.modes
        for mode in modes:
            if mode not in _SUPPORTED_AUTH:
                raise fail(f"authMode {mode} is not supported by metrics-api; use {', '.join(_SUPPORTED_AUTH)}")
        if sum(m in ("basic", "bearer") for m in modes) > 1:
            raise fail("basic and bearer cannot be combined")
        need = {
            "apiKey": (meta.api_key, "apiKey"),
            "basic": (meta.username, "username"),
            "bearer": (meta.bearer_token or meta.token, "token"),
        }
        for mode, (value, param_name) in need.items():
            if mode in modes and not value:
                raise fail(f"authMode {mode} needs {param_name} from a TriggerAuthentication")
        if "tls" in modes and not (meta.cert and meta.key):
            raise fail("authMode tls needs cert and key from a TriggerAuthentication")

    @property
    def request_timeout(self) -> float:
        return self.meta.timeout or self.ctx.timeout

    @property
    def timeout(self) -> float:
        if not self.meta.aggregate_from_kube_service_endpoints:
            return self.request_timeout
        # Each endpoint's GET has its own timeout (a slow one is left out, as in KEDA), MAX_CONCURRENT at a time:
        # the whole read is bounded by the listing plus the batches the last listing needed.
        batches = -(-self._endpoint_count // MAX_CONCURRENT_ENDPOINTS)
        return self.request_timeout * (1 + max(1, batches))

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"metric-api-{self.meta.value_location}"),
            target=self.meta.target_value or 0.0,
            metric_type=self.ctx.metric_type,
        )

    def _ssl(self) -> ssl.SSLContext | bool:
        meta = self.meta
        if "tls" not in meta.modes:
            return not meta.unsafe_ssl  # False: no verification, True: the default
        context = ssl.create_default_context(cadata=meta.ca or None)
        if meta.unsafe_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        # ssl loads a client certificate only from files: write both to a private directory, then remove it.
        with tempfile.TemporaryDirectory(prefix="ebb-tls-") as tmp:
            cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            for path, pem in ((cert_file, meta.cert), (key_file, meta.key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(pem or "")
            try:
                context.load_cert_chain(cert_file, key_file)
            except ssl.SSLError:
                raise self.error("authMode tls: cert and key are not a valid PEM certificate and key pair") from None
        return context

    def _proxy(self, url: URL | None = None) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy from HTTP(S)_PROXY / NO_PROXY, never for loopback: Go's ProxyFromEnvironment, as KEDA."""
        url = url or self.url
        host = url.host or ""
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return None, None
        except ValueError:
            pass
        try:
            return get_env_proxy_for_url(url)
        except LookupError:
            return None, None

    def _connection_settings(self) -> None:
        # Looked up once per session, not per request as aiohttp's trust_env would (a thread hop each time).
        self._ssl_setting = self._ssl()
        self._proxy_url, self._proxy_auth = self._proxy()

    async def _session_for_poll(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            await asyncio.to_thread(self._connection_settings)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl_setting),
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            )
        return self._session

    async def fetch(self, url: URL | None = None) -> bytes:
        """The body of one GET of `url` (default: the trigger's); a ScalerError for anything but HTTP 200."""
        session = await self._session_for_poll()
        proxy, proxy_auth = (self._proxy_url, self._proxy_auth) if url is None else self._proxy(url)
        url = url or self.url
        where = url.with_query(None).with_fragment(None)
        try:
            async with session.get(url, headers=self.headers, proxy=proxy, proxy_auth=proxy_auth) as response:
                if response.status != 200:
                    raise self.error(f"GET {where} answered HTTP {response.status} {response.reason or ''}".rstrip())
                return await response.read()
        except aiohttp.ClientError as exc:
            raise self.error(f"GET {where} failed: {type(exc).__name__}: {exc}") from None

    def value_from(self, body: bytes) -> float:
        """The number at valueLocation in `body` (KEDA's GetValueFromResponse)."""
        location = self.meta.value_location
        if self.selector is not None:
            return self._prometheus_value(body)
        try:
            if self.meta.format == "json" and location.startswith(".."):
                data: Any = gjson.parse_json_lines(body.decode("utf-8"))  # GJSON's `..`: one value per line
            else:
                data = _BODY_PARSERS[self.meta.format](body)
        except (ValueError, yaml.YAMLError, ElementTree.ParseError) as exc:
            raise self.error(f"the response is not valid {self.meta.format}: {exc}") from None
        found = gjson.get(data, location)
        if not gjson.exists(found):
            raise self.error(f"valueLocation {location!r} matches nothing in the response")
        if isinstance(found, int | float) and not isinstance(found, bool):
            return float(found)
        if isinstance(found, str):
            try:
                return parse_quantity(found)
            except ValueError:
                pass
        raise self.error(f"valueLocation {location!r} is not a number (found {_describe(found)})")

    def _prometheus_value(self, body: bytes) -> float:
        assert self.selector is not None
        # As KEDA: tolerate CRLF line ends; the whole body must parse before a value is picked.
        text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
        try:
            samples = list(prometheus_text.parse(text))
        except ValueError as exc:
            raise self.error(f"the response is not in the Prometheus text format: {exc}") from None
        for sample in samples:
            if (
                sample.name == self.selector.name
                and sample.family_type in prometheus_text.VALUE_TYPES
                and self.selector.matches(sample.labels)
            ):
                return sample.value
        raise self.error(f"valueLocation {self.meta.value_location!r} matches no series in the response")

    async def read(self) -> ScalerReading:
        if self.meta.aggregate_from_kube_service_endpoints:
            value = await self._aggregated_value()
        else:
            value = self.value_from(await self.fetch())
        return ScalerReading(value=value, active=activity(value, self.meta.activation_target_value))

    async def _aggregated_value(self) -> float:
        """KEDA's aggregateMetricsFromMultipleEndpoints: GET every ready endpoint of the Service the url names (at
        most MAX_CONCURRENT_ENDPOINTS at a time), aggregate the values that came back; error only if none did."""
        assert self.ctx.endpoint_slices is not None
        service, namespace = service_of(self.meta.url)
        try:
            slices = await self.ctx.endpoint_slices(namespace, service)
        except ScalerError:
            raise
        except Exception as exc:
            raise self.error(f"cannot list the EndpointSlices of Service {namespace}/{service}: {exc}") from None
        urls = endpoint_urls(URL(self.meta.url), slices, service)
        if not urls:
            raise self.error(f"Service {namespace}/{service} has no ready endpoints (EndpointSlices)")
        if self.meta.method == "query" and "apiKey" in self.meta.modes and self.meta.api_key:
            urls = [u.update_query({self.meta.key_param_name or "api_key": self.meta.api_key}) for u in urls]
        self._endpoint_count = len(urls)
        limit = asyncio.Semaphore(MAX_CONCURRENT_ENDPOINTS)

        async def one(url: URL) -> float:
            async with limit, asyncio.timeout(self.request_timeout):
                return self.value_from(await self.fetch(url))

        results = await asyncio.gather(*(one(url) for url in urls), return_exceptions=True)
        values = [r for r in results if isinstance(r, float)]
        if not values:
            first = next(r for r in results if isinstance(r, BaseException))
            if isinstance(first, asyncio.CancelledError):
                raise first
            detail = first.message if isinstance(first, ScalerError) else (str(first) or type(first).__name__)
            raise self.error(
                f"could not get any metric from the {len(urls)} endpoints of Service {namespace}/{service} "
                f"(first error: {detail})"
            )
        return aggregate(values, self.meta.aggregation_type)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
