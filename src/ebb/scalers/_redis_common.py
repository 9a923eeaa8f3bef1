"""What the `redis` and `redis-streams` triggers share: connection parameters, the pooled client, push.

Parameters, sources and their order follow KEDA's `redisConnectionInfo` (pkg/scalers/redis_scaler.go),
except that `password` is a secret here: only a TriggerAuthentication or `passwordFromEnv` may give it.

Reads go through one connection pool per server (address, database, credentials, timeout) and event loop,
shared by every trigger that reads there and closed when the last of them closes: a thousand objects on
one Redis hold a few connections, not thousands. Push subscriptions share one connection per server too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import tempfile
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ebb.errors import PushUnavailable, SpecError, redact
from ebb.scalers.base import Scaler, ScalerMetadata, Source, TriggerContext, param

T = TypeVar("T")

# KEDA's order tags: `address` triggerMetadata;authParams;resolvedEnv,
# the others triggerMetadata;resolvedEnv;authParams.
_ADDRESS_SOURCES: tuple[Source, ...] = ("triggerMetadata", "authParams", "resolvedEnv")
_CONN_SOURCES: tuple[Source, ...] = ("triggerMetadata", "resolvedEnv", "authParams")

#: A scaler's reads are sequential; the spare connections serve the odd concurrent read.
MAX_CONNECTIONS = 3
#: Connections of the read pool shared by every trigger reading one server.
SHARED_MAX_CONNECTIONS = 16

_BACKOFF_START = 0.5
_BACKOFF_MAX = 30.0


class RedisConnectionMetadata(ScalerMetadata):
    """Connection parameters of every Redis trigger, and ebb's own enableKeyspaceNotifications, clientName."""

    address: str | None = param(
        None,
        name="address",
        also=("addresses",),
        sources=_ADDRESS_SOURCES,
        description=("`host:port`, or a comma list whose first entry is used. Or give `host` and `port`"),
    )
    host: str | None = param(
        None,
        name="host",
        also=("hosts",),
        sources=_CONN_SOURCES,
        description=(
            "comma lists of the same length; the first pair is used. When `address` is also "
            "given, `address` wins, as in KEDA"
        ),
    )
    port: str | None = param(
        None,
        name="port",
        also=("ports",),
        sources=_CONN_SOURCES,
        description=(
            "comma lists of the same length; the first pair is used. When `address` is also "
            "given, `address` wins, as in KEDA"
        ),
    )
    username: str | None = param(None, name="username", sources=_CONN_SOURCES)
    password: str | None = param(None, name="password", sources=("resolvedEnv", "authParams"), secret=True)
    database_index: int = param(0, name="databaseIndex", ge=0)
    enable_tls: bool | None = param(
        None, name="enableTLS", shown_default="`false`", description="or `tls: enable` from auth, not both"
    )
    tls: Literal["enable", "disable"] | None = param(
        None, name="tls", sources=("authParams",), description="`enable` or `disable`; not together with `enableTLS`"
    )
    unsafe_ssl: bool = param(False, name="unsafeSsl")
    ca: str | None = param(None, name="ca", sources=("authParams",), description="PEM text")
    cert: str | None = param(None, name="cert", also=("Cert",), sources=("authParams",), description="PEM text")
    key: str | None = param(None, name="key", sources=("authParams",), secret=True, description="PEM text")
    key_password: str | None = param(
        None, name="keyPassword", sources=("authParams",), secret=True, description="PEM text"
    )
    enable_keyspace_notifications: bool = param(
        False,
        name="enableKeyspaceNotifications",
        description="ebb only: lets ebb `CONFIG SET notify-keyspace-events` for push",
    )
    client_name: str | None = param(
        None,
        name="clientName",
        pattern=r"^\S+$",
        description="ebb only: `CLIENT SETNAME` for this trigger's connections",
    )


