"""The postgresql trigger against the real PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import asyncpg
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import build_scaler
from ebb.scalers.base import Scaler, TriggerContext
from ebb.scalers.postgresql import (
    POOL_SIZE,
    ConnectionStringError,
    connect_args,
    default_application_name,
    parse_connection_string,
)

PG = {"host": "127.0.0.1", "port": "5432", "userName": "postgres", "dbName": "test", "sslmode": "disable"}
URL = "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_ctx(**kw: Any) -> TriggerContext:
    return TriggerContext(namespace="pgtest", name=f"so-{uuid.uuid4().hex[:12]}", trigger_type="postgresql", **kw)


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test", ssl=False)
    yield conn
    await conn.close()


@pytest.fixture
async def table(admin: asyncpg.Connection[Any]) -> AsyncIterator[str]:
    name = f"ebb_pg_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE TABLE {name} (id int)")
    yield name
    await admin.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Scaler]]:
    made: list[Scaler] = []

    def _make(
        metadata: Mapping[str, str],
        *,
        auth: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        ctx: TriggerContext | None = None,
    ) -> Scaler:
        scaler = build_scaler("postgresql", metadata, ctx=ctx or unique_ctx(), auth_params=auth, resolved_env=env)
        made.append(scaler)
        return scaler

    yield _make
    for scaler in made:
        await scaler.close()


# --- parsing -----------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    scaler = build_scaler("postgresql", {"query": "SELECT 1", "targetQueryValue": "5", **PG})
    assert scaler.metric_spec().name == "s0-postgresql"
    assert scaler.metric_spec().target == 5.0
    assert scaler.metric_spec().metric_type == "AverageValue"
    assert scaler.meta.activation_target_query_value == 0.0  # type: ignore[attr-defined]

    ctx = TriggerContext(trigger_index=3, trigger_type="postgresql", metric_type="Value")
    scaler = build_scaler("postgresql", {"query": "SELECT 1", "targetQueryValue": "2.5", **PG}, ctx=ctx)
    assert scaler.metric_spec().name == "s3-postgresql"
    assert scaler.metric_spec().metric_type == "Value"
    assert scaler.metric_spec().target == 2.5


def test_fields_from_auth_params_win_over_metadata_and_password_is_masked() -> None:
    scaler = build_scaler(
        "postgresql",
        {"query": "SELECT 1", "targetQueryValue": "5", **PG, "host": "metadata-host"},
        auth_params={"host": "auth-host", "password": "hunter2-secret"},
    )
    described = scaler.describe()
    assert described["host"] == "auth-host"
    assert described["password"] == "***"
    assert "hunter2-secret" not in repr(described)


BAD_METADATA: list[tuple[str, dict[str, str], dict[str, str], dict[str, str], str]] = [
    # (case, metadata, auth params, resolved env, field path)
    ("missing query", {"targetQueryValue": "5", **PG}, {}, {}, "metadata.query"),
    ("missing target", {"query": "SELECT 1", **PG}, {}, {}, "metadata.targetQueryValue"),
    (
        "zero target",
        {"query": "SELECT 1", "targetQueryValue": "0", **PG},
        {},
        {},
        "metadata.targetQueryValue",
    ),
    (
        "negative target",
        {"query": "SELECT 1", "targetQueryValue": "-3", **PG},
        {},
        {},
        "metadata.targetQueryValue",
    ),
    (
        "text target",
        {"query": "SELECT 1", "targetQueryValue": "five", **PG},
        {},
        {},
        "metadata.targetQueryValue",
    ),
    (
        "nan target",
        {"query": "SELECT 1", "targetQueryValue": "nan", **PG},
        {},
        {},
        "metadata.targetQueryValue",
    ),
    (
        "text activation",
        {"query": "SELECT 1", "targetQueryValue": "5", "activationTargetQueryValue": "AA", **PG},
        {},
        {},
        "metadata.activationTargetQueryValue",
    ),
    ("no connection at all", {"query": "SELECT 1", "targetQueryValue": "5"}, {}, {}, "metadata.host"),
    (
        "fields without sslmode",
        {"query": "SELECT 1", "targetQueryValue": "5", **{k: v for k, v in PG.items() if k != "sslmode"}},
        {},
        {},
        "metadata.sslmode",
    ),
    (
        "bad port",
        {"query": "SELECT 1", "targetQueryValue": "5", **PG, "port": "54x"},
        {},
        {},
        "metadata.port",
    ),
    (
        "bad sslmode",
        {"query": "SELECT 1", "targetQueryValue": "5", **PG, "sslmode": "on"},
        {},
        {},
        "metadata.sslmode",
    ),
    (
        "connection in plain metadata",
        {"query": "SELECT 1", "targetQueryValue": "5", "connection": URL},
        {},
        {},
        "metadata.connection",
    ),
    (
        "password in plain metadata",
        {"query": "SELECT 1", "targetQueryValue": "5", **PG, "password": "pw"},
        {},
        {},
        "metadata.password",
    ),
    (
        "connectionFromEnv names a missing variable",
        {"query": "SELECT 1", "targetQueryValue": "5", "connectionFromEnv": "NOPE"},
        {},
        {},
        "metadata.connectionFromEnv",
    ),
    (
        "malformed keyword/value connection",
        {"query": "SELECT 1", "targetQueryValue": "5"},
        {"connection": "host=127.0.0.1 password=s3cr3t-pw dbname"},
        {},
        "metadata.connection",
    ),
    (
        "bad sslmode in connection",
        {"query": "SELECT 1", "targetQueryValue": "5"},
        {"connection": "postgresql://u:s3cr3t-pw@h/db?sslmode=sometimes"},
        {},
        "metadata.connection",
    ),
]


@pytest.mark.parametrize(
    ("metadata", "auth", "env", "path"), [c[1:] for c in BAD_METADATA], ids=[c[0] for c in BAD_METADATA]
)
def test_bad_metadata_names_the_parameter(
    metadata: dict[str, str], auth: dict[str, str], env: dict[str, str], path: str
) -> None:
    ctx = TriggerContext(namespace="ns", name="worker", trigger_index=1, trigger_type="postgresql")
    with pytest.raises(SpecError) as info:
        build_scaler("postgresql", metadata, ctx=ctx, auth_params=auth, resolved_env=env)
    err = info.value
    assert err.obj == "ScaledObject ns/worker"
    assert err.field == f"spec.triggers[1].{path}"
    assert "s3cr3t-pw" not in str(err)


def test_utilization_metric_type_is_refused() -> None:
    ctx = TriggerContext(trigger_type="postgresql", metric_type="Utilization")
    with pytest.raises(SpecError) as info:
        build_scaler("postgresql", {"query": "SELECT 1", "targetQueryValue": "5", **PG}, ctx=ctx)
    assert info.value.field == "spec.triggers[0].metricType"


PARSED = [
    (
        "url",
        "postgresql://u:p%40ss@db.example:6432/app",
        {"user": "u", "password": "p@ss", "host": "db.example", "port": "6432", "dbname": "app"},
    ),
    ("url without port", "postgres://db/app", {"host": "db", "dbname": "app"}),
    ("url multi-host", "postgresql://a:5432,b:5433/x", {"host": "a,b", "port": "5432,5433", "dbname": "x"}),
    ("url ipv6", "postgresql://[::1]:5432/x", {"host": "::1", "port": "5432", "dbname": "x"}),
    (
        "url socket in query",
        "postgresql:///x?host=/var/run/postgresql",
        {"host": "/var/run/postgresql", "dbname": "x"},
    ),
    (
        "url query overrides",
        "postgresql://a/x?dbname=y&sslmode=require",
        {"host": "a", "dbname": "y", "sslmode": "require"},
    ),
    (
        "url password with @",
        "postgresql://u:p@ss@h/d",
        {"user": "u", "password": "p@ss", "host": "h", "dbname": "d"},
    ),
    ("keywords", "host=h port=5 user=u dbname=d", {"host": "h", "port": "5", "user": "u", "dbname": "d"}),
    ("keywords spaced", " host = h   dbname=d ", {"host": "h", "dbname": "d"}),
    ("keywords quoted", r"password='it\'s a \\secret' user=u", {"password": "it's a \\secret", "user": "u"}),
    ("keywords empty quoted", "password='' user=u", {"password": "", "user": "u"}),
    ("keywords backslash unquoted", r"password=a\ b", {"password": "a b"}),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PARSED], ids=[c[0] for c in PARSED])
def test_connection_string_forms(text: str, expected: dict[str, str]) -> None:
    assert parse_connection_string(text) == expected


@pytest.mark.parametrize(
    "text",
    ["host=h dbname", "password='unterminated", "=value", "mysql://u@h/db", "host=h port=1,2,3"],
)
def test_unreadable_connection_strings(text: str) -> None:
    with pytest.raises(ConnectionStringError):
        connect_args(parse_connection_string(text), "app")


def test_client_only_keywords_are_not_sent_as_server_settings() -> None:
    args = connect_args(
        parse_connection_string(
            "host=h connect_timeout=10 keepalives=1 password=pw options='-c search_path=s1 -c statement_timeout=5s'"
        ),
        "default-app",
    )
    assert args.password == "pw"
    assert "pw" not in args.dsn.split("?", 1)[1].split("&")
    assert "connect_timeout" not in args.dsn and "keepalives" not in args.dsn
    assert "search_path=s1" in args.dsn and "statement_timeout=5s" in args.dsn
    assert "application_name=default-app" in args.dsn


# --- against the server --------------------------------------------------------------------------------


async def insert(admin: asyncpg.Connection[Any], table: str, n: int) -> None:
    await admin.executemany(f"INSERT INTO {table} VALUES ($1)", [(i,) for i in range(n)])


async def test_known_state_and_next_poll_sees_new_rows(
    admin: asyncpg.Connection[Any], table: str, make: Callable[..., Scaler]
) -> None:
    await insert(admin, table, 17)
    scaler = make({"query": f"SELECT count(*) FROM {table}", "targetQueryValue": "5", **PG})
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 17.0
    assert reading.active
    assert scaler.metric_spec().target == 5.0
    await insert(admin, table, 1)
    assert (await scaler.get_metric_and_activity()).value == 18.0


@pytest.mark.parametrize(("activation", "active"), [("17", False), ("16.9", True), ("18", False), ("-1", True)])
async def test_activation_is_strictly_above_threshold(
    admin: asyncpg.Connection[Any], table: str, make: Callable[..., Scaler], activation: str, active: bool
) -> None:
    await insert(admin, table, 17)
    scaler = make(
        {
            "query": f"SELECT count(*) FROM {table}",
            "targetQueryValue": "5",
            "activationTargetQueryValue": activation,
            **PG,
        }
    )
    reading = await scaler.get_metric_and_activity()
    assert (reading.value, reading.active) == (17.0, active)


async def test_zero_rows_counted_is_inactive_with_default_activation(table: str, make: Callable[..., Scaler]) -> None:
    scaler = make({"query": f"SELECT count(*) FROM {table}", "targetQueryValue": "5", **PG})
    reading = await scaler.get_metric_and_activity()
    assert (reading.value, reading.active) == (0.0, False)


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT 2.50::numeric", 2.5),
        ("SELECT 12345678901::bigint", 12345678901.0),
        ("SELECT '12.5'::text", 12.5),
        ("SELECT 0.25::float4", 0.25),
        ("SELECT x FROM (VALUES (3), (9)) v(x) ORDER BY x", 3.0),
    ],
)
async def test_numeric_results(make: Callable[..., Scaler], query: str, value: float) -> None:
    scaler = make({"query": query, "targetQueryValue": "5", **PG})
    assert (await scaler.get_metric_and_activity()).value == value


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT NULL::int", "returned NULL"),
        ("SELECT 1 WHERE false", "returned no rows"),
        ("SELECT 'lots'::text", "returned the text 'lots', which is not a number"),
        ("SELECT 1, 2", "returned 2 columns"),
        ("SELECT true", "returned a boolean"),
        ("SELECT now()", "returned a timestamp"),
        ("SELECT 'NaN'::numeric", "not a finite number"),
        ("SELECT count(*) FROM no_such_table_ebb", "the query failed: UndefinedTableError"),
    ],
)
async def test_non_numbers_are_scaler_errors(make: Callable[..., Scaler], query: str, message: str) -> None:
    ctx = TriggerContext(namespace="ns", name="q", trigger_index=2, trigger_type="postgresql")
    scaler = make({"query": query, "targetQueryValue": "5", **PG}, ctx=ctx)
    with pytest.raises(ScalerError) as info:
        await scaler.get_metric_and_activity()
    assert message in str(info.value)
    assert info.value.obj == "ScaledObject ns/q"
    assert info.value.trigger == "triggers[2] (postgresql)"


@pytest.mark.parametrize(
    ("how", "value", "over_socket"),
    [
        ("url", URL, 0),
        ("keywords", "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable", 0),
        ("unix socket", "host=/var/run/postgresql user=postgres dbname=test", 1),
        ("url to a socket", "postgresql://postgres@%2Fvar%2Frun%2Fpostgresql/test", 1),
        (
            "failover past a closed port",
            "host=127.0.0.1,127.0.0.1 port={closed},5432 user=postgres dbname=test",
            0,
        ),
    ],
)
async def test_connection_string_forms_reach_the_server(
    make: Callable[..., Scaler], how: str, value: str, over_socket: int
) -> None:
    connection = value.format(closed=closed_port())
    # The scaler's own session says whether it came over a Unix socket (no client address).
    query = "SELECT (client_addr IS NULL)::int FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    scaler = make(
        {"query": query, "targetQueryValue": "5", "connectionFromEnv": "PG_CONN"},
        env={"PG_CONN": connection},
    )
    assert (await scaler.get_metric_and_activity()).value == over_socket


async def test_connection_wins_over_fields(make: Callable[..., Scaler]) -> None:
    # KEDA builds a connection from the fields only when no connection string is given.
    scaler = make(
        {"query": "SELECT 7", "targetQueryValue": "5", **PG, "port": str(closed_port())},
        auth={"connection": URL},
    )
    assert (await scaler.get_metric_and_activity()).value == 7.0


async def test_sslmode_is_honoured(make: Callable[..., Scaler]) -> None:
    query = "SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl"
    plain = make({"query": query, "targetQueryValue": "5", **PG, "sslmode": "disable"})
    assert (await plain.get_metric_and_activity()).value == 0.0
    # This server has no TLS: `require` must refuse rather than fall back to clear text.
    required = make({"query": query, "targetQueryValue": "5", **PG, "sslmode": "require"})
    with pytest.raises(ScalerError, match=r"(?i)ssl"):
        await required.get_metric_and_activity()


async def test_refused_login_hides_the_password(make: Callable[..., Scaler]) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    by_fields = make(
        {"query": "SELECT 1", "targetQueryValue": "5", **PG, "userName": role}, auth={"password": password}
    )
    with pytest.raises(ScalerError) as info:
        await by_fields.get_metric_and_activity()
    assert role in str(info.value) and "cannot connect" in str(info.value)
    assert password not in str(info.value)

    connection = f"postgresql://{role}:{password}@127.0.0.1:5432/test?sslmode=disable"
    by_url = make({"query": "SELECT 1", "targetQueryValue": "5"}, auth={"connection": connection})
    with pytest.raises(ScalerError) as info:
        await by_url.get_metric_and_activity()
    assert password not in str(info.value)
    assert connection not in str(info.value)


async def test_missing_database_is_a_scaler_error(make: Callable[..., Scaler]) -> None:
    db = f"nodb_{uuid.uuid4().hex[:8]}"
    scaler = make({"query": "SELECT 1", "targetQueryValue": "5", **PG, "dbName": db})
    with pytest.raises(ScalerError, match=db):
        await scaler.get_metric_and_activity()


async def test_server_down_is_a_scaler_error(make: Callable[..., Scaler]) -> None:
    scaler = make({"query": "SELECT 1", "targetQueryValue": "5", **PG, "port": str(closed_port())})
    with pytest.raises(ScalerError, match="cannot connect to PostgreSQL"):
        await scaler.get_metric_and_activity()


async def test_recovers_once_the_table_exists(admin: asyncpg.Connection[Any], make: Callable[..., Scaler]) -> None:
    name = f"ebb_pg_{uuid.uuid4().hex[:12]}"
    scaler = make({"query": f"SELECT count(*) FROM {name}", "targetQueryValue": "5", **PG})
    with pytest.raises(ScalerError, match="does not exist"):
        await scaler.get_metric_and_activity()
    await admin.execute(f"CREATE TABLE {name} (id int)")
    try:
        await insert(admin, name, 3)
        assert (await scaler.get_metric_and_activity()).value == 3.0
    finally:
        await admin.execute(f"DROP TABLE {name}")


async def count_connections(admin: asyncpg.Connection[Any], app: str) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app))


async def wait_for_count(admin: asyncpg.Connection[Any], app: str, expected: int) -> int:
    # A backend leaves pg_stat_activity a moment after its client hangs up.
    for _ in range(100):
        n = await count_connections(admin, app)
        if n == expected:
            return n
        await asyncio.sleep(0.05)
    return n


async def test_a_slow_query_is_stopped_and_the_scaler_recovers(
    admin: asyncpg.Connection[Any], table: str, make: Callable[..., Scaler]
) -> None:
    await insert(admin, table, 1)
    # Slow (an hour) while the table holds a row, quick once it is empty.
    query = f"SELECT 4 FROM pg_sleep((SELECT count(*) FROM {table}) * 3600)"
    ctx = unique_ctx(timeout=0.3)
    scaler = make({"query": query, "targetQueryValue": "5", **PG}, ctx=ctx)
    with pytest.raises(ScalerError, match=r"no answer within"):
        await scaler.get_metric_and_activity()
    await admin.execute(f"DELETE FROM {table}")
    assert (await scaler.get_metric_and_activity()).value == 4.0
    await scaler.close()
    # Had the server kept running the abandoned query, its session would stay for the hour.
    assert await wait_for_count(admin, default_application_name(ctx), 0) == 0


async def test_polls_reuse_one_session(make: Callable[..., Scaler]) -> None:
    scaler = make({"query": "SELECT pg_backend_pid()", "targetQueryValue": "5", **PG})
    pids = {(await scaler.get_metric_and_activity()).value for _ in range(5)}
    assert len(pids) == 1


async def test_no_connection_leak_over_many_polls(
    admin: asyncpg.Connection[Any], table: str, make: Callable[..., Scaler]
) -> None:
    ctx = unique_ctx()
    app = default_application_name(ctx)
    scaler = make({"query": f"SELECT count(*) FROM {table}", "targetQueryValue": "5", **PG}, ctx=ctx)
    for _ in range(1000):
        await scaler.get_metric_and_activity()
    open_now = await count_connections(admin, app)
    assert 1 <= open_now <= POOL_SIZE
    await scaler.close()
    assert await wait_for_count(admin, app, 0) == 0
