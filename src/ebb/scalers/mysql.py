"""The `mysql` trigger: the number returned by a SQL query (KEDA's mysql_scaler.go), for MySQL and MariaDB.

KEDA's `connectionString` is a go-sql-driver DSN, `user:password@tcp(host:port)/dbname?param=value`;
it is parsed here into aiomysql's arguments following that driver's ParseDSN rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import unquote

import aiomysql
import pymysql

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
DEFAULT_PORT = 3306

TlsMode = Literal["false", "true", "skip-verify", "preferred"]

#: go-sql-driver parameters that steer the Go client only (timeouts come from the trigger). Any other
#: parameter is a system variable the driver SETs on each new connection, and so is it here.
_DRIVER_PARAMS = frozenset(
    {
        "allowAllFiles",
        "allowCleartextPasswords",
        "allowFallbackToPlaintext",
        "allowNativePasswords",
        "allowOldPasswords",
        "checkConnLiveness",
        "clientFoundRows",
        "collation",
        "columnsWithAlias",
        "compress",
        "connectionAttributes",
        "interpolateParams",
        "loc",
        "maxAllowedPacket",
        "multiStatements",
        "parseTime",
        "readTimeout",
        "rejectReadOnly",
        "serverPubKey",
        "timeTruncate",
        "timeout",
        "writeTimeout",
    }
)
_SYSTEM_VARIABLE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@]*")

#: Errors the server reports about a statement: the connection itself is still good.
_STATEMENT_ERRORS = (
    pymysql.err.ProgrammingError,
    pymysql.err.DataError,
    pymysql.err.IntegrityError,
    pymysql.err.NotSupportedError,
    pymysql.err.InternalError,
)


class DSNError(ValueError):
    """The connection string cannot be read. The message never quotes it: it holds a password."""


@dataclass(frozen=True)
class MySQLAddress:
    """Where and how to connect, whichever way it was given."""

    user: str = ""
    password: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unix_socket: str | None = None
    database: str | None = None
    tls: TlsMode = "false"
    charset: str | None = None
    system_variables: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _split_address(addr: str) -> tuple[str, int]:
    """Go's net.SplitHostPort, with the driver's rule that a missing port means 3306."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise DSNError("an IPv6 address in the connection string lacks its closing ']'")
        host, rest = addr[1:end], addr[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        host, port = addr.split(":")
    else:
        host, port = addr, ""
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DSNError("the port in the connection string's address is not a port number")
    return host, int(port)


def parse_go_dsn(dsn: str) -> MySQLAddress:
    """Read `[user[:password]@][net[(addr)]]/dbname[?param=value&...]` as go-sql-driver's ParseDSN does."""
    slash = dsn.rfind("/")
    if slash < 0:
        raise DSNError("the connection string has no '/' before the database name (user:pass@tcp(host:port)/db)")
    left, right = dsn[:slash], dsn[slash + 1 :]
    user = password = ""
    at = left.rfind("@")
    if at >= 0:
        user, _, password = left[:at].partition(":")
    netaddr = left[at + 1 :]
    net, paren, addr = netaddr.partition("(")
    if paren:
        if not addr.endswith(")"):
            raise DSNError("the address in the connection string must be written net(address), e.g. tcp(db:3306)")
        addr = addr[:-1]
    net = net or "tcp"
    dbname, _, query = right.partition("?")
    kwargs: dict[str, Any] = {"user": user, "password": password, "database": unquote(dbname) or None}
    if net in ("tcp", "tcp4", "tcp6"):
        kwargs["host"], kwargs["port"] = _split_address(addr) if addr else ("127.0.0.1", DEFAULT_PORT)
    elif net == "unix":
        kwargs["unix_socket"] = addr or "/tmp/mysql.sock"
    else:
        raise DSNError("the connection string's network must be tcp or unix")
    system_variables: list[tuple[str, str]] = []
    for pair in query.split("&") if query else []:
        key, eq, value = pair.partition("=")
        if not eq:
            continue
        if key == "tls":
            mode = value.lower()
            if mode not in ("true", "false", "skip-verify", "preferred"):
                raise DSNError(
                    "tls in the connection string must be true, false, skip-verify or preferred "
                    "(named TLS configurations exist only in Go programs)"
                )
            kwargs["tls"] = mode
        elif key == "charset":
            # The driver tries each listed charset in turn; the first is what it asks for.
            kwargs["charset"] = value.split(",")[0] or None
        elif key in _DRIVER_PARAMS:
            continue
        elif _SYSTEM_VARIABLE.fullmatch(key):
            system_variables.append((key, unquote(value)))
        else:
            raise DSNError("a parameter name in the connection string is not a valid system variable name")
    kwargs["system_variables"] = tuple(system_variables)
    return MySQLAddress(**kwargs)


def keda_db_name(connection_string: str) -> str:
    """KEDA's parseMySQLDbNameFromConnectionStr: what follows the last '/', parameters included."""
    return connection_string.split("/")[-1]


def _ssl_context(mode: TlsMode) -> ssl.SSLContext | None:
    if mode == "false":
        return None
    context = ssl.create_default_context()
    if mode in ("skip-verify", "preferred"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MySQLMetadata(ScalerMetadata):
    query: str = param(name="query", min_length=1)
    #: KEDA accepts any float; the HPA refuses any target that is not positive, so ebb says so up front.
    query_value: float = param(name="queryValue", gt=0, allow_inf_nan=False, description="> 0")
    activation_query_value: float = param(0.0, name="activationQueryValue", allow_inf_nan=False)
    connection_string: str | None = param(
        None,
        name="connectionString",
        sources=("authParams", "resolvedEnv"),
        secret=True,
        description="A go-sql-driver DSN: `user:pass@tcp(host:3306)/db?tls=true`",
    )
    username: str | None = param(None, name="username", sources=("triggerMetadata", "authParams", "resolvedEnv"))
    password: str | None = param(None, name="password", sources=("authParams", "resolvedEnv"), secret=True)
    host: str | None = param(
        None,
        name="host",
        sources=("triggerMetadata", "authParams"),
        description="`host` and `port` are required without `connectionString`",
    )
    port: int | None = param(
        None,
        name="port",
        sources=("triggerMetadata", "authParams"),
        gt=0,
        lt=65536,
        description="`host` and `port` are required without `connectionString`",
    )
    db_name: str | None = param(
        None,
        name="dbName",
        sources=("triggerMetadata", "authParams"),
        description="`host` and `port` are required without `connectionString`",
    )


class MySQLScaler(Scaler):
    """Runs `query` on a small pool of its own; the first column of the first row is the metric."""

    type_name = "mysql"
    Metadata = MySQLMetadata
    #: KEDA reads `metricName` and then replaces it with its own name: accepted, without effect.
    extra_parameters: ClassVar[frozenset[str]] = frozenset({"metricName"})

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, MySQLMetadata)
        self.meta: MySQLMetadata = meta
        self.address = self._address()
        if self.address.password:
            self.secrets = self.secrets | {self.address.password}
        self._pool: aiomysql.Pool | None = None
        self._lock = asyncio.Lock()
        self._limited: weakref.WeakSet[Any] = weakref.WeakSet()

    def _address(self) -> MySQLAddress:
        meta, where = self.meta, f"spec.triggers[{self.ctx.trigger_index}].metadata"
        if meta.connection_string:
            try:
                return parse_go_dsn(meta.connection_string)
            except DSNError as exc:
                raise SpecError(self.ctx.object_ref, f"{where}.connectionString", str(exc)) from None
        for key, value in (("host", meta.host), ("port", meta.port)):
            if not value:
                raise SpecError(
                    self.ctx.object_ref,
                    f"{where}.{key}",
                    f"no {key} given: give either connectionString (from a TriggerAuthentication or "
                    "connectionStringFromEnv) or host, port, username, password and dbName",
                )
        return MySQLAddress(
            user=meta.username or "",
            password=meta.password or "",
            host=meta.host or "",
            port=meta.port or DEFAULT_PORT,
            database=meta.db_name or None,
        )

    def metric_spec(self) -> MetricSpec:
        if self.meta.connection_string:
            db_name = keda_db_name(self.meta.connection_string)
        else:
            db_name = self.meta.db_name or ""
        return MetricSpec(
            name=metric_name(self.ctx, f"mysql-{db_name}"),
            target=self.meta.query_value,
            metric_type=self.ctx.metric_type,
        )

    async def _get_pool(self) -> aiomysql.Pool:
        async with self._lock:
            if self._pool is None:
                a = self.address
                init = ", ".join(f"{k}={v}" for k, v in a.system_variables)
                # minsize=0: nothing connects until the first poll, so a down server is a ScalerError then.
                # autocommit: each poll must see committed rows, not the snapshot of a transaction left open.
                self._pool = await aiomysql.create_pool(
                    minsize=0,
                    maxsize=POOL_SIZE,
                    pool_recycle=3600,
                    host=a.host,
                    port=a.port,
                    unix_socket=a.unix_socket,
                    user=a.user,
                    password=a.password,
                    db=a.database,
                    charset=a.charset or "",
                    ssl=_ssl_context(a.tls),
                    init_command=f"SET {init}" if init else None,
                    autocommit=True,
                    connect_timeout=self.timeout,
                    program_name="ebb",
                )
            return self._pool

    async def _acquire(self, pool: aiomysql.Pool) -> Any:
        try:
            conn = await pool.acquire()
        except (OSError, pymysql.err.MySQLError) as exc:
            raise self.error(f"cannot connect to MySQL: {_describe(exc)}") from None
        # PyMySQL silently stays in clear text when the server offers no TLS; go-sql-driver refuses.
        if self.address.tls in ("true", "skip-verify") and not getattr(conn, "_secure", False):
            conn.close()
            pool.release(conn)
            raise self.error(f"tls={self.address.tls} was asked for but the server does not offer TLS")
        if conn not in self._limited:
            try:
                await self._limit_statement_time(conn)
            except BaseException:
                conn.close()
                pool.release(conn)
                raise
            self._limited.add(conn)
        return conn

    async def _limit_statement_time(self, conn: Any) -> None:
        """Have the server stop a query at the trigger's timeout.

        The client gives up then and drops the connection, but neither MySQL nor MariaDB notices a
        vanished client until the query ends: without this, every slow poll leaves a query running.
        """
        server = conn.get_server_info() or ""
        if "MariaDB" in server:
            statement = f"SET SESSION max_statement_time = {self.timeout:.3f}"
        else:
            statement = f"SET SESSION max_execution_time = {max(1, round(self.timeout * 1000))}"
        # A server too old for the variable refuses it: the client-side timeout still holds then.
        too_old = (pymysql.err.OperationalError, pymysql.err.InternalError, pymysql.err.ProgrammingError)
        async with conn.cursor() as cur:
            with contextlib.suppress(*too_old):
                await cur.execute(statement)

    async def read(self) -> ScalerReading:
        pool = await self._get_pool()
        conn = await self._acquire(pool)
        healthy = False
        try:
            async with conn.cursor() as cur:
                try:
                    await cur.execute(self.meta.query)
                except pymysql.err.MySQLError as exc:
                    if isinstance(exc, _STATEMENT_ERRORS):
                        healthy = True
                    raise self.error(f"the query failed: {_describe(exc)}") from None
                row = await cur.fetchone()
            healthy = True
        finally:
            # A connection cut off mid-answer (timeout, network) is in an unknown state: never reuse it.
            if not healthy:
                conn.close()
            pool.release(conn)
        try:
            value = query_value(row)
        except QueryResultError as exc:
            raise self.error(str(exc)) from None
        return ScalerReading(value, activity(value, self.meta.activation_query_value))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pool.clear(), timeout=self.timeout)  # QUIT politely to the idle ones
        pool.close()
        try:
            await asyncio.wait_for(pool.wait_closed(), timeout=self.timeout)
        except TimeoutError:
            pool.terminate()


def _describe(exc: BaseException) -> str:
    """PyMySQL errors are (code, message) pairs; say them as a sentence."""
    args = exc.args
    if isinstance(exc, pymysql.err.MySQLError) and len(args) == 2 and isinstance(args[0], int):
        return f"{args[1]} (MySQL error {args[0]})"
    return f"{type(exc).__name__}: {exc}"