@dataclass(frozen=True)
class RedisEndpoint:
    """Where and how to connect, validated."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl_context: ssl.SSLContext | None
    client_name: str | None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_port(text: str, where: str, obj: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise SpecError(obj, where, f"expected a port number between 1 and 65535, got {text!r}")
    return port


def _parse_address(address: str, where: str, obj: str) -> tuple[str, int]:
    # KEDA takes a comma separated list and a single-node client uses the first entry.
    first = _split(address)[0] if _split(address) else ""
    if first.startswith("["):  # [ipv6]:port
        host, sep, rest = first[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = first.rpartition(":")
    if not host or not sep or not port_text:
        raise SpecError(obj, where, f"expected host:port, got {address!r}")
    return host, _parse_port(port_text, where, obj)


def _resolve_host_port(meta: RedisConnectionMetadata, ctx: TriggerContext) -> tuple[str, int]:
    """KEDA's validateRedisAddress: host/port pairs are appended to `address`, and a single-node client
    connects to the first entry, so `address` wins when both are given."""
    where = f"spec.triggers[{ctx.trigger_index}].metadata"
    obj = ctx.object_ref
    hosts, ports = _split(meta.host or ""), _split(meta.port or "")
    if hosts and ports and len(hosts) != len(ports):
        raise SpecError(
            obj,
            f"{where}.port",
            f"host lists {len(hosts)} entries and port {len(ports)}: give one port per host",
        )
    if meta.address and _split(meta.address):
        return _parse_address(meta.address, f"{where}.address", obj)
    if hosts and ports:
        return hosts[0], _parse_port(ports[0], f"{where}.port", obj)
    raise SpecError(
        obj,
        f"{where}.address" if not (hosts or ports) else f"{where}.{'port' if hosts else 'host'}",
        "no Redis server given: set address (host:port, or a comma list), or both host and port (in the "
        "trigger metadata, a TriggerAuthentication, or addressFromEnv/hostFromEnv/portFromEnv)",
    )


def _tls_enabled(meta: RedisConnectionMetadata, ctx: TriggerContext) -> bool:
    if meta.enable_tls is not None and meta.tls is not None:
        raise SpecError(
            ctx.object_ref,
            f"spec.triggers[{ctx.trigger_index}].metadata.enableTLS",
            "TLS is set both here (enableTLS) and in the TriggerAuthentication (tls): set it in one place",
        )
    if meta.tls is not None:
        return meta.tls == "enable"
    return bool(meta.enable_tls)


def build_ssl_context(
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    key_password: str | None = None,
    unsafe_ssl: bool = False,
) -> ssl.SSLContext:
    """A client context like KEDA's NewTLSConfigWithPassword: system roots plus `ca`, TLS 1.2+, client cert.

    Raises ValueError or ssl.SSLError when the PEM data does not load.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if unsafe_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ca:
        context.load_verify_locations(cadata=ca)
    if bool(cert) != bool(key):
        raise ValueError("cert and key must be given together")
    if cert and key:
        # The ssl module loads a certificate chain only from files: write them where only we can read,
        # and remove them at once.
        with tempfile.TemporaryDirectory(prefix="ebb-redis-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            for path, data in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(data)
            # A callable, even for an unencrypted key: without one OpenSSL would prompt on the terminal.
            context.load_cert_chain(cert_path, key_path, password=lambda: key_password or "")
    return context


def resolve_endpoint(meta: RedisConnectionMetadata, ctx: TriggerContext) -> RedisEndpoint:
    """Validate the connection parameters together; SpecError names the parameter at fault."""
    host, port = _resolve_host_port(meta, ctx)
    ssl_context = None
    if _tls_enabled(meta, ctx):
        try:
            ssl_context = build_ssl_context(
                ca=meta.ca,
                cert=meta.cert,
                key=meta.key,
                key_password=meta.key_password,
                unsafe_ssl=meta.unsafe_ssl,
            )
        except (ValueError, ssl.SSLError) as exc:
            secrets = [s for s in (meta.password, meta.key, meta.key_password) if s]
            raise SpecError(
                ctx.object_ref,
                f"spec.triggers[{ctx.trigger_index}].authenticationRef",
                redact(f"the TLS parameters (ca, cert, key, keyPassword) do not load: {exc}", secrets),
            ) from None
    return RedisEndpoint(
        host=host,
        port=port,
        db=meta.database_index,
        username=meta.username,
        password=meta.password,
        ssl_context=ssl_context,
        client_name=meta.client_name,
    )


class _Connection(Connection):
    """redis-py's connection, with the write timeout done by `asyncio.timeout` instead of `wait_for`.

    On Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives as the write completes, so a
    Ctrl-C could leave a scaling loop running for good; `asyncio.timeout` never does.
    """

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        self.socket_timeout = None  # the parent then writes without wait_for; the bound is ours
        try:
            async with asyncio.timeout(timeout):
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class _TLSConnection(_Connection):
    """A redis-py connection using a prepared SSLContext (redis-py would build one from file paths)."""

    def __init__(self, *, ebb_ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        self._ebb_ssl_context = ebb_ssl_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {**super()._connection_arguments(), "ssl": self._ebb_ssl_context}


def _keepalive_options() -> dict[int, int]:
    # Detects a vanished server on the idle push subscription within about a minute.
    wanted = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def make_pool(
    endpoint: RedisEndpoint,
    timeout: float,
    *,
    max_connections: int = MAX_CONNECTIONS,
    blocking_reads: bool = False,
) -> BlockingConnectionPool:
    """A bounded pool: socket timeouts are the trigger's timeout, one quick retry for stale sockets.

    `blocking_reads` drops the read timeout, for a subscription that waits for messages indefinitely
    (TCP keepalive then finds a vanished server).
    """
    kwargs: dict[str, Any] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "db": endpoint.db,
        "username": endpoint.username,
        "password": endpoint.password,
        "client_name": endpoint.client_name,
        "socket_timeout": None if blocking_reads else timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": _keepalive_options(),
        # The subscription reconnects itself (see watch), so that it re-checks the server's settings.
        "retry": Retry(NoBackoff(), 0 if blocking_reads else 1),
        "decode_responses": True,
        "encoding_errors": "replace",
    }
    connection_class: type[Connection] = _Connection
    if endpoint.ssl_context is not None:
        connection_class = _TLSConnection
        kwargs["ebb_ssl_context"] = endpoint.ssl_context
    return BlockingConnectionPool(
        max_connections=max_connections, timeout=timeout, connection_class=connection_class, **kwargs
    )


_PoolKey = tuple[RedisEndpoint, float]


class _SharedPools:
    """Read pools by server and event loop, counted: the last release disconnects the pool."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_PoolKey, list[Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def acquire(self, endpoint: RedisEndpoint, timeout: float) -> BlockingConnectionPool:
        pools = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        key = (endpoint, timeout)
        entry = pools.get(key)
        if entry is None:
            entry = pools[key] = [make_pool(endpoint, timeout, max_connections=SHARED_MAX_CONNECTIONS), 0]
        entry[1] += 1
        pool: BlockingConnectionPool = entry[0]
        return pool

    async def release(self, pool: BlockingConnectionPool) -> None:
        try:
            pools = self._by_loop.get(asyncio.get_running_loop(), {})
        except RuntimeError:
            return
        for key, entry in list(pools.items()):
            if entry[0] is pool:
                entry[1] -= 1
                if entry[1] <= 0:
                    del pools[key]
                    await pool.disconnect(inuse_connections=True)
                return
        await pool.disconnect(inuse_connections=True)  # not shared (made on another loop): just close it

    def count(self) -> int:
        """Pools open on the running loop (for tests)."""
        return len(self._by_loop.get(asyncio.get_running_loop(), {}))


SHARED_POOLS = _SharedPools()


# Events that only take work away: they never need an early poll.
_REMOVAL_EVENTS = frozenset(
    {
        "del", "expired", "evicted", "rename_from", "move_from", "expire", "persist",
        "lpop", "rpop", "ltrim", "lrem",
        "srem", "spop",
        "zrem", "zpopmin", "zpopmax", "zrembyscore", "zrembyrank", "zrembylex",
        "hdel", "hexpired", "hpersist", "hexpire",
        "xdel", "xtrim", "xgroup-delconsumer", "xgroup-destroy",
    }
)  # fmt: skip


class _Watcher:
    def __init__(self, notify: Callable[[], None], subscribed: Callable[[], None]) -> None:
        self.notify = notify
        self.subscribed = subscribed
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_exception(exc)


class _PushHub:
    """One subscription connection per server, shared by every trigger watching a key there.

    One task reads it and applies (un)subscriptions between reads, so the connection is never used by two
    tasks at once. A lost connection fails every watcher, whose own loop reconnects with its backoff.
    """

    #: How often the reader looks for new subscriptions between messages (seconds).
    TICK = 0.1

    def __init__(self, endpoint: RedisEndpoint, timeout: float, on_empty: Callable[[_PushHub], None]) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._on_empty = on_empty
        self._watchers: dict[str, set[_Watcher]] = {}
        self._subscribed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        #: Set once its reader has ended: a hub is never reused, the next watcher gets a new one.
        self._dead = False

    async def watch(self, channel: str, notify: Callable[[], None], subscribed: Callable[[], None]) -> None:
        """Call `notify` for each message on `channel` until cancelled; raises what broke the subscription."""
        if self._dead:
            raise RedisConnectionError("the shared subscription was just lost")
        watcher = _Watcher(notify, subscribed)
        self._watchers.setdefault(channel, set()).add(watcher)
        if channel in self._subscribed:
            subscribed()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"ebb-redis-push-{self.endpoint.address}")
        try:
            await watcher.failed
        finally:
            self._remove(channel, watcher)

    def _remove(self, channel: str, watcher: _Watcher) -> None:
        watchers = self._watchers.get(channel)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[channel]
        if not self._watchers:
            self._on_empty(self)

    def _fail_all(self, exc: BaseException) -> None:
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.fail(exc)

    async def _run(self) -> None:
        pool = make_pool(self.endpoint, self.timeout, max_connections=1, blocking_reads=True)
        pubsub = aioredis.Redis(connection_pool=pool).pubsub()
        self._subscribed = set()
        try:
            while self._watchers:
                await self._apply(pubsub)
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.TICK)
                if message is not None:
                    self._dispatch(message)
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
            self._fail_all(exc)
        except Exception as exc:  # never leave a watcher waiting on a dead reader
            self._fail_all(exc)
            raise
        finally:
            self._dead = True
            self._on_empty(self)  # before any await: later watchers get a new hub
            self._subscribed = set()
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await pool.disconnect(inuse_connections=True)

    async def _apply(self, pubsub: Any) -> None:
        wanted = set(self._watchers)
        gone = self._subscribed - wanted
        if gone:
            await pubsub.unsubscribe(*gone)
            self._subscribed -= gone
        for channel in wanted - self._subscribed:
            await pubsub.subscribe(channel)
            try:
                await self._confirmed(pubsub, channel)
            except ResponseError as exc:
                # This channel is refused (an ACL): its watchers learn why; the others carry on.
                pubsub.channels.pop(channel, None)
                for watcher in list(self._watchers.get(channel, ())):
                    watcher.fail(exc)
                continue
            self._subscribed.add(channel)
            for watcher in list(self._watchers.get(channel, ())):
                watcher.subscribed()

    async def _confirmed(self, pubsub: Any, channel: str) -> None:
        async with asyncio.timeout(self.timeout):
            while True:
                message = await pubsub.get_message(timeout=self.TICK)
                if message is None:
                    continue
                if message.get("type") == "subscribe" and message.get("channel") == channel:
                    return
                self._dispatch(message)

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        if message.get("type") != "message" or message.get("data") in _REMOVAL_EVENTS:
            return
        for watcher in list(self._watchers.get(str(message.get("channel")), ())):
            watcher.notify()


class _PushHubs:
    """Push hubs by server and event loop; a hub goes when its last watcher does."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_PoolKey, _PushHub]] = (
            weakref.WeakKeyDictionary()
        )

    def hub(self, endpoint: RedisEndpoint, timeout: float) -> _PushHub:
        hubs = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        key = (endpoint, timeout)
        found = hubs.get(key)
        if found is None:
            found = hubs[key] = _PushHub(endpoint, timeout, lambda hub: self._drop(hubs, key, hub))
        return found

    @staticmethod
    def _drop(hubs: dict[_PoolKey, _PushHub], key: _PoolKey, hub: _PushHub) -> None:
        if hubs.get(key) is hub:
            del hubs[key]

    def count(self) -> int:
        """Hubs on the running loop (for tests)."""
        return len(self._by_loop.get(asyncio.get_running_loop(), {}))


