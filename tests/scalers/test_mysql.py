"""The mysql trigger against the real MariaDB on 127.0.0.1:3306 (root, empty password, database `test`)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiomysql
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import build_scaler
from ebb.scalers.base import Scaler, TriggerContext
from ebb.scalers.mysql import POOL_SIZE, DSNError, MySQLAddress, parse_go_dsn

MY = {"host": "127.0.0.1", "port": "3306", "username": "root", "dbName": "test"}
DSN = "root:@tcp(127.0.0.1:3306)/test"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique_ctx(**kw: Any) -> TriggerContext:
    return TriggerContext(namespace="mytest", name=f"so-{uuid.uuid4().hex[:12]}", trigger_type="mysql", **kw)


Admin = Callable[..., Awaitable[Any]]


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="", db="test", autocommit=True)

    async def run(sql: str, *args: Any) -> Any:
        async with conn.cursor() as cur:
            await cur.execute(sql, args or None)
            return await cur.fetchall()

    yield run
    conn.close()


@pytest.fixture
async def table(admin: Admin) -> AsyncIterator[str]:
    name = f"ebb_my_{uuid.uuid4().hex[:12]}"
    await admin(f"CREATE TABLE {name} (id int)")
    yield name
    await admin(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
async def user(admin: Admin) -> AsyncIterator[tuple[str, str]]:
    """A login of its own (name, password), allowed to read `test`."""
    name, password = f"ebb_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
    await admin(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'")
    await admin(f"GRANT SELECT ON test.* TO '{name}'@'%'")
    await admin(f"GRANT SELECT ON test.* TO '{name}'@'localhost'")
    yield name, password
    await admin(f"DROP USER IF EXISTS '{name}'@'%', '{name}'@'localhost'")


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
        scaler = build_scaler("mysql", metadata, ctx=ctx or unique_ctx(), auth_params=auth, resolved_env=env)
        made.append(scaler)
        return scaler

    yield _make
    for scaler in made:
        await scaler.close()


# --- parsing -----------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_names() -> None:
    scaler = build_scaler("mysql", {"query": "SELECT 1", "queryValue": "12", **MY})
    assert scaler.metric_spec().name == "s0-mysql-test"
    assert scaler.metric_spec().target == 12.0
    assert scaler.metric_spec().metric_type == "AverageValue"
    assert scaler.meta.activation_query_value == 0.0  # type: ignore[attr-defined]

    # KEDA's own examples: the database name comes from what follows the last '/' of the connection string.
    ctx = TriggerContext(trigger_index=0, trigger_type="mysql", metric_type="Value")
    scaler = build_scaler(
        "mysql",
        {"query": "q", "queryValue": "12", "connectionStringFromEnv": "MYSQL_CONN_STR"},
        ctx=ctx,
        resolved_env={"MYSQL_CONN_STR": "user@tcp(my.mysql.dev:3306)/stats_db"},
    )
    assert scaler.metric_spec().name == "s0-mysql-stats_db"
    assert scaler.metric_spec().metric_type == "Value"
    ctx = TriggerContext(trigger_index=1, trigger_type="mysql")
    scaler = build_scaler(
        "mysql",
        {"query": "q", "queryValue": "12", **MY, "host": "test_host", "dbName": "test_dbname"},
        ctx=ctx,
    )
    assert scaler.metric_spec().name == "s1-mysql-test_dbname"


def test_username_from_env_and_auth_params() -> None:
    scaler = build_scaler(
        "mysql",
        {
            "query": "q",
            "queryValue": "12",
            "host": "h",
            "port": "3306",
            "usernameFromEnv": "U",
            "passwordFromEnv": "P",
        },
        resolved_env={"U": "env_user", "P": "env-secret"},
    )
    assert scaler.describe()["username"] == "env_user"
    assert scaler.describe()["password"] == "***"
    scaler = build_scaler(
        "mysql",
        {"query": "q", "queryValue": "12"},
        auth_params={"host": "h", "port": "3306", "username": "auth_user", "password": "pw", "dbName": "d"},
    )
    assert scaler.describe()["username"] == "auth_user"
    assert scaler.metric_spec().name == "s0-mysql-d"


BAD_METADATA: list[tuple[str, dict[str, str], dict[str, str], dict[str, str], str]] = [
    # (case, metadata, auth params, resolved env, field path)
    ("missing query", {"queryValue": "5", **MY}, {}, {}, "metadata.query"),
    ("missing queryValue", {"query": "SELECT 1", **MY}, {}, {}, "metadata.queryValue"),
    ("negative queryValue", {"query": "SELECT 1", "queryValue": "-2", **MY}, {}, {}, "metadata.queryValue"),
    ("zero queryValue", {"query": "SELECT 1", "queryValue": "0", **MY}, {}, {}, "metadata.queryValue"),
    ("text queryValue", {"query": "SELECT 1", "queryValue": "ten", **MY}, {}, {}, "metadata.queryValue"),
    (
        "text activation",
        {"query": "SELECT 1", "queryValue": "5", "activationQueryValue": "AA", **MY},
        {},
        {},
        "metadata.activationQueryValue",
    ),
    ("no connection at all", {"query": "SELECT 1", "queryValue": "5"}, {}, {}, "metadata.host"),
    ("no port", {"query": "SELECT 1", "queryValue": "5", "host": "h"}, {}, {}, "metadata.port"),
    ("text port", {"query": "SELECT 1", "queryValue": "5", **MY, "port": "tcp"}, {}, {}, "metadata.port"),
    (
        "connectionString in plain metadata",
        {"query": "SELECT 1", "queryValue": "5", "connectionString": DSN},
        {},
        {},
        "metadata.connectionString",
    ),
    (
        "password in plain metadata",
        {"query": "SELECT 1", "queryValue": "5", **MY, "password": "s3cr3t-pw"},
        {},
        {},
        "metadata.password",
    ),
    (
        "connectionStringFromEnv names a missing variable",
        {"query": "SELECT 1", "queryValue": "5", "connectionStringFromEnv": "NOPE"},
        {},
        {},
        "metadata.connectionStringFromEnv",
    ),
    (
        "dsn without slash",
        {"query": "SELECT 1", "queryValue": "5"},
        {"connectionString": "root:s3cr3t-pw@tcp(127.0.0.1:3306)"},
        {},
        "metadata.connectionString",
    ),
    (
        "dsn with bad address",
        {"query": "SELECT 1", "queryValue": "5"},
        {"connectionString": "root:s3cr3t-pw@tcp(127.0.0.1:3306/test"},
        {},
        "metadata.connectionString",
    ),
    (
        "dsn with named tls config",
        {"query": "SELECT 1", "queryValue": "5"},
        {"connectionString": "root:s3cr3t-pw@tcp(h)/test?tls=custom"},
        {},
        "metadata.connectionString",
    ),
]


@pytest.mark.parametrize(
    ("metadata", "auth", "env", "path"), [c[1:] for c in BAD_METADATA], ids=[c[0] for c in BAD_METADATA]
)
def test_bad_metadata_names_the_parameter(
    metadata: dict[str, str], auth: dict[str, str], env: dict[str, str], path: str
) -> None:
    ctx = TriggerContext(namespace="ns", name="worker", trigger_index=2, trigger_type="mysql")
    with pytest.raises(SpecError) as info:
        build_scaler("mysql", metadata, ctx=ctx, auth_params=auth, resolved_env=env)
    err = info.value
    assert err.obj == "ScaledObject ns/worker"
    assert err.field == f"spec.triggers[2].{path}"
    assert "s3cr3t-pw" not in str(err)


def test_utilization_metric_type_is_refused() -> None:
    ctx = TriggerContext(trigger_type="mysql", metric_type="Utilization")
    with pytest.raises(SpecError) as info:
        build_scaler("mysql", {"query": "SELECT 1", "queryValue": "5", **MY}, ctx=ctx)
    assert info.value.field == "spec.triggers[0].metricType"


DSNS = [
    (
        "full",
        "u:p@tcp(db:3307)/app",
        MySQLAddress(user="u", password="p", host="db", port=3307, database="app"),
    ),
    ("default port", "u@tcp(db)/app", MySQLAddress(user="u", host="db", database="app")),
    ("all defaults", "/", MySQLAddress()),
    (
        "password with : and @",
        "u:a:b@c@tcp(h:1)/d",
        MySQLAddress(user="u", password="a:b@c", host="h", port=1, database="d"),
    ),
    ("ipv6", "u@tcp([::1]:3306)/d", MySQLAddress(user="u", host="::1", database="d")),
    (
        "unix",
        "u@unix(/run/mysqld/mysqld.sock)/d",
        MySQLAddress(user="u", unix_socket="/run/mysqld/mysqld.sock", database="d"),
    ),
    ("escaped db", "u@tcp(h)/my%2Fdb", MySQLAddress(user="u", host="h", database="my/db")),
    (
        "params",
        "u@tcp(h)/d?parseTime=true&tls=skip-verify&charset=utf8mb4,utf8&sql_mode=%27ANSI%27",
        MySQLAddress(
            user="u",
            host="h",
            database="d",
            tls="skip-verify",
            charset="utf8mb4",
            system_variables=(("sql_mode", "'ANSI'"),),
        ),
    ),
]


@pytest.mark.parametrize(("dsn", "expected"), [c[1:] for c in DSNS], ids=[c[0] for c in DSNS])
def test_go_dsn_parsing(dsn: str, expected: MySQLAddress) -> None:
    assert parse_go_dsn(dsn) == expected


@pytest.mark.parametrize("dsn", ["u@tcp(h)", "u@tcp(h/d", "u@pipe(x)/d", "u@tcp(h:http)/d", "u@tcp(h)/d?bad-name=1"])
def test_unreadable_dsns(dsn: str) -> None:
    with pytest.raises(DSNError):
        parse_go_dsn(dsn)


# --- against the server --------------------------------------------------------------------------------


async def insert(admin: Admin, table: str, n: int) -> None:
    await admin(f"INSERT INTO {table} VALUES " + ", ".join(f"({i})" for i in range(n)))


async def test_known_state_and_next_poll_sees_new_rows(admin: Admin, table: str, make: Callable[..., Scaler]) -> None:
    await insert(admin, table, 17)
    scaler = make({"query": f"SELECT count(*) FROM {table}", "queryValue": "5", **MY})
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 17.0
    assert reading.active
    assert scaler.metric_spec().target == 5.0
    # A reused connection must not keep reading an old snapshot.
    await insert(admin, table, 1)
    assert (await scaler.get_metric_and_activity()).value == 18.0


@pytest.mark.parametrize(("activation", "active"), [("17", False), ("16.5", True), ("20", False), ("-1", True)])
async def test_activation_is_strictly_above_threshold(
    admin: Admin, table: str, make: Callable[..., Scaler], activation: str, active: bool
) -> None:
    await insert(admin, table, 17)
    scaler = make(
        {
            "query": f"SELECT count(*) FROM {table}",
            "queryValue": "5",
            "activationQueryValue": activation,
            **MY,
        }
    )
    reading = await scaler.get_metric_and_activity()
    assert (reading.value, reading.active) == (17.0, active)


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ("SELECT CAST(2.50 AS DECIMAL(10,2))", 2.5),
        ("SELECT 12345678901", 12345678901.0),
        ("SELECT '12.5'", 12.5),
        ("SELECT CAST('7' AS BINARY)", 7.0),
        ("SELECT 0.25e0", 0.25),
        ("SELECT x FROM (SELECT 3 AS x UNION ALL SELECT 9) v ORDER BY x", 3.0),
    ],
)
async def test_numeric_results(make: Callable[..., Scaler], query: str, value: float) -> None:
    scaler = make({"query": query, "queryValue": "5", **MY})
    assert (await scaler.get_metric_and_activity()).value == value


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT NULL", "returned NULL"),
        ("SELECT 1 FROM DUAL WHERE 1 = 0", "returned no rows"),
        ("SELECT 'lots'", "returned the text 'lots', which is not a number"),
        ("SELECT 1, 2", "returned 2 columns"),
        ("SELECT NOW()", "returned a timestamp"),
        (
            "SELECT count(*) FROM no_such_table_ebb",
            "the query failed: Table 'test.no_such_table_ebb' doesn't exist",
        ),
        ("SELEC 1", "the query failed"),
    ],
)
async def test_non_numbers_are_scaler_errors(make: Callable[..., Scaler], query: str, message: str) -> None:
    ctx = TriggerContext(namespace="ns", name="q", trigger_index=1, trigger_type="mysql")
    scaler = make({"query": query, "queryValue": "5", **MY}, ctx=ctx)
    with pytest.raises(ScalerError) as info:
        await scaler.get_metric_and_activity()
    assert message in str(info.value)
    assert info.value.obj == "ScaledObject ns/q"
    assert info.value.trigger == "triggers[1] (mysql)"


@pytest.mark.parametrize(
    ("dsn", "over_socket"),
    [
        (DSN, 0),
        ("root@tcp(127.0.0.1)/test", 0),
        ("root@unix(/run/mysqld/mysqld.sock)/test", 1),
        ("root@tcp(127.0.0.1:3306)/test?parseTime=true&charset=utf8mb4&timeout=5s", 0),
    ],
)
async def test_connection_string_forms_reach_the_server(
    make: Callable[..., Scaler], dsn: str, over_socket: int
) -> None:
    # The scaler's own session says how it came: a socket client's host has no port.
    query = "SELECT HOST = 'localhost' FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
    scaler = make({"query": query, "queryValue": "5", "connectionStringFromEnv": "DSN"}, env={"DSN": dsn})
    assert (await scaler.get_metric_and_activity()).value == over_socket


async def test_dsn_system_variables_are_set_on_each_connection(make: Callable[..., Scaler]) -> None:
    scaler = make(
        {"query": "SELECT @@session.sql_select_limit", "queryValue": "5"},
        auth={"connectionString": DSN + "?sql_select_limit=42"},
    )
    assert (await scaler.get_metric_and_activity()).value == 42.0


async def test_connection_string_wins_over_fields(make: Callable[..., Scaler]) -> None:
    scaler = make(
        {"query": "SELECT 7", "queryValue": "5", **MY, "port": str(closed_port())},
        auth={"connectionString": DSN},
    )
    assert (await scaler.get_metric_and_activity()).value == 7.0


async def test_tls_true_refuses_a_server_without_tls(make: Callable[..., Scaler]) -> None:
    # This MariaDB has TLS disabled: go-sql-driver refuses tls=true there instead of going on in clear text.
    scaler = make({"query": "SELECT 1", "queryValue": "5"}, auth={"connectionString": DSN + "?tls=true"})
    with pytest.raises(ScalerError, match="does not offer TLS"):
        await scaler.get_metric_and_activity()
    preferred = make({"query": "SELECT 1", "queryValue": "5"}, auth={"connectionString": DSN + "?tls=preferred"})
    assert (await preferred.get_metric_and_activity()).value == 1.0


async def test_wrong_password_hides_the_password(make: Callable[..., Scaler], user: tuple[str, str]) -> None:
    name, right = user
    wrong = f"wrong-{uuid.uuid4().hex}"
    by_fields = make({"query": "SELECT 1", "queryValue": "5", **MY, "username": name}, auth={"password": wrong})
    with pytest.raises(ScalerError) as info:
        await by_fields.get_metric_and_activity()
    assert "Access denied" in str(info.value) and name in str(info.value)
    assert wrong not in str(info.value) and right not in str(info.value)

    dsn = f"{name}:{wrong}@tcp(127.0.0.1:3306)/test"
    by_dsn = make({"query": "SELECT 1", "queryValue": "5"}, auth={"connectionString": dsn})
    with pytest.raises(ScalerError) as info:
        await by_dsn.get_metric_and_activity()
    assert wrong not in str(info.value) and dsn not in str(info.value)

    good = make({"query": "SELECT 3", "queryValue": "5", **MY, "username": name}, auth={"password": right})
    assert (await good.get_metric_and_activity()).value == 3.0


async def test_server_down_is_a_scaler_error(make: Callable[..., Scaler]) -> None:
    scaler = make({"query": "SELECT 1", "queryValue": "5", **MY, "port": str(closed_port())})
    with pytest.raises(ScalerError, match="cannot connect to MySQL"):
        await scaler.get_metric_and_activity()


async def count_connections(admin: Admin, user: str) -> int:
    rows = await admin("SELECT count(*) FROM information_schema.PROCESSLIST WHERE USER = %s", user)
    return int(rows[0][0])


async def wait_for_count(admin: Admin, user: str, expected: int) -> int:
    # The server drops a session from the process list a moment after its client hangs up.
    for _ in range(100):
        n = await count_connections(admin, user)
        if n == expected:
            return n
        await asyncio.sleep(0.05)
    return n


async def test_a_slow_query_is_stopped_on_the_server_and_the_scaler_recovers(
    admin: Admin, table: str, make: Callable[..., Scaler], user: tuple[str, str]
) -> None:
    name, password = user
    await insert(admin, table, 1)
    # Slow (an hour) while the table holds a row, quick once it is empty.
    query = f"SELECT 4 + SLEEP((SELECT count(*) FROM {table}) * 3600)"
    ctx = unique_ctx(timeout=0.3)
    scaler = make({"query": query, "queryValue": "5", **MY, "username": name}, auth={"password": password}, ctx=ctx)
    with pytest.raises(ScalerError, match=r"no answer within|max_statement_time"):
        await scaler.get_metric_and_activity()
    await admin(f"DELETE FROM {table}")
    assert (await scaler.get_metric_and_activity()).value == 4.0
    await scaler.close()
    # Had the server kept running the abandoned query, its session would stay for the hour.
    assert await wait_for_count(admin, name, 0) == 0


async def test_polls_reuse_one_session(make: Callable[..., Scaler]) -> None:
    scaler = make({"query": "SELECT CONNECTION_ID()", "queryValue": "5", **MY})
    ids = {(await scaler.get_metric_and_activity()).value for _ in range(5)}
    assert len(ids) == 1


async def test_no_connection_leak_over_many_polls(
    admin: Admin, table: str, make: Callable[..., Scaler], user: tuple[str, str]
) -> None:
    name, password = user
    scaler = make(
        {"query": f"SELECT count(*) FROM {table}", "queryValue": "5", **MY, "username": name},
        auth={"password": password},
    )
    for _ in range(1000):
        await scaler.get_metric_and_activity()
    open_now = await count_connections(admin, name)
    assert 1 <= open_now <= POOL_SIZE
    await scaler.close()
    assert await wait_for_count(admin, name, 0) == 0
