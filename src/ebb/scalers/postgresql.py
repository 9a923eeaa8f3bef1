"""The `postgresql` trigger: the number returned by a SQL query (KEDA's postgresql_scaler.go).

KEDA hands its connection string to pgx, which reads both libpq forms (`postgresql://...` URLs and
`host=... port=...` keyword strings). asyncpg reads only URLs and takes no keyword string, so both forms
are parsed here into libpq keywords and handed to asyncpg as one query-only URL, password aside.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import asyncpg
from pydantic import field_validator

from ebb.errors import SpecError
from ebb.scalers._sql import QueryResultError, query_value
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

#: One poll at a time is the norm; a second connection lets an overlapping caller (the metrics API) not queue.
POOL_SIZE = 2

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

#: libpq and pgx options that only steer the client. asyncpg knows none of them and would send them to the
#: server as settings, which refuses unknown ones, so they are dropped. Timeouts come from the trigger.
_CLIENT_ONLY = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "channel_binding",
        "gssencmode",
        "gssdelegation",
        "require_auth",
        "requirepeer",
        "requiressl",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "sslkeylogfile",
        "load_balance_hosts",
        "client_encoding",
        "min_protocol_version",
        "max_protocol_version",
        "scram_client_key",
        "scram_server_key",
        "statement_cache_capacity",
        "description_cache_capacity",
        "default_query_exec_mode",
        "min_read_buffer_size",
    }
)
_CLIENT_ONLY_PREFIXES = ("oauth_", "pool_")

_PORT_LIST = re.compile(r"\d{1,5}(,\d{1,5})*")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class ConnectionStringError(ValueError):
    """The connection string cannot be read. The message never quotes the string: it holds a password."""


def _parse_keyword_value(text: str) -> dict[str, str]:
    """libpq's `keyword = value` form: values unquoted or in single quotes, `\\` escaping the next char."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return out
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if not key or i >= n or text[i] != "=":
            raise ConnectionStringError(f"expected keyword=value at character {start + 1} of the connection string")
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ConnectionStringError(f"unterminated quoted value for {key!r} in the connection string")
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        out[key] = "".join(value)


def _split_hostspec(spec: str) -> tuple[str, str]:
    if spec.startswith("["):
        end = spec.find("]")
        if end < 0:
            raise ConnectionStringError("an IPv6 host in the connection URL lacks its closing ']'")
        rest = spec[end + 1 :]
        return spec[1:end], rest[1:] if rest.startswith(":") else ""
    host, _, port = spec.partition(":")
    return unquote(host), unquote(port)


def _parse_url(text: str) -> dict[str, str]:
    """`postgresql://[user[:password]@][host[:port][,...]][/dbname][?keyword=value&...]` as libpq reads it."""
    rest = text.split("://", 1)[1].split("#", 1)[0]
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    userinfo, at, hostlist = authority.rpartition("@")
    out: dict[str, str] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if colon:
            out["password"] = unquote(password)
    hosts: list[str] = []
    ports: list[str] = []
    for spec in hostlist.split(","):
        if spec:
            host, port = _split_hostspec(spec)
            hosts.append(host)
            ports.append(port)
    if hosts:
        out["host"] = ",".join(hosts)
    if any(ports):
        out["port"] = ",".join(p or "5432" for p in ports)
    if path:
        out["dbname"] = unquote(path)
    # Keywords in the query override the parts above, as in pgx.
    out.update(parse_qsl(query, keep_blank_values=True))
    return out


def parse_connection_string(text: str) -> dict[str, str]:
    """libpq keywords from either connection-string form pgx accepts."""
    text = text.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return _parse_url(text)
    if "://" in text.split(" ", 1)[0]:
        raise ConnectionStringError("a connection URL must start with postgresql:// or postgres://")
    return _parse_keyword_value(text)