PUSH_HUBS = _PushHubs()


class RedisScalerBase(Scaler):
    """A Redis trigger: lazy pooled client, errors that name the server, keyspace-notification push."""

    supports_push: ClassVar[bool] = True
    meta: RedisConnectionMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, RedisConnectionMetadata)
        if ctx.metric_type == "Utilization":
            raise SpecError(
                ctx.object_ref,
                f"spec.triggers[{ctx.trigger_index}].metricType",
                "Utilization is only for cpu and memory triggers; use AverageValue or Value",
            )
        self.endpoint = resolve_endpoint(meta, ctx)
        self._pool: BlockingConnectionPool | None = None
        self._redis: aioredis.Redis | None = None

    # --- what subclasses say -------------------------------------------------------------------

    @property
    def watched_key(self) -> str:
        """The key whose keyspace notifications signal new work."""
        raise NotImplementedError

    async def notification_flag(self, client: aioredis.Redis) -> str:
        """The notify-keyspace-events class letter for the watched key's type (l, t, s, z, h)."""
        raise NotImplementedError

    # --- client --------------------------------------------------------------------------------

    def client(self) -> aioredis.Redis:
        """This scaler's client on its server's shared pool; created without I/O, connections on demand."""
        if self._redis is None:
            self._pool = SHARED_POOLS.acquire(self.endpoint, self.timeout)
            self._redis = aioredis.Redis(connection_pool=self._pool)
        return self._redis

    async def close(self) -> None:
        """Release every connection (the shared pool when its last user goes); a later read opens new ones."""
        client, pool = self._redis, self._pool
        self._redis, self._pool = None, None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await SHARED_POOLS.release(pool)

    async def call(self, what: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run one exchange with Redis; failures become messages that name the server and never a secret."""
        try:
            return await what(self.client())
        except AuthenticationError as exc:
            user = f" for user {self.endpoint.username!r}" if self.endpoint.username else ""
            raise self.error(f"Redis at {self.endpoint.address} refused the login{user}: {exc}") from None
        except RedisTimeoutError as exc:
            raise self.error(
                f"no answer from Redis at {self.endpoint.address} within {self.timeout:g}s: {exc}"
            ) from None
        except RedisConnectionError as exc:
            raise self.error(f"cannot reach Redis at {self.endpoint.address}: {exc}") from None
        except ResponseError as exc:
            raise self.error(f"Redis at {self.endpoint.address} answered with an error: {exc}") from None

    # --- push ----------------------------------------------------------------------------------

    async def _ensure_notifications(self, client: aioredis.Redis) -> None:
        """Check notify-keyspace-events covers the watched key; turn it on only if the trigger allows it."""
        flag = await self.notification_flag(client)
        try:
            current = str((await client.config_get("notify-keyspace-events")).get("notify-keyspace-events", ""))
        except ResponseError:
            # CONFIG is often refused (ACLs, managed Redis where it is set elsewhere): subscribe and trust it.
            return
        missing = ("" if "K" in current else "K") + ("" if flag in current or "A" in current else flag)
        if not missing:
            return
        wanted = current + missing
        if not self.meta.enable_keyspace_notifications:
            raise PushUnavailable(
                self.ctx.object_ref,
                self.ctx.trigger_ref,
                f"Redis at {self.endpoint.address} has keyspace notifications off (notify-keyspace-events "
                f"{current!r}), so its redis triggers are polled at their pollingInterval. For activation as "
                f"soon as work arrives, run `CONFIG SET notify-keyspace-events {wanted}` there (or set it in "
                'redis.conf; KEA enables every event), or set enableKeyspaceNotifications: "true" on a trigger '
                "to let ebb do it",
                key=f"redis://{self.endpoint.address}",
            )
        try:
            await client.config_set("notify-keyspace-events", wanted)
        except ResponseError as exc:
            raise self.error(
                f"enableKeyspaceNotifications is true but Redis at {self.endpoint.address} refused "
                f"`CONFIG SET notify-keyspace-events {wanted}`: {exc}; set it on the server instead"
            ) from None

    async def watch(self, notify: Callable[[], None]) -> None:
        """Subscribe to the key's keyspace channel and call `notify()` on each event that may add work.

        The subscription is this server's shared one (see _PushHub). Reconnects with backoff until
        cancelled, re-checking the server's notification setting each time (a restarted server forgets
        CONFIG SET), and notifies once after a reconnect for events missed meanwhile.
        """
        channel = f"__keyspace@{self.endpoint.db}__:{self.watched_key}"
        backoff = _BACKOFF_START
        reconnecting = False
        while True:
            try:
                await self._ensure_notifications(self.client())
                caught_up = reconnecting

                def subscribed() -> None:
                    nonlocal backoff, reconnecting, caught_up
                    backoff, reconnecting = _BACKOFF_START, False
                    if caught_up:
                        caught_up = False
                        notify()

                await PUSH_HUBS.hub(self.endpoint, self.timeout).watch(channel, notify, subscribed)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                reconnecting = True
            except ResponseError as exc:
                raise self.error(
                    f"Redis at {self.endpoint.address} refused the subscription to {channel!r}: {exc} "
                    "(an ACL user needs permission for the channel, e.g. `&__keyspace@*`)"
                ) from None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)


def key_type_flag(key_type: str) -> str:
    """notify-keyspace-events class letter for a Redis type (an absent key is taken to be a list)."""
    return {"set": "s", "zset": "z", "hash": "h", "stream": "t"}.get(key_type, "l")
