"""`etcd`: KEDA's etcd scaler. The metric is the number stored at `watchKey`.

As KEDA (pkg/scalers/etcd_scaler.go): a missing key or a value that is not a number is an error, and push
watches the key (with progress notifications and `hasleader`, re-watching with backoff from 2 s to 1 min, and
when no progress notification came for twice `watchProgressNotifyInterval`).

The client speaks etcd's v3 gRPC API over grpc.aio with the generated stubs that the `aetcd` package ships
(its own client has no TLS and never renews an expired auth token, so ebb manages the channel itself).
Endpoints are tried in order; a failing one is left for the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from aetcd import rpc  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization

from ebb.errors import ScalerError, SpecError
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

log = logging.getLogger(__name__)
T = TypeVar("T")

_AUTH_SOURCES: tuple[Literal["authParams"], Literal["resolvedEnv"]] = ("authParams", "resolvedEnv")
#: etcd's words for a token that has expired or that a restarted server no longer knows.
_STALE_TOKEN = "invalid auth token"
_BACKOFF_START = 2.0
_BACKOFF_MAX = 60.0
# Transport failures: the endpoint is down or unreachable; the next endpoint (or the next poll) may do.
_TRANSPORT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class EtcdMetadata(ScalerMetadata):
    endpoints: str = param(
        name="endpoints",
        min_length=1,
        description=("comma list of `host:port`, `http://host:port` or `https://host:port`, tried in order"),
    )
    watch_key: str = param(name="watchKey", min_length=1)
    value: float = param(name="value", gt=0, allow_inf_nan=False, description="> 0, per replica")
    activation_value: float = param(0.0, name="activationValue", allow_inf_nan=False)
    watch_progress_notify_interval: int = param(
        600,
        name="watchProgressNotifyInterval",
        gt=0,
        description="seconds, > 0. Push re-watches after twice this without a word from the server",
    )
    username: str | None = param(None, name="username", sources=_AUTH_SOURCES, description="with `password`")
    password: str | None = param(None, name="password", sources=_AUTH_SOURCES, secret=True)
    tls: Literal["enable", "disable"] = param(
        "disable",
        name="tls",
        sources=("authParams",),
        description="`enable` for TLS. An `https://` endpoint also turns it on",
    )
    cert: str | None = param(
        None, name="cert", sources=("authParams",), description="PEM text. No `ca`: the system's roots"
    )
    key: str | None = param(
        None, name="key", sources=("authParams",), secret=True, description="PEM text. No `ca`: the system's roots"
    )
    key_password: str | None = param(
        None,
        name="keyPassword",
        sources=("authParams",),
        secret=True,
        description="PEM text. No `ca`: the system's roots",
    )
    ca: str | None = param(
        None, name="ca", sources=("authParams",), description="PEM text. No `ca`: the system's roots"
    )


class EtcdScaler(Scaler):
    """Scales on a number kept in etcd; `value` per replica. Pushes when the key is set above activation."""

    type_name: ClassVar[str] = "etcd"
    Metadata: ClassVar[type[ScalerMetadata]] = EtcdMetadata
    supports_push: ClassVar[bool] = True
    meta: EtcdMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        m = self.meta
        if bool(m.username) != bool(m.password):
            self._bad("password" if m.username else "username", "username and password must be given together")
        if m.tls == "enable" and bool(m.cert) != bool(m.key):
            self._bad("cert" if m.key else "key", "cert and key must be given together")
        self.endpoints: list[str] = []
        https = False
        for raw in (e.strip() for e in m.endpoints.split(",")):
            if not raw:
                continue
            target, secure = self._parse_endpoint(raw)
            self.endpoints.append(target)
            https = https or secure
        if not self.endpoints:
            self._bad("endpoints", "no endpoint given")
        self.credentials: grpc.ChannelCredentials | None = None
        if m.tls == "enable" or https:
            self.credentials = self._tls_credentials()
        self._current = 0
        self._channel: grpc.aio.Channel | None = None
        self._token: str | None = None
        self._lock = asyncio.Lock()

    def _bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def _parse_endpoint(self, raw: str) -> tuple[str, bool]:
        """`host:port` for gRPC, and whether the endpoint's scheme asks for TLS."""
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        if parts.scheme not in ("http", "https"):
            self._bad("endpoints", f"{raw!r}: expected host:port, http://host:port or https://host:port")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/") or parts.username:
            self._bad("endpoints", f"{raw!r}: expected host:port, http://host:port or https://host:port")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return f"{host}:{port}", parts.scheme == "https"

    def _tls_credentials(self) -> grpc.ChannelCredentials:
        m = self.meta
        key = m.key.encode() if m.key else None
        if key is not None and m.key_password:
            # gRPC takes only an unencrypted key: decrypt it in memory.
            try:
                loaded = serialization.load_pem_private_key(key, password=m.key_password.encode())
            except (ValueError, TypeError):
                raise SpecError(
                    self.ctx.object_ref,
                    f"spec.triggers[{self.ctx.trigger_index}].authenticationRef",
                    "key does not load with keyPassword (expected an encrypted PEM private key)",
                ) from None
            key = loaded.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        return grpc.ssl_channel_credentials(
            root_certificates=m.ca.encode() if m.ca else None,
            private_key=key,
            certificate_chain=m.cert.encode() if m.cert else None,
        )

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"etcd-{self.meta.watch_key}"),
            target=self.meta.value,
            metric_type=self.ctx.metric_type,
        )

    # --- connection ----------------------------------------------------------------------------------

    def _open(self, endpoint: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(endpoint)
        return grpc.aio.secure_channel(endpoint, self.credentials)

    async def _authenticate(self, channel: grpc.aio.Channel, endpoint: str) -> str | None:
        if not self.meta.username:
            return None
        request = rpc.AuthenticateRequest(name=self.meta.username, password=self.meta.password)
        try:
            response = await rpc.AuthStub(channel).Authenticate(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _TRANSPORT_CODES:
                raise
            raise self.error(
                f"etcd at {endpoint} refused the login for user {self.meta.username!r}: {_details(exc)}"
            ) from None
        return str(response.token)

    def _metadata(self, token: str | None) -> tuple[tuple[str, str], ...]:
        return (("token", token),) if token else ()

    async def _close_channel(self) -> None:
        channel, self._channel, self._token = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def _call(self, what: Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]], Awaitable[T]]) -> T:
        """Run `what` on the current endpoint; on a transport failure, on the next ones in turn."""
        async with self._lock:
            failures: list[str] = []
            for _ in range(len(self.endpoints)):
                endpoint = self.endpoints[self._current]
                try:
                    if self._channel is None:
                        channel = self._open(endpoint)
                        try:
                            self._token = await self._authenticate(channel, endpoint)
                        except BaseException:
                            await channel.close()
                            raise
                        self._channel = channel
                    try:
                        return await what(self._channel, self._metadata(self._token))
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAUTHENTICATED or _STALE_TOKEN not in _details(exc):
                            raise
                        self._token = await self._authenticate(self._channel, endpoint)
                        return await what(self._channel, self._metadata(self._token))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() not in _TRANSPORT_CODES:
                        await self._close_channel()
                        hint = ""
                        if "user name is empty" in _details(exc):
                            hint = " (the server requires a login: give username and password)"
                        raise self.error(
                            f"etcd at {endpoint} answered {exc.code().name}: {_details(exc)}{hint}"
                        ) from None
                    failures.append(f"{endpoint}: {exc.code().name}: {_details(exc)}")
                except ScalerError:
                    raise  # an answer (no such key, refused login): the connection is fine
                except BaseException:
                    await self._close_channel()
                    raise
                await self._close_channel()
                self._current = (self._current + 1) % len(self.endpoints)
            raise self.error(f"cannot reach etcd: {'; '.join(failures)}")

    async def close(self) -> None:
        async with self._lock:
            await self._close_channel()

    # --- reading -------------------------------------------------------------------------------------

    async def read(self) -> ScalerReading:
        value = await self._call(self._get)
        return ScalerReading(value=value, active=activity(value, self.meta.activation_value))

    async def _get(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> float:
        request = rpc.RangeRequest(key=self.meta.watch_key.encode())
        response = await rpc.KVStub(channel).Range(request, timeout=self.timeout, metadata=metadata)
        if not response.kvs:
            raise self.error(f"watchKey {self.meta.watch_key!r} does not exist")
        return self._number(bytes(response.kvs[0].value))

    def _number(self, raw: bytes) -> float:
        text = raw.decode("utf-8", "replace").strip()
        try:
            return float(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise self.error(f"the value at watchKey {self.meta.watch_key!r} is not a number: {shown!r}") from None

    # --- push ----------------------------------------------------------------------------------------

    async def watch(self, notify: Callable[[], None]) -> None:
        """Watch `watchKey` and call `notify()` when it is set to a number above `activationValue`.

        On its own channel. Re-watches (on the next endpoint) after an error, a cancelled watch, or silence
        longer than twice the progress interval, with KEDA's backoff; notifies once after each re-watch for
        what may have changed meanwhile.
        """
        backoff = _BACKOFF_START
        rewatch = False
        index = self._current
        while True:
            endpoint = self.endpoints[index % len(self.endpoints)]
            channel = self._open(endpoint)
            try:
                token = await self._authenticate(channel, endpoint)
                # `hasleader`: a member cut off from its cluster's leader cancels the watch (WithRequireLeader).
                metadata = (*self._metadata(token), ("hasleader", "true"))
                call = rpc.WatchStub(channel).Watch(metadata=metadata)
                create = rpc.WatchCreateRequest(key=self.meta.watch_key.encode(), progress_notify=True)
                await call.write(rpc.WatchRequest(create_request=create))
                silence = 2.0 * self.meta.watch_progress_notify_interval
                while True:
                    response = await asyncio.wait_for(call.read(), silence)
                    if response is grpc.aio.EOF or response.canceled:
                        break
                    if response.created:
                        backoff = _BACKOFF_START
                        if rewatch:
                            notify()
                            rewatch = False
                    if any(self._adds_work(event) for event in response.events):
                        notify()
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                log.debug("etcd watch of %r on %s ended: %s", self.meta.watch_key, endpoint, exc)
            finally:
                await channel.close()
            rewatch = True
            index += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _adds_work(self, event: Any) -> bool:
        if event.type != rpc.Event.PUT:
            return False
        try:
            return float(bytes(event.kv.value).decode("utf-8", "replace")) > self.meta.activation_value
        except ValueError:
            return False  # KEDA counts it as 0


def _details(exc: grpc.aio.AioRpcError) -> str:
    return (exc.details() or "no details").strip()
