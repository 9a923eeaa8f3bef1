"""The `external.metrics.k8s.io/v1beta1` API, served over HTTPS to the kube-apiserver aggregator.

The HPA controller asks `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}?labelSelector=
scaledobject.keda.sh/name=<so>` and sums the items' values. The shapes follow what
kubernetes-sigs/custom-metrics-apiserver (KEDA's adapter library) returns. Request handling lives in plain
functions returning `ApiResponse`, so it can be called (and benchmarked) without a socket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import re
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from ebb.errors import ScalerError
from ebb.kube.authn import (
    ALWAYS_ALLOW_PATHS,
    AuthorizationError,
    DelegatedAuthenticator,
    DelegatedAuthorizer,
    Unauthenticated,
    forbidden,
    request_attributes,
)
from ebb.kube.metrics_provider import ExternalMetricValue, MetricNotFound, MetricsProvider
from ebb.web.server import AppServer

log = logging.getLogger(__name__)

GROUP: Final = "external.metrics.k8s.io"
VERSION: Final = "v1beta1"
GROUP_VERSION: Final = f"{GROUP}/{VERSION}"
#: The label KEDA's adapter requires in the selector: it names the ScaledObject.
SCALED_OBJECT_LABEL: Final = "scaledobject.keda.sh/name"
#: custom-metrics-apiserver's default resource: discovery must never be empty (client-go >= 0.26 warns
#: "Got empty response for: external.metrics.k8s.io/v1beta1" on every kubectl call otherwise).
PLACEHOLDER_RESOURCE: Final = "externalmetrics"

JSON_CONTENT_TYPE: Final = "application/json"


# --- quantities ---------------------------------------------------------------------------------------

_DECIMAL_SUFFIXES = {-3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


def format_quantity(value: float) -> str:
    """`value` as KEDA writes a metric: parsed from "%.3f" into a Kubernetes DecimalSI quantity, printed in
    canonical form ("17", "1500m", "17k"). NaN, infinities and negatives become "0", as in KEDA."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        return "0"
    number = Decimal(f"{value:.3f}")
    if number == 0:
        return "0"
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # Canonical quantities use an exponent that is a multiple of 3, keeping the mantissa an integer.
    extra = exponent % 3
    mantissa *= 10**extra
    exponent -= extra
    suffix = _DECIMAL_SUFFIXES.get(exponent)
    text = f"{mantissa}{suffix}" if suffix is not None else f"{mantissa}e{exponent}"
    return f"-{text}" if sign else text


def rfc3339(timestamp: float) -> str:
    """A Unix time as metav1.Time serialises it: UTC, whole seconds, trailing Z."""
    moment = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- label selectors ----------------------------------------------------------------------------------


class SelectorError(ValueError):
    """A label selector does not parse."""