def _options_settings(options: str) -> dict[str, str]:
    """Server settings from libpq's `options` (`-c name=value` or `--name=value`, spaces escaped by `\\`)."""
    words = re.findall(r"(?:\\.|\S)+", options)
    words = [re.sub(r"\\(.)", r"\1", w) for w in words]
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            setting, i = words[i + 1], i + 2
        elif word.startswith(("-c", "--")):
            setting, i = word[2:], i + 1
        else:
            raise ConnectionStringError("options in the connection string may only hold -c name=value settings")
        name, eq, value = setting.partition("=")
        if not eq or not _SETTING_NAME.fullmatch(name):
            raise ConnectionStringError("options in the connection string may only hold -c name=value settings")
        out[name.replace("-", "_")] = value
    return out


@dataclass(frozen=True)
class ConnectArgs:
    """What asyncpg is given: a URL with every keyword but the password, and the password alone."""

    dsn: str
    password: str | None


def connect_args(params: Mapping[str, str], application_name: str) -> ConnectArgs:
    """Map libpq keywords to asyncpg's URL keywords; `application_name` applies unless one is given."""
    params = {k: v for k, v in params.items() if v != ""}
    password = params.pop("password", None)
    if "database" in params:
        params.setdefault("dbname", params.pop("database"))
    if "hostaddr" in params:
        # libpq connects to hostaddr and keeps host for TLS names; asyncpg has one address list.
        params["host"] = params.pop("hostaddr")
    if params.get("replication", "false").lower() not in ("0", "false", "off", "no"):
        raise ConnectionStringError("replication connections are not supported by the postgresql trigger")
    settings = _options_settings(params.pop("options", ""))
    fallback = params.pop("fallback_application_name", None)
    if "application_name" not in params and "application_name" not in settings:
        params["application_name"] = fallback or application_name
    for key in list(params):
        if key in _CLIENT_ONLY or key.startswith(_CLIENT_ONLY_PREFIXES) or key == "replication":
            del params[key]
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ConnectionStringError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    if "port" in params:
        if not _PORT_LIST.fullmatch(params["port"]):
            raise ConnectionStringError("port must be a number, or a comma-separated list of numbers")
        n_ports = params["port"].count(",") + 1
        n_hosts = params["host"].count(",") + 1 if "host" in params else 1
        if n_ports > 1 and n_ports != n_hosts:
            raise ConnectionStringError(f"{n_ports} ports were given for {n_hosts} hosts")
    if "host" in params:
        # asyncpg splits a host list on ':' unless an IPv6 address is bracketed.
        params["host"] = ",".join(
            f"[{h}]" if ":" in h and not h.startswith(("/", "[")) else h for h in params["host"].split(",")
        )
    query = {**settings, **params}
    return ConnectArgs(dsn="postgresql://?" + urlencode(query), password=password)


class PostgreSQLMetadata(ScalerMetadata):
    query: str = param(name="query", min_length=1)
    #: KEDA refuses 0 ("no targetQueryValue given"); the HPA refuses any target that is not positive.
    target_query_value: float = param(name="targetQueryValue", gt=0, allow_inf_nan=False, description="> 0")
    activation_target_query_value: float = param(0.0, name="activationTargetQueryValue", allow_inf_nan=False)
    connection: str | None = param(
        None,
        name="connection",
        sources=("authParams", "resolvedEnv"),
        secret=True,
        description="A `postgresql://` URL or a libpq `key=value` string",
    )
    host: str | None = param(
        None, name="host", sources=("authParams", "triggerMetadata"), description="all required without `connection`"
    )
    port: str | None = param(
        None, name="port", sources=("authParams", "triggerMetadata"), description="all required without `connection`"
    )
    user_name: str | None = param(
        None,
        name="userName",
        sources=("authParams", "triggerMetadata"),
        description="all required without `connection`",
    )
    db_name: str | None = param(
        None, name="dbName", sources=("authParams", "triggerMetadata"), description="all required without `connection`"
    )
    sslmode: str | None = param(
        None, name="sslmode", sources=("authParams", "triggerMetadata"), description="all required without `connection`"
    )
    password: str | None = param(None, name="password", sources=("authParams", "resolvedEnv"), secret=True)

    @field_validator("port")
    @classmethod
    def _port_numbers(cls, value: str | None) -> str | None:
        if value is not None and not _PORT_LIST.fullmatch(value):
            raise ValueError("port must be a number, or a comma-separated list of numbers (one per host)")
        return value

    @field_validator("sslmode")
    @classmethod
    def _known_sslmode(cls, value: str | None) -> str | None:
        if value is not None and value not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
        return value


