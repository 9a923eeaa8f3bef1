"""RabbitMQ trigger: a queue's length or its message rates, as KEDA's `rabbitmq` scaler reads them.

Two ways to read, picked by `protocol` (`auto` follows the scheme of `host`):

- AMQP (`amqp://`, `amqps://`): a passive `queue.declare` on one connection and channel kept per scaler.
  The broker answers with the number of messages *ready* for delivery (unacknowledged ones are not
  counted). Only `mode: QueueLength`.
- HTTP (`http://`, `https://`): the management plugin's `/api/queues/{vhost}/{queue}`. QueueLength is
  `messages` (ready + unacknowledged), or `messages_ready` with `excludeUnacknowledged`; the rate modes
  use `message_stats.publish_details.rate` and `deliver_get_details.rate`. The management plugin
  refreshes these figures every `collect_statistics_interval` (5 s by default), so they lag that much.
  `useRegex` matches `queueName` as a regular expression over the vhost's queues and combines them with
  `operation` (sum, max, avg; avg of counts is an integer division, as KEDA's).

OAuth2 (`oauthTokenURI`, `clientID`, `clientSecret`, `scopes`, `endpointParams` from a TriggerAuthentication)
works as in KEDA: HTTP only, never with username/password, a client-credentials token fetched, cached until
it expires and sent as a bearer token to the management API.

Not supported (refused with a clear error rather than ignored): client TLS certificates (`tls: enable`
with `ca`/`cert`/`key`) and Azure workload identity. `amqps://` and `https://` with the system's CA store
work, and `unsafeSsl` turns verification off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn, cast
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import aiohttp
import aiormq
import aiormq.abc
from pydantic import field_validator
from yarl import URL

from ebb.errors import MASK, ScalerError, SpecError, redact
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    metric_name,
    param,
)
from ebb.units import parse_duration

Mode = Literal[
    "QueueLength",
    "MessageRate",
    "DeliverGetRate",
    "PublishedToDeliveredRatio",
    "ExpectedQueueConsumptionTime",
]
_HTTP_ONLY_MODES = {
    "MessageRate",
    "DeliverGetRate",
    "PublishedToDeliveredRatio",
    "ExpectedQueueConsumptionTime",
}
#: KEDA's default target when neither `mode`/`value` nor the deprecated `queueLength` is given.
DEFAULT_QUEUE_LENGTH = 20.0

# KEDA's anonymisation of `user:password@` in error text, kept as a second line of defence after redaction.
_USERINFO = re.compile(r"([^ /:]+):([^/:]+)@")
_CLOSE_TIMEOUT = 1.0


def basic_auth(username: str, password: str) -> str:
    """An HTTP Basic Authorization header value (aiohttp's helpers for it differ across versions)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def mask_userinfo(url: str) -> str:
    """`url` with the password of its `user:password@` part replaced by a mask."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


class RabbitMQMetadata(ScalerMetadata):
    host: str = param(
        name="host",
        sources=("triggerMetadata", "authParams", "resolvedEnv"),
        min_length=1,
        description="URL. Credentials in it are masked in output",
    )
    queue_name: str = param(name="queueName", min_length=1, description="a regular expression with `useRegex` (HTTP)")
    mode: Mode | None = param(
        None,
        name="mode",
        shown_default="`QueueLength`",
        description=(
            "`QueueLength`, `MessageRate`, `DeliverGetRate`, `PublishedToDeliveredRatio`, "
            "`ExpectedQueueConsumptionTime` (the last four need HTTP)"
        ),
    )
    value: float | None = param(
        None, name="value", shown_default="`20` (with no `mode`)", description="the target. Required with `mode`"
    )
    activation_value: float = param(0.0, name="activationValue")
    queue_length: float | None = param(
        None, name="queueLength", description="deprecated spelling of `mode: QueueLength` + `value`"
    )
    protocol: Literal["auto", "amqp", "http"] = param(
        "auto",
        name="protocol",
        sources=("triggerMetadata", "authParams"),
        description="`auto`, `amqp`, `http`. Must match the scheme",
    )
    vhost_name: str | None = param(
        None, name="vhostName", sources=("triggerMetadata", "authParams"), shown_default="from `host`"
    )
    use_regex: bool = param(
        False, name="useRegex", description="`operation`: `sum`, `avg`, `max` over the matched queues"
    )
    exclude_unacknowledged: bool = param(False, name="excludeUnacknowledged", description="HTTP only")
    page_size: int = param(
        100, name="pageSize", ge=1, description="`operation`: `sum`, `avg`, `max` over the matched queues"
    )
    operation: Literal["sum", "avg", "max"] = param(
        "sum", name="operation", description="`operation`: `sum`, `avg`, `max` over the matched queues"
    )
    timeout: float | None = param(
        None, name="timeout", shown_default="global (3 s)", description="`500ms`, `5s`, or ms"
    )
    unsafe_ssl: bool = param(False, name="unsafeSsl")
    username: str | None = param(
        None, name="username", sources=("authParams", "resolvedEnv"), description="given together with `password`"
    )
    password: str | None = param(None, name="password", sources=("authParams", "resolvedEnv"), secret=True)
    tls: Literal["enable", "disable"] = param("disable", name="tls", sources=("authParams",))
    oauth_token_uri: str | None = param(
        None,
        name="oauthTokenURI",
        sources=("authParams",),
        description=("OAuth2 client credentials: all three or none, HTTP only, not with `username`/`password`"),
    )
    client_id: str | None = param(
        None,
        name="clientID",
        sources=("authParams",),
        description=("OAuth2 client credentials: all three or none, HTTP only, not with `username`/`password`"),
    )
    client_secret: str | None = param(
        None,
        name="clientSecret",
        sources=("authParams",),
        secret=True,
        description=("OAuth2 client credentials: all three or none, HTTP only, not with `username`/`password`"),
    )
    scopes: tuple[str, ...] = param(
        (),
        name="scopes",
        also=("scope",),
        sources=("authParams",),
        description=("OAuth2: a comma list of scopes; extra token-request fields as a query string (`audience=x`)"),
    )
    endpoint_params: tuple[tuple[str, str], ...] = param(
        (),
        name="endpointParams",
        sources=("authParams",),
        description=("OAuth2: a comma list of scopes; extra token-request fields as a query string (`audience=x`)"),
    )
    workload_identity_resource: str | None = param(None, name="workloadIdentityResource", sources=("authParams",))

    @field_validator("scopes", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # KEDA's list parameters: comma-separated, each entry trimmed.
        return tuple(p.strip() for p in value.split(",")) if isinstance(value, str) else value

    @field_validator("endpoint_params", mode="before")
    @classmethod
    def _query(cls, value: Any) -> Any:
        # KEDA reads endpointParams as a URL query string (url.ParseQuery): "audience=x&resource=y".
        if not isinstance(value, str):
            return value
        try:
            return tuple(parse_qsl(value, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            raise ValueError("expected a URL query string such as audience=api&resource=x") from None

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class QueueStatus:
    messages: int
    publish_rate: float
    deliver_get_rate: float


class RabbitMQScaler(Scaler):
    type_name: ClassVar[str] = "rabbitmq"
    Metadata: ClassVar[type[ScalerMetadata]] = RabbitMQMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.m = cast(RabbitMQMetadata, meta)
        m = self.m
        if m.tls == "enable":
            self._bad(
                "tls",
                "client certificates (tls: enable with ca/cert/key) are not supported by ebb yet; "
                "for server TLS use an amqps:// or https:// host",
            )
        if bool(m.username) != bool(m.password):
            self._bad("username" if not m.username else "password", "username and password must be given together")
        scheme = urlsplit(m.host).scheme.lower()
        by_scheme = {"amqp": "amqp", "amqps": "amqp", "http": "http", "https": "http"}.get(scheme)
        if by_scheme is None:
            self._bad("host", f"unknown URL scheme {scheme!r}: expected amqp://, amqps://, http:// or https://")
        if m.protocol != "auto" and m.protocol != by_scheme:
            self._bad("protocol", f"protocol {m.protocol} does not match the {scheme}:// host")
        self.protocol: Literal["amqp", "http"] = "amqp" if by_scheme == "amqp" else "http"
        if m.use_regex and self.protocol != "http":
            self._bad("useRegex", "useRegex needs the HTTP protocol (the management API)")
        if m.exclude_unacknowledged and self.protocol != "http":
            self._bad("excludeUnacknowledged", "excludeUnacknowledged needs the HTTP protocol (the management API)")
        self.mode, self.target = self._mode_and_target()
        if self.mode in _HTTP_ONLY_MODES and self.protocol != "http":
            self._bad("mode", f"mode {self.mode} needs the HTTP protocol (the management API), not AMQP")
        if m.timeout is not None and self.protocol == "amqp":
            self._bad("timeout", "the AMQP protocol does not take a custom timeout")
        if m.workload_identity_resource:
            self._bad(
                "workloadIdentityResource",
                "Azure workload identity is not supported by ebb; use username/password or OAuth2",
            )
        self.oauth = self._oauth()
        self._token: tuple[str, float] | None = None  # (Authorization value, expiry on the loop's clock)
        # The password may travel inside `host` (and percent-encoded there): keep every form out of messages.
        in_host = urlsplit(m.host).password
        extra = {in_host, unquote(in_host)} if in_host else set()
        if m.password:
            extra |= {m.password, quote(m.password, safe="")}
        self.secrets = self.secrets | frozenset(s for s in extra if s)
        self.connection_name = f"ebb-{ctx.namespace}-{ctx.name}"
        self._lock = asyncio.Lock()
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._session: aiohttp.ClientSession | None = None

    def _oauth(self) -> bool:
        """KEDA's validateOAuth2: all three parameters or none, HTTP only, not with username/password."""
        m = self.m
        given = {"oauthTokenURI": m.oauth_token_uri, "clientID": m.client_id, "clientSecret": m.client_secret}
        if not any(given.values()):
            return False
        missing = [k for k, v in given.items() if not v]
        if missing:
            self._bad(
                missing[0],
                f"OAuth2 needs oauthTokenURI, clientID and clientSecret from a TriggerAuthentication; "
                f"missing: {', '.join(missing)}",
            )
        if self.protocol != "http":
            self._bad("oauthTokenURI", "OAuth2 works with the HTTP protocol (the management API) only, not AMQP")
        if m.username and m.password:
            self._bad("oauthTokenURI", "OAuth2 cannot be combined with username and password")
        token_url = urlsplit(m.oauth_token_uri or "")
        if token_url.scheme not in ("http", "https") or not token_url.netloc:
            self._bad("oauthTokenURI", "expected an http:// or https:// URL")
        return True

    async def _bearer(self, session: aiohttp.ClientSession) -> str:
        """A client-credentials token, cached until 10 s before it expires (golang.org/x/oauth2's margin)."""
        now = asyncio.get_running_loop().time()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        m = self.m
        form = {"grant_type": "client_credentials"}
        if m.scopes:
            form["scope"] = " ".join(m.scopes)
        form.update(dict(m.endpoint_params))
        client_id, secret = m.client_id or "", m.client_secret or ""
        # x/oauth2 tries HTTP Basic first (id and secret URL-encoded), then the credentials in the form.
        header = basic_auth(quote_plus(client_id), quote_plus(secret))
        attempts = [({"Authorization": header}, form), ({}, {**form, "client_id": client_id, "client_secret": secret})]
        problem = ""
        for headers, data in attempts:
            async with session.post(str(m.oauth_token_uri), data=data, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    problem = f"the token endpoint answered {resp.status} {resp.reason}"
                    continue
                body = await resp.json(content_type=None)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise self.error("the token endpoint's answer has no access_token")
            kind = str(body.get("token_type") or "Bearer")
            kind = "Bearer" if kind.lower() == "bearer" else kind
            expires_in = body.get("expires_in")
            lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
            value = f"{kind} {token}"
            self.secrets = self.secrets | {token}
            self._token = (value, now + lifetime - 10.0) if lifetime is not None else (value, float("inf"))
            return value
        raise self.error(f"OAuth2: {problem}")

    def _bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def _mode_and_target(self) -> tuple[Mode, float]:
        """KEDA's rules: nothing given means QueueLength 20; `queueLength` alone is the old spelling."""
        m = self.m
        value = m.value or 0.0
        queue_length = m.queue_length or 0.0
        if queue_length == 0 and m.mode is None and value == 0:
            return "QueueLength", DEFAULT_QUEUE_LENGTH
        if queue_length != 0:
            if m.mode is not None or value != 0:
                self._bad("queueLength", "queueLength is deprecated and cannot be combined with mode and value")
            return "QueueLength", queue_length
        if m.mode is None:
            self._bad(
                "mode",
                "mode must be given with value (QueueLength, MessageRate, DeliverGetRate, "
                "PublishedToDeliveredRatio or ExpectedQueueConsumptionTime)",
            )
        if value == 0:
            self._bad("value", f"value (the target for mode {m.mode}) must be given and not 0")
        return m.mode, value

    @property
    def timeout(self) -> float:
        return self.m.timeout if self.m.timeout is not None else self.ctx.timeout

    def metric_spec(self) -> MetricSpec:
        suffix = f"rabbitmq-{quote_plus(self.m.queue_name, safe='')}"
        return MetricSpec(name=metric_name(self.ctx, suffix), target=self.target, metric_type=self.ctx.metric_type)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["host"] = mask_userinfo(self.m.host)
        out["protocol"] = self.protocol
        out["mode"] = self.mode
        out["value"] = self.target
        return out

    def error(self, message: str) -> ScalerError:
        return super().error(_USERINFO.sub("user:password@", redact(message, self.secrets)))

    async def read(self) -> ScalerReading:
        status = await (self._read_http() if self.protocol == "http" else self._read_amqp())
        return self._reading(status)

    def _reading(self, s: QueueStatus) -> ScalerReading:
        """Value and activity per mode, with KEDA's special cases for idle consumers."""
        act = self.m.activation_value
        messages = float(s.messages)
        if self.mode == "QueueLength":
            return ScalerReading(messages, messages > act)
        if self.mode == "MessageRate":
            return ScalerReading(s.publish_rate, s.publish_rate > act or messages > act)
        if self.mode == "DeliverGetRate":
            return ScalerReading(s.deliver_get_rate, s.deliver_get_rate > act)
        if self.mode == "PublishedToDeliveredRatio":
            ratio = 0.0
            if s.publish_rate > 0 and s.deliver_get_rate == 0:
                ratio = act
            elif s.publish_rate > 0 and s.deliver_get_rate > 0:
                ratio = s.publish_rate / s.deliver_get_rate
            return ScalerReading(ratio, ratio > act or (s.publish_rate > 0 and s.deliver_get_rate == 0))
        # ExpectedQueueConsumptionTime: seconds to drain the backlog at the current rates.
        if messages == 0:
            eta = 0.0
        elif s.deliver_get_rate == 0:
            eta = act
        else:
            eta = (s.publish_rate - s.deliver_get_rate) / s.deliver_get_rate + messages / s.deliver_get_rate
        return ScalerReading(eta, eta > act or (s.deliver_get_rate == 0 and messages > 0))

    # --- AMQP -----------------------------------------------------------------------------------

    def _amqp_url(self) -> URL:
        url = URL(self.m.host)
        if self.m.username and self.m.password:
            url = url.with_user(self.m.username).with_password(self.m.password)
        if self.m.vhost_name:
            url = url.with_path("/" + quote(self.m.vhost_name, safe=""), encoded=True)
        return url

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.m.unsafe_ssl:
            return None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    async def _amqp_channel(self) -> aiormq.abc.AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            await self._close_amqp()
            url = self._amqp_url()
            connection = aiormq.Connection(
                url, context=self._ssl_context(), client_properties={"connection_name": self.connection_name}
            )
            self._connection = connection
            try:
                await connection.connect()
            except aiormq.exceptions.InvalidFrameError as exc:
                await self._close_amqp()
                if "Connection.Close" not in str(exc):
                    raise
                vhost = unquote(url.raw_path[1:]) if url.raw_path not in ("", "/") else "/"
                raise self.error(
                    f"the broker closed the connection while opening virtual host {vhost!r}: "
                    "it may not exist, or this user may not use it"
                ) from None
            except BaseException:
                await self._close_amqp()
                raise
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def _read_amqp(self) -> QueueStatus:
        async with self._lock:
            try:
                channel = await self._amqp_channel()
                ok = await channel.queue_declare(self.m.queue_name, passive=True)
            except aiormq.exceptions.ChannelClosed:
                # A missing queue closes only the channel; the next read opens a fresh one.
                self._channel = None
                raise
            except BaseException:
                await self._close_amqp()
                raise
            return QueueStatus(int(ok.message_count or 0), 0.0, 0.0)

    async def _close_amqp(self) -> None:
        channel, connection = self._channel, self._connection
        self._channel = self._connection = None
        # Bounded: a dead broker must not hold up a read that is already failing or being cancelled.
        # A broken channel or connection may fail to close politely; there is nothing left to release then.
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), _CLOSE_TIMEOUT)
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), _CLOSE_TIMEOUT)

    # --- HTTP -----------------------------------------------------------------------------------

    def _http_target(self) -> tuple[str, str | None]:
        """The management API URL (no credentials in it) and the Authorization header, if any."""
        parts = urlsplit(self.m.host)
        username = self.m.username or (unquote(parts.username) if parts.username else None)
        password = self.m.password or (unquote(parts.password) if parts.password else None)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        # KEDA's reading of the path: the last segment is the vhost, anything before it a path prefix.
        segments = parts.path.split("/")
        vhost = "/" + segments[-1]
        prefix = "/".join(s for s in segments[:-1] if s)
        prefix = "/" + prefix if prefix else ""
        if self.m.vhost_name:
            vhost = "/" + quote(self.m.vhost_name, safe="")
        if vhost == "/":
            vhost = "/%2F"
        base = f"{parts.scheme}://{netloc}{prefix}/api/queues{vhost}"
        name = quote(self.m.queue_name, safe="")
        if self.m.use_regex:
            url = f"{base}?page=1&use_regex=true&pagination=false&name={name}&page_size={self.m.page_size}"
        else:
            url = f"{base}/{name}"
        auth = basic_auth(username, password) if username and password else None
        return url, auth

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=2, ssl=not self.m.unsafe_ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def _read_http(self) -> QueueStatus:
        url, auth = self._http_target()
        session = self._http_session()
        if self.oauth:
            auth = await self._bearer(session)
        headers = {"Authorization": auth} if auth else {}
        async with session.get(URL(url, encoded=True), headers=headers) as resp:
            if resp.status != 200:
                body = (await resp.text())[:300]
                raise self.error(f"management API answered {resp.status} {resp.reason} for {url}: {body}")
            data = await resp.json(content_type=None)
        if not self.m.use_regex:
            return self._queue_status(cast(dict[str, Any], data))
        if int(data.get("page_count", 0)) > 1:
            raise self.error(
                f"the regex matches more queues than one page holds (pageSize {self.m.page_size}): "
                "raise pageSize or narrow queueName"
            )
        return self._combine([self._queue_status(q) for q in data.get("items", [])])

    def _queue_status(self, q: dict[str, Any]) -> QueueStatus:
        stats = q.get("message_stats") or {}
        messages = q.get("messages_ready" if self.m.exclude_unacknowledged else "messages") or 0
        return QueueStatus(
            int(messages),
            float((stats.get("publish_details") or {}).get("rate", 0.0)),
            float((stats.get("deliver_get_details") or {}).get("rate", 0.0)),
        )

    def _combine(self, queues: list[QueueStatus]) -> QueueStatus:
        if not queues:
            return QueueStatus(0, 0.0, 0.0)
        if self.m.operation == "max":
            return QueueStatus(
                max(q.messages for q in queues),
                max(q.publish_rate for q in queues),
                max(q.deliver_get_rate for q in queues),
            )
        total = QueueStatus(
            sum(q.messages for q in queues),
            sum(q.publish_rate for q in queues),
            sum(q.deliver_get_rate for q in queues),
        )
        if self.m.operation == "sum":
            return total
        n = len(queues)
        return QueueStatus(total.messages // n, total.publish_rate / n, total.deliver_get_rate / n)

    async def close(self) -> None:
        async with self._lock:
            await self._close_amqp()
        if self._session is not None:
            await self._session.close()
            self._session = None