_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_REQUIREMENT_RE = re.compile(
    r"""^\s*(?:
        (?P<not>!)\s*(?P<nkey>[^\s!=<>(),]+)
      | (?P<key>[^\s!=<>(),]+)\s*(?:
            (?P<op>==|!=|=|<|>)\s*(?P<value>[^\s!=<>(),]*)
          | \s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)
        )?
    )\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Requirement:
    """One requirement of a label selector: operator is one of = != in notin exists !exists < >."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        try:
            number, bound = int(value), int(self.values[0])
        except ValueError:
            return False
        return present and (number < bound if self.operator == "<" else number > bound)


@dataclass(frozen=True)
class LabelSelector:
    """A parsed Kubernetes label selector (equality- and set-based requirements, all ANDed)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def equalities(self) -> dict[str, str]:
        """The labels the selector pins to one value (`a=b`, `a==b`, `a in (b)`): what a provider can look up."""
        pinned: dict[str, str] = {}
        for requirement in self.requirements:
            if requirement.operator in ("=", "in") and len(set(requirement.values)) == 1:
                pinned[requirement.key] = requirement.values[0]
        return pinned

    def __str__(self) -> str:
        parts = []
        for req in self.requirements:
            if req.operator == "exists":
                parts.append(req.key)
            elif req.operator == "!exists":
                parts.append(f"!{req.key}")
            elif req.operator in ("in", "notin"):
                parts.append(f"{req.key} {req.operator} ({','.join(req.values)})")
            else:
                parts.append(f"{req.key}{req.operator}{req.values[0]}")
        return ",".join(parts)


def _split_requirements(text: str) -> list[str]:
    # Commas separate requirements except inside the parentheses of a set.
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced ')'")
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth:
        raise SelectorError("unbalanced '('")
    parts.append(text[start:])
    return parts


def _check_key(key: str) -> str:
    if len(key.rpartition("/")[0]) > 253 or not _KEY_RE.match(key):
        raise SelectorError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if not _VALUE_RE.match(value):
        raise SelectorError(f"invalid label value {value!r}")
    return value


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a selector as `labels.Parse` in apimachinery does; an empty selector matches everything."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for part in _split_requirements(text):
        match = _REQUIREMENT_RE.match(part)
        if not match or not part.strip():
            raise SelectorError(f"cannot parse requirement {part.strip()!r}")
        if match["not"]:
            requirements.append(Requirement(_check_key(match["nkey"]), "!exists"))
        elif match["setop"]:
            values = tuple(_check_value(v.strip()) for v in match["values"].split(","))
            requirements.append(Requirement(_check_key(match["key"]), match["setop"], values))
        elif match["op"]:
            op = "=" if match["op"] == "==" else match["op"]
            value = _check_value(match["value"])
            if op in ("<", ">") and not re.fullmatch(r"-?[0-9]+", value):
                raise SelectorError(f"{op} needs an integer value, got {value!r}")
            requirements.append(Requirement(_check_key(match["key"]), op, (value,)))
        else:
            requirements.append(Requirement(_check_key(match["key"]), "exists"))
    return LabelSelector(tuple(requirements))


# --- responses ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status failure, the body every Kubernetes API error has."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "InternalError"),
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def error(code: int, message: str, details: Mapping[str, Any] | None = None) -> ApiResponse:
    return ApiResponse(code, status_body(code, message, details))


def _group_version_for_discovery() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_group() -> dict[str, Any]:
    """`GET /apis/external.metrics.k8s.io`: the APIGroup."""
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [_group_version_for_discovery()],
        "preferredVersion": _group_version_for_discovery(),
    }


def api_group_list() -> dict[str, Any]:
    """`GET /apis`: the one group this server serves."""
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list(metric_names: Iterable[str]) -> dict[str, Any]:
    """`GET /apis/external.metrics.k8s.io/v1beta1`: one namespaced resource per metric name, as
    custom-metrics-apiserver lists them, or its placeholder resource when no metric is served yet."""
    names = sorted(set(metric_names)) or [PLACEHOLDER_RESOURCE]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
            for name in names
        ],
    }


def discovery(provider: MetricsProvider) -> ApiResponse:
    return ApiResponse(200, api_resource_list(d.metric_name for d in provider.list_metrics()))


def external_metric_value_list(values: Sequence[ExternalMetricValue]) -> dict[str, Any]:
    """The ExternalMetricValueList the HPA controller decodes."""
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "metricName": value.metric_name,
                "metricLabels": dict(value.metric_labels),
                "timestamp": rfc3339(value.timestamp),
                "value": format_quantity(value.value),
            }
            for value in values
        ],
    }


async def get_external_metric(
    provider: MetricsProvider, namespace: str, metric_name: str, label_selector: str | None
) -> ApiResponse:
    """Answer one HPA request. 400 when the selector does not parse or names no ScaledObject, 404 for an
    unknown metric, 500 with the scaler's (secret-free) message when the source fails."""
    details = {"name": metric_name, "group": GROUP, "kind": metric_name}
    try:
        selector = parse_label_selector(label_selector)
    except SelectorError as problem:
        return error(400, f"invalid labelSelector: {problem}", details)
    pinned = selector.equalities()
    if not pinned.get(SCALED_OBJECT_LABEL):
        return error(
            400,
            f"labelSelector must name the ScaledObject: {SCALED_OBJECT_LABEL}=<name> "
            f"(got {str(selector) or 'an empty selector'!r})",
            details,
        )
    scaled_object = pinned[SCALED_OBJECT_LABEL]
    try:
        values = await provider.get_metric(namespace, metric_name, pinned)
    except MetricNotFound:
        return error(
            404,
            f'external metric "{metric_name}" is not served for ScaledObject {namespace}/{scaled_object}',
            details,
        )
    except ScalerError as problem:
        # ScalerError messages are redacted where they are raised; the cause chain may not be, so only
        # the message itself leaves the process.
        return error(500, f"unable to get external metric {namespace}/{metric_name}: {problem}", details)
    except asyncio.CancelledError:
        raise
    except Exception as problem:
        # An unexpected exception's text may carry anything (connection strings...): name its type only.
        log.error(
            "metrics API: reading %s/%s for ScaledObject %s failed: %s",
            namespace,
            metric_name,
            scaled_object,
            type(problem).__name__,
        )
        return error(
            500,
            f"unable to get external metric {namespace}/{metric_name}: internal error "
            f"({type(problem).__name__}); see the ebb operator's log",
            details,
        )
    return ApiResponse(200, external_metric_value_list(values))


# OpenAPI: the aggregator downloads these from every APIService; 404 is tolerated, but serving small valid
# documents keeps its log quiet and `kubectl explain` honest about the group having no schema'd kinds.
def openapi_v2() -> dict[str, Any]:
    return {"swagger": "2.0", "info": {"title": "ebb external metrics", "version": VERSION}, "paths": {}}


def openapi_v3_index() -> dict[str, Any]:
    path = f"apis/{GROUP}/{VERSION}"
    return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}"}}}


def openapi_v3_group() -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "ebb external metrics", "version": VERSION},
        "paths": {},
        "components": {},
    }


# --- the server ---------------------------------------------------------------------------------------