def default_application_name(ctx: TriggerContext) -> str:
    """What the server shows in pg_stat_activity for this trigger's connections (63 bytes kept)."""
    return f"ebb {ctx.namespace}/{ctx.name} s{ctx.trigger_index}"


class PostgreSQLScaler(Scaler):
    """Runs `query` on a small pool of its own; the first column of the first row is the metric."""

    type_name = "postgresql"
    Metadata = PostgreSQLMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, PostgreSQLMetadata)
        self.meta: PostgreSQLMetadata = meta
        self._args = self._connect_args()
        if self._args.password:
            self.secrets = self.secrets | {self._args.password}
        self._pool: asyncpg.Pool[Any] | None = None
        self._lock = asyncio.Lock()

    def _connect_args(self) -> ConnectArgs:
        meta, where = self.meta, f"spec.triggers[{self.ctx.trigger_index}].metadata"
        app_name = default_application_name(self.ctx)
        if meta.connection:
            try:
                return connect_args(parse_connection_string(meta.connection), app_name)
            except ConnectionStringError as exc:
                raise SpecError(self.ctx.object_ref, f"{where}.connection", str(exc)) from None
        fields = {
            "host": meta.host,
            "port": meta.port,
            "userName": meta.user_name,
            "dbName": meta.db_name,
            "sslmode": meta.sslmode,
        }
        for key, value in fields.items():
            if not value:
                raise SpecError(
                    self.ctx.object_ref,
                    f"{where}.{key}",
                    f"no {key} given: give either connection (from a TriggerAuthentication or "
                    "connectionFromEnv) or all of host, port, userName, dbName and sslmode",
                )
        params = {
            "host": meta.host or "",
            "port": meta.port or "",
            "user": meta.user_name or "",
            "dbname": meta.db_name or "",
            "sslmode": meta.sslmode or "",
            "password": meta.password or "",
        }
        try:
            return connect_args(params, app_name)
        except ConnectionStringError as exc:  # only a host/port count mismatch gets here
            raise SpecError(self.ctx.object_ref, f"{where}.port", str(exc)) from None

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, "postgresql"),
            target=self.meta.target_query_value,
            metric_type=self.ctx.metric_type,
        )

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        async with self._lock:
            if self._pool is None:
                # min_size=0: nothing connects until the first poll, so a down server is a ScalerError then.
                self._pool = await asyncpg.create_pool(
                    dsn=self._args.dsn,
                    password=self._args.password,
                    min_size=0,
                    max_size=POOL_SIZE,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                )
            return self._pool

    async def read(self) -> ScalerReading:
        pool = await self._get_pool()
        try:
            conn = await pool.acquire(timeout=self.timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self.error(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from None
        try:
            row = await conn.fetchrow(self.meta.query, timeout=self.timeout)
        except asyncpg.PostgresError as exc:
            raise self.error(f"the query failed: {type(exc).__name__}: {exc}") from None
        finally:
            await pool.release(conn)
        try:
            value = query_value(row)
        except QueryResultError as exc:
            raise self.error(str(exc)) from None
        return ScalerReading(value, activity(value, self.meta.activation_target_query_value))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self.timeout)
        except TimeoutError:
            pool.terminate()