def _json(response: ApiResponse) -> web.Response:
    return web.Response(
        status=response.status,
        body=json.dumps(response.body, separators=(",", ":")).encode(),
        content_type=JSON_CONTENT_TYPE,
    )


def auth_middleware(authenticator: DelegatedAuthenticator, authorizer: DelegatedAuthorizer | None) -> Middleware:
    """Authentication, then authorization, in front of every path but the health checks: what the generic
    apiserver's WithAuthentication and WithAuthorization filters do. 401 and 403 carry a Status; an authorizer
    that cannot be asked gives 500, as the apiserver answers."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if request.path in ALWAYS_ALLOW_PATHS:
            response: web.StreamResponse = await handler(request)
            return response
        try:
            user = await authenticator.authenticate(request)
        except Unauthenticated as refusal:
            log.debug("metrics API: %s %s: 401 (%s)", request.method, request.path, refusal)
            return _json(error(401, "Unauthorized"))
        if authorizer is not None:
            attributes = request_attributes(request.method, request.path, request.query)
            try:
                decision = await authorizer.authorize(user, attributes)
            except AuthorizationError as problem:
                return _json(error(500, f"Internal Server Error: {request.path}: {problem}"))
            if not decision.allowed:
                message, details = forbidden(user, attributes, decision.reason)
                log.debug("metrics API: %s %s: 403 for %s (%s)", request.method, request.path, user.name, user.method)
                return _json(error(403, message, details))
        response = await handler(request)
        return response

    return authenticate


def make_app(
    provider: MetricsProvider,
    ready: Callable[[], bool] | None = None,
    *,
    authenticator: DelegatedAuthenticator | None = None,
    authorizer: DelegatedAuthorizer | None = None,
) -> web.Application:
    """The aiohttp application serving the API for `provider` (no TLS: that belongs to the site).

    With `authenticator` (and `authorizer`), requests are authenticated (and authorized) as an aggregated API
    server does; without, every request is served.
    """
    if authorizer is not None and authenticator is None:
        raise ValueError("an authorizer needs an authenticator: it authorizes the user that one finds")

    async def apis(_: web.Request) -> web.Response:
        return _json(ApiResponse(200, api_group_list()))

    async def group(_: web.Request) -> web.Response:
        return _json(ApiResponse(200, api_group()))

    async def resources(_: web.Request) -> web.Response:
        return _json(discovery(provider))

    async def metric(request: web.Request) -> web.Response:
        response = await get_external_metric(
            provider,
            request.match_info["namespace"],
            request.match_info["metric"],
            request.query.get("labelSelector"),
        )
        return _json(response)

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready is not None and not ready():
            return web.Response(status=503, text="not ready")
        return web.Response(text="ok")

    def document(builder: Callable[[], dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return _json(ApiResponse(200, builder()))

        return handler

    @web.middleware
    async def statuses(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        # Unknown paths and methods answer with a Status object, as any Kubernetes API does.
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPNotFound:
            return _json(error(404, f"the server could not find the requested resource ({request.path})"))
        except web.HTTPMethodNotAllowed:
            return _json(error(405, f"{request.method} is not supported on {request.path}"))

    middlewares: list[Middleware] = [statuses]
    if authenticator is not None:
        middlewares.append(auth_middleware(authenticator, authorizer))
    app = web.Application(middlewares=middlewares)
    base = f"/apis/{GROUP}/{VERSION}"
    app.router.add_get("/apis", apis)
    app.router.add_get(f"/apis/{GROUP}", group)
    app.router.add_get(base, resources)
    app.router.add_get(f"{base}/namespaces/{{namespace}}/{{metric}}", metric)
    app.router.add_get("/healthz", healthy)
    app.router.add_get("/livez", healthy)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi/v2", document(openapi_v2))
    app.router.add_get("/openapi/v3", document(openapi_v3_index))
    app.router.add_get(f"/openapi/v3/apis/{GROUP}/{VERSION}", document(openapi_v3_group))
    return app


class MetricsAPIServer(AppServer):
    """Serves `external.metrics.k8s.io/v1beta1` for `provider` on host:port (port 0 picks a free port).

    With an `authenticator`, the server's SSL context asks clients for certificates signed by its CAs, and the
    authenticator re-reads its configuration while the server runs.
    """

    label = "external metrics API"

    def __init__(
        self,
        provider: MetricsProvider,
        host: str = "0.0.0.0",
        port: int = 6443,
        ssl_context: ssl.SSLContext | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        authenticator: DelegatedAuthenticator | None = None,
        authorizer: DelegatedAuthorizer | None = None,
    ) -> None:
        super().__init__(host, port, ssl_context)
        self.provider = provider
        self.authenticator = authenticator
        self.authorizer = authorizer
        self._ready = ready

    def make_app(self) -> web.Application:
        if self.authenticator is not None and self.ssl_context is not None:
            self.authenticator.attach(self.ssl_context)
        return make_app(self.provider, self._ready, authenticator=self.authenticator, authorizer=self.authorizer)

    async def started(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.start()

    async def stopping(self) -> None:
        if self.authenticator is not None:
            await self.authenticator.stop()
