"""The `redis` (list) trigger against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ebb.errors import PushUnavailable, ScalerError, SpecError
from ebb.scalers import MetricSpec
from ebb.scalers._redis_common import PUSH_HUBS, SHARED_MAX_CONNECTIONS, SHARED_POOLS
from tests.scalers._redis_support import (
    ADDRESS,
    NOTIFY_CONFIG,
    Notifications,
    ScalerFactory,
    admin_client,
    connections_named,
    context,
    eventually,
    free_port,
    notify_config,
    subscribed,
    unique,
)


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    async with admin_client() as client:
        yield client


@pytest.fixture
async def key(admin: aioredis.Redis) -> AsyncIterator[str]:
    name = unique("list")
    yield name
    await admin.delete(name)


@pytest.fixture
async def make() -> AsyncIterator[ScalerFactory]:
    factory = ScalerFactory()
    yield factory
    await factory.close_all()


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults(make: ScalerFactory) -> None:
    scaler = make("redis", {"address": ADDRESS, "listName": "jobs"})
    described = scaler.describe()
    assert described["listLength"] == 5
    assert described["activationListLength"] == 0
    assert described["databaseIndex"] == 0
    assert described["unsafeSsl"] is False
    assert described["enableKeyspaceNotifications"] is False
    assert scaler.activation_threshold() == 0
    assert scaler.supports_push
    assert scaler.metric_spec() == MetricSpec(name="s0-redis-jobs", target=5.0, metric_type="AverageValue")


def test_metric_name_is_indexed_and_normalised(make: ScalerFactory) -> None:
    scaler = make(
        "redis",
        {"address": ADDRESS, "listName": "app/jobs.high:v1", "listLength": "12"},
        ctx=context(trigger_index=3),
        metric_type="Value",
    )
    assert scaler.metric_spec() == MetricSpec(name="s3-redis-app-jobs-high-v1", target=12.0, metric_type="Value")


@pytest.mark.parametrize(
    ("metadata", "auth_params", "resolved_env", "field", "words"),
    [
        ({"address": ADDRESS}, {}, {}, "metadata.listName", ["required"]),
        ({"listName": "q"}, {}, {}, "metadata.address", ["address", "host", "port"]),
        ({"listName": "q", "host": "127.0.0.1"}, {}, {}, "metadata.port", ["port"]),
        ({"listName": "q", "port": "6379"}, {}, {}, "metadata.host", ["host"]),
        ({"listName": "q", "host": "a,b", "port": "1"}, {}, {}, "metadata.port", ["one port per host"]),
        ({"listName": "q", "address": "redis-without-port"}, {}, {}, "metadata.address", ["host:port"]),
        ({"listName": "q", "address": "h:99999"}, {}, {}, "metadata.address", ["65535"]),
        (
            {"listName": "q", "address": ADDRESS, "listLength": "0"},
            {},
            {},
            "metadata.listLength",
            ["greater"],
        ),
        (
            {"listName": "q", "address": ADDRESS, "listLength": "many"},
            {},
            {},
            "metadata.listLength",
            ["many"],
        ),
        ({"listName": "q", "address": ADDRESS, "databaseIndex": "-1"}, {}, {}, "metadata.databaseIndex", []),
        ({"listName": "q", "address": ADDRESS, "enableTLS": "perhaps"}, {}, {}, "metadata.enableTLS", []),
        (
            {"listName": "q", "address": ADDRESS, "enableTLS": "true"},
            {"tls": "enable"},
            {},
            "enableTLS",
            ["both"],
        ),
        ({"listName": "q", "address": ADDRESS}, {"tls": "maybe"}, {}, "metadata.tls", []),
        ({"listName": "q", "address": ADDRESS, "clientName": "has space"}, {}, {}, "clientName", []),
        ({"listName": "q", "addressFromEnv": "REDIS_ADDR"}, {}, {}, "addressFromEnv", ["REDIS_ADDR"]),
    ],
)
def test_bad_metadata_is_a_spec_error_naming_the_parameter(
    make: ScalerFactory,
    metadata: dict[str, str],
    auth_params: dict[str, str],
    resolved_env: dict[str, str],
    field: str,
    words: list[str],
) -> None:
    with pytest.raises(SpecError) as caught:
        make("redis", metadata, auth_params=auth_params, resolved_env=resolved_env)
    err = caught.value
    assert err.obj.startswith("ScaledObject default/")
    assert err.field.startswith("spec.triggers[0].")
    assert err.field.endswith(field)
    for word in words:
        assert word in err.message


def test_utilization_metric_type_is_refused(make: ScalerFactory) -> None:
    with pytest.raises(SpecError) as caught:
        make("redis", {"address": ADDRESS, "listName": "q"}, metric_type="Utilization")
    assert caught.value.field == "spec.triggers[0].metricType"


def test_password_in_plain_metadata_is_refused_without_echoing_it(make: ScalerFactory) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with pytest.raises(SpecError) as caught:
        make("redis", {"address": ADDRESS, "listName": "q", "password": password})
    assert caught.value.field == "spec.triggers[0].metadata.password"
    assert password not in str(caught.value)


def test_secrets_are_masked_when_described(make: ScalerFactory) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    scaler = make("redis", {"address": ADDRESS, "listName": "q"}, auth_params={"password": password})
    assert password not in repr(scaler.describe())
    assert scaler.describe()["password"] == "***"


# --- reading ---------------------------------------------------------------------------------------


async def test_value_is_the_list_length_and_target_the_list_length_param(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    await admin.rpush(key, *range(17))
    scaler = make("redis", {"address": ADDRESS, "listName": key, "listLength": "5"})
    reading = await scaler.get_metric_and_activity()
    spec = scaler.metric_spec()
    assert reading.value == 17
    assert reading.active
    assert spec.target == 5
    assert math.ceil(reading.value / spec.target) == 4  # replicas an AverageValue target asks for


async def test_missing_key_counts_zero_and_is_inactive(make: ScalerFactory, key: str) -> None:
    reading = await make("redis", {"address": ADDRESS, "listName": key}).get_metric_and_activity()
    assert (reading.value, reading.active) == (0, False)


@pytest.mark.parametrize(
    ("items", "activation", "active"),
    [(0, "0", False), (1, "0", True), (3, "3", False), (4, "3", True), (10, "10", False), (11, "10", True)],
)
async def test_activation_is_strictly_above_the_threshold(
    make: ScalerFactory, admin: aioredis.Redis, key: str, items: int, activation: str, active: bool
) -> None:
    if items:
        await admin.rpush(key, *range(items))
    scaler = make("redis", {"address": ADDRESS, "listName": key, "activationListLength": activation})
    reading = await scaler.get_metric_and_activity()
    assert reading.value == items
    assert reading.active is active


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        (lambda c, k: c.sadd(k, "a", "b", "c"), 3),
        (lambda c, k: c.zadd(k, {"a": 1, "b": 2}), 2),
        (lambda c, k: c.hset(k, mapping={"a": 1, "b": 2, "c": 3, "d": 4}), 4),
    ],
    ids=["set", "zset", "hash"],
)
async def test_other_collections_count_like_keda(
    make: ScalerFactory, admin: aioredis.Redis, key: str, fill: object, expected: int
) -> None:
    await fill(admin, key)  # type: ignore[operator]
    reading = await make("redis", {"address": ADDRESS, "listName": key}).get_metric_and_activity()
    assert reading.value == expected


async def test_unsupported_key_type_is_a_scaler_error(make: ScalerFactory, admin: aioredis.Redis, key: str) -> None:
    await admin.set(key, "plain string")
    with pytest.raises(ScalerError) as caught:
        await make("redis", {"address": ADDRESS, "listName": key}).get_metric_and_activity()
    assert "string" in caught.value.message
    assert key in caught.value.message


@pytest.mark.parametrize(
    ("metadata", "auth_params", "resolved_env"),
    [
        ({"host": "127.0.0.1", "port": "6379"}, {}, {}),
        ({}, {"host": "127.0.0.1", "port": "6379"}, {}),
        ({}, {"address": ADDRESS}, {}),
        ({"addressFromEnv": "REDIS_ADDR"}, {}, {"REDIS_ADDR": ADDRESS}),
        ({"hostFromEnv": "H", "portFromEnv": "P"}, {}, {"H": "127.0.0.1", "P": "6379"}),
        ({"address": f"{ADDRESS},127.0.0.1:{free_port()}"}, {}, {}),  # KEDA uses the first address
        ({"addresses": ADDRESS}, {}, {}),  # KEDA's other spellings: name=address;addresses
        ({"hosts": "127.0.0.1", "ports": "6379"}, {}, {}),
        ({"address": ADDRESS, "host": "127.0.0.1", "port": str(free_port())}, {}, {}),  # address comes first
        ({"address": ADDRESS}, {"host": "h", "port": "1"}, {}),
        ({"address": ADDRESS, "host": "ignored-without-a-port"}, {}, {}),
        ({"address": ADDRESS, "enableTLS": " False "}, {}, {}),  # values are trimmed, Go booleans
    ],
    ids=[
        "host-port",
        "auth-host-port",
        "auth-address",
        "address-from-env",
        "host-port-from-env",
        "list",
        "addresses",
        "hosts-ports",
        "address-and-host-port",
        "address-and-auth-host-port",
        "address-and-host",
        "trimmed-bool",
    ],
)
async def test_every_way_of_giving_the_server_reaches_it(
    make: ScalerFactory,
    admin: aioredis.Redis,
    key: str,
    metadata: dict[str, str],
    auth_params: dict[str, str],
    resolved_env: dict[str, str],
) -> None:
    await admin.rpush(key, "a", "b")
    scaler = make("redis", {"listName": key, **metadata}, auth_params=auth_params, resolved_env=resolved_env)
    assert (await scaler.get_metric_and_activity()).value == 2


async def test_database_index_is_honoured(make: ScalerFactory, key: str) -> None:
    async with admin_client(db=5) as db5:
        await db5.rpush(key, 1, 2, 3)
        try:
            in_db5 = make("redis", {"address": ADDRESS, "listName": key, "databaseIndex": "5"})
            in_db0 = make("redis", {"address": ADDRESS, "listName": key})
            assert (await in_db5.get_metric_and_activity()).value == 3
            assert (await in_db0.get_metric_and_activity()).value == 0
        finally:
            await db5.delete(key)


# --- failures --------------------------------------------------------------------------------------


@pytest.fixture
async def acl_user(admin: aioredis.Redis) -> AsyncIterator[tuple[str, str]]:
    name, password = unique("user"), f"pw-{uuid.uuid4().hex}"
    await admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    yield name, password
    await admin.execute_command("ACL", "DELUSER", name)


async def test_wrong_password_is_a_scaler_error_without_the_password(
    make: ScalerFactory, key: str, acl_user: tuple[str, str]
) -> None:
    user, _ = acl_user
    wrong = f"wrong-{uuid.uuid4().hex}"
    scaler = make("redis", {"address": ADDRESS, "listName": key, "username": user}, auth_params={"password": wrong})
    with pytest.raises(ScalerError) as caught:
        await scaler.get_metric_and_activity()
    assert "refused the login" in caught.value.message
    assert user in caught.value.message
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)


@pytest.mark.parametrize("via", ["authParams", "passwordFromEnv"])
async def test_right_password_logs_in(
    make: ScalerFactory, admin: aioredis.Redis, key: str, acl_user: tuple[str, str], via: str
) -> None:
    user, password = acl_user
    await admin.rpush(key, "x")
    metadata = {"address": ADDRESS, "listName": key}
    if via == "authParams":
        scaler = make("redis", metadata, auth_params={"username": user, "password": password})
    else:
        metadata |= {"usernameFromEnv": "U", "passwordFromEnv": "P"}
        scaler = make("redis", metadata, resolved_env={"U": user, "P": password})
    assert (await scaler.get_metric_and_activity()).value == 1


async def test_server_down_is_a_scaler_error(make: ScalerFactory) -> None:
    address = f"127.0.0.1:{free_port()}"
    scaler = make("redis", {"address": address, "listName": "q"})
    with pytest.raises(ScalerError) as caught:
        await scaler.get_metric_and_activity()
    assert f"cannot reach Redis at {address}" in caught.value.message
    assert caught.value.trigger == "triggers[0] (redis)"


async def test_silent_server_is_a_scaler_error_after_the_timeout_and_leaks_nothing(
    make: ScalerFactory,
) -> None:
    open_connections = 0

    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_connections
        open_connections += 1
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        open_connections -= 1
        writer.close()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        scaler = make("redis", {"address": f"127.0.0.1:{port}", "listName": "q"}, ctx=context(timeout=0.2))
        for _ in range(3):
            with pytest.raises(ScalerError) as caught:
                await scaler.get_metric_and_activity()
            assert "0.2s" in caught.value.message

        async def at_most_one_open() -> bool:
            return open_connections <= 1

        await eventually(at_most_one_open)  # each timed-out read dropped its connection
        await scaler.close()

        async def none_open() -> bool:
            return open_connections == 0

        await eventually(none_open)
    finally:
        server.close()
        await server.wait_closed()


# --- connections -----------------------------------------------------------------------------------


async def test_polls_reuse_one_pooled_connection_and_close_releases_it(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    name = unique("client")
    await admin.rpush(key, "a")
    scaler = make("redis", {"address": ADDRESS, "listName": key, "clientName": name})
    for _ in range(1000):
        assert (await scaler.get_metric_and_activity()).value == 1
    assert 1 <= len(await connections_named(admin, name)) <= 2
    await scaler.close()

    async def none_left() -> bool:
        return not await connections_named(admin, name)

    await eventually(none_left)
    # A closed scaler opens a new connection if it is used again.
    assert (await scaler.get_metric_and_activity()).value == 1
    assert len(await connections_named(admin, name)) == 1


async def test_objects_reading_one_server_share_its_connections(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    name = unique("client")
    await admin.rpush(key, "a")
    scalers = [make("redis", {"address": ADDRESS, "listName": key, "clientName": name}) for _ in range(50)]
    for _ in range(3):
        results = await asyncio.gather(*(s.get_metric_and_activity() for s in scalers))
        assert all(r.value == 1 for r in results)
    # 50 objects, one pool: at most its size, not 50 x 3.
    assert 1 <= len(await connections_named(admin, name)) <= SHARED_MAX_CONNECTIONS
    assert SHARED_POOLS.count() == 1
    for scaler in scalers[:-1]:
        await scaler.close()
    assert (await scalers[-1].get_metric_and_activity()).value == 1  # the last user still reads
    await scalers[-1].close()
    assert SHARED_POOLS.count() == 0

    async def none_left() -> bool:
        return not await connections_named(admin, name)

    await eventually(none_left)


async def test_a_cancellation_during_a_write_is_never_swallowed(make: ScalerFactory, key: str) -> None:
    """Python 3.11's wait_for returns the result when a cancellation arrives as the awaited write completes;
    redis-py wraps every write in it, so a Ctrl-C could be lost. ebb's connection never loses it."""
    scaler = make("redis", {"address": ADDRESS, "listName": key})
    assert (await scaler.get_metric_and_activity()).value == 0  # connected
    assert scaler._pool is not None
    conn = await scaler._pool.get_connection()
    try:
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def slow_write(command: object) -> None:
            await gate

        conn._send_packed_command = slow_write  # type: ignore[method-assign]
        task = asyncio.create_task(conn.send_packed_command(b"*1\r\n$4\r\nPING\r\n", check_health=False))
        await asyncio.sleep(0.01)
        gate.set_result(None)  # the write completes ...
        task.cancel()  # ... in the same moment as the cancellation
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await conn.disconnect()
        await scaler._pool.release(conn)


# --- TLS -------------------------------------------------------------------------------------------

KEY_PASSWORD = "kp-" + uuid.uuid4().hex


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate with an encrypted key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    _openssl(
        "req",
        "-x509",
        *ec,
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=ebb-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", *ec, "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    sign = ["x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    _openssl(*sign, "-in", "srv.csr", "-out", "srv.crt", "-extfile", "san.ext", cwd=d)
    _openssl(
        "req",
        *ec,
        "-passout",
        f"pass:{KEY_PASSWORD}",
        "-keyout",
        "cl.key",
        "-out",
        "cl.csr",
        "-subj",
        "/CN=c",
        cwd=d,
    )
    _openssl(*sign, "-in", "cl.csr", "-out", "cl.crt", cwd=d)
    return {name: d / name for name in ("ca.crt", "srv.crt", "srv.key", "cl.crt", "cl.key")}


@pytest.fixture
async def tls_redis(pki: dict[str, Path]) -> AsyncIterator[str]:
    """A TLS front for the local Redis (which speaks no TLS) that demands a client certificate from our CA."""
    context_ = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context_.load_cert_chain(pki["srv.crt"], pki["srv.key"])
    context_.load_verify_locations(cafile=pki["ca.crt"])
    context_.verify_mode = ssl.CERT_REQUIRED
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", 6379)
        writers.extend((client_w, redis_w))
        await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context_)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


def _tls_auth(pki: dict[str, Path], **extra: str) -> dict[str, str]:
    return {
        "ca": pki["ca.crt"].read_text(),
        "cert": pki["cl.crt"].read_text(),
        "key": pki["cl.key"].read_text(),
        "keyPassword": KEY_PASSWORD,
        **extra,
    }


@pytest.mark.parametrize("switch", ["enableTLS", "tls"])
async def test_mutual_tls_with_an_encrypted_client_key(
    make: ScalerFactory, admin: aioredis.Redis, key: str, pki: dict[str, Path], tls_redis: str, switch: str
) -> None:
    await admin.rpush(key, "a", "b", "c")
    metadata = {"address": tls_redis, "listName": key}
    if switch == "enableTLS":
        scaler = make("redis", {**metadata, "enableTLS": "true"}, auth_params=_tls_auth(pki))
    else:
        scaler = make("redis", metadata, auth_params=_tls_auth(pki, tls="enable"))
    assert (await scaler.get_metric_and_activity()).value == 3


async def test_tls_verifies_the_server_against_the_given_ca_only(
    make: ScalerFactory, key: str, pki: dict[str, Path], tls_redis: str
) -> None:
    auth = _tls_auth(pki)
    del auth["ca"]
    scaler = make("redis", {"address": tls_redis, "listName": key, "enableTLS": "true"}, auth_params=auth)
    with pytest.raises(ScalerError) as caught:
        await scaler.get_metric_and_activity()
    assert "certificate" in caught.value.message.lower()
    assert KEY_PASSWORD not in str(caught.value)


async def test_unsafe_ssl_skips_server_verification(
    make: ScalerFactory, key: str, pki: dict[str, Path], tls_redis: str
) -> None:
    auth = _tls_auth(pki)
    del auth["ca"]
    metadata = {"address": tls_redis, "listName": key, "enableTLS": "true", "unsafeSsl": "true"}
    assert (await make("redis", metadata, auth_params=auth).get_metric_and_activity()).value == 0


async def test_tls_disabled_by_the_trigger_authentication_talks_plain(make: ScalerFactory, key: str) -> None:
    scaler = make("redis", {"address": ADDRESS, "listName": key}, auth_params={"tls": "disable"})
    assert (await scaler.get_metric_and_activity()).value == 0


async def test_tls_against_a_plain_server_is_a_scaler_error(make: ScalerFactory, key: str) -> None:
    scaler = make("redis", {"address": ADDRESS, "listName": key, "enableTLS": "true"}, ctx=context(timeout=0.3))
    with pytest.raises(ScalerError):
        await scaler.get_metric_and_activity()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"keyPassword": "not-the-password"}, ["do not load"]),
        ({"keyPassword": ""}, ["do not load"]),
        ({"cert": ""}, ["together"]),
        ({"ca": "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"}, ["do not load"]),
    ],
    ids=["wrong-key-password", "no-key-password", "key-without-cert", "bad-ca"],
)
def test_bad_tls_material_is_a_spec_error_without_secrets(
    make: ScalerFactory, pki: dict[str, Path], change: dict[str, str], words: list[str]
) -> None:
    auth = _tls_auth(pki, **change)
    with pytest.raises(SpecError) as caught:
        make("redis", {"address": ADDRESS, "listName": "q", "enableTLS": "true"}, auth_params=auth)
    assert caught.value.field == "spec.triggers[0].authenticationRef"
    for word in words:
        assert word in caught.value.message
    for secret in (KEY_PASSWORD, auth["key"], auth["keyPassword"]):
        if secret:
            assert secret not in str(caught.value)


# --- push ------------------------------------------------------------------------------------------


def _channel(key: str, db: int = 0) -> str:
    return f"__keyspace@{db}__:{key}"


async def _start_watch(scaler: object, notifications: Notifications) -> asyncio.Task[None]:
    return asyncio.create_task(scaler.watch(notifications))  # type: ignore[attr-defined]


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_push_without_notifications_explains_how_to_enable_them(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    async with notify_config(admin, ""):
        scaler = make("redis", {"address": ADDRESS, "listName": key})
        with pytest.raises(ScalerError) as caught:
            await asyncio.wait_for(scaler.watch(Notifications()), 10)
        assert "CONFIG SET notify-keyspace-events Kl" in caught.value.message
        assert "enableKeyspaceNotifications" in caught.value.message
        # A hint said once per server, not an error per trigger.
        assert isinstance(caught.value, PushUnavailable) and caught.value.key == f"redis://{ADDRESS}"
        assert (await admin.config_get(NOTIFY_CONFIG))[NOTIFY_CONFIG] == ""


async def test_push_enables_notifications_when_allowed_and_wakes_on_rpush(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    async with notify_config(admin, "Ex"):
        scaler = make("redis", {"address": ADDRESS, "listName": key, "enableKeyspaceNotifications": "true"})
        notifications = Notifications()
        task = await _start_watch(scaler, notifications)
        try:
            await eventually(lambda: subscribed(admin, _channel(key)))
            flags = (await admin.config_get(NOTIFY_CONFIG))[NOTIFY_CONFIG]
            assert {"K", "l", "E", "x"} <= set(flags)  # what the server had is kept
            await admin.rpush(key, "job")
            await notifications.wait()
        finally:
            await _stop(task)


async def test_push_uses_notifications_the_server_already_sends(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    async with notify_config(admin, "KEA"):
        scaler = make("redis", {"address": ADDRESS, "listName": key})
        notifications = Notifications()
        task = await _start_watch(scaler, notifications)
        try:
            await eventually(lambda: subscribed(admin, _channel(key)))
            await admin.lpush(key, "job")
            await notifications.wait()
        finally:
            await _stop(task)


async def test_push_ignores_events_that_only_remove_work(make: ScalerFactory, admin: aioredis.Redis, key: str) -> None:
    await admin.rpush(key, "a", "b", "c", "d")
    async with notify_config(admin, "Kl"):
        scaler = make("redis", {"address": ADDRESS, "listName": key})
        notifications = Notifications()
        task = await _start_watch(scaler, notifications)
        try:
            await eventually(lambda: subscribed(admin, _channel(key)))
            await admin.lpop(key)
            await admin.rpop(key)
            await admin.ltrim(key, 0, 0)
            await admin.rpush(key, "new")
            await notifications.wait()
            # The removals were published before the push; had they notified, they would have by now.
            await asyncio.sleep(0.2)
            assert notifications.count == 1
        finally:
            await _stop(task)


async def test_push_watches_the_configured_database(make: ScalerFactory, admin: aioredis.Redis, key: str) -> None:
    async with notify_config(admin, "Kl"), admin_client(db=3) as db3:
        scaler = make("redis", {"address": ADDRESS, "listName": key, "databaseIndex": "3"})
        notifications = Notifications()
        task = await _start_watch(scaler, notifications)
        try:
            await eventually(lambda: subscribed(admin, _channel(key, db=3)))
            await db3.rpush(key, "job")
            await notifications.wait()
        finally:
            await _stop(task)
            await db3.delete(key)


async def test_push_reconnects_after_losing_its_connection(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    name = unique("client")
    async with notify_config(admin, "Kl"):
        scaler = make("redis", {"address": ADDRESS, "listName": key, "clientName": name})
        notifications = Notifications()
        task = await _start_watch(scaler, notifications)
        try:
            await eventually(lambda: subscribed(admin, _channel(key)))
            [subscriber] = [c for c in await connections_named(admin, name) if c.get("sub") == "1"]
            await admin.execute_command("CLIENT", "KILL", "ID", subscriber["id"])
            await notifications.wait()  # the catch-up call after resubscribing
            await eventually(lambda: subscribed(admin, _channel(key)))
            await admin.rpush(key, "job")
            await notifications.wait()
            assert not task.done()
        finally:
            await _stop(task)


async def test_watches_of_one_server_share_one_subscription(make: ScalerFactory, admin: aioredis.Redis) -> None:
    name = unique("client")
    keys = [unique("list") for _ in range(20)]
    async with notify_config(admin, "Kl"):
        scalers = [make("redis", {"address": ADDRESS, "listName": k, "clientName": name}) for k in keys]
        notes = [Notifications() for _ in keys]
        tasks = [await _start_watch(s, n) for s, n in zip(scalers, notes, strict=True)]
        try:
            for k in keys:
                await eventually(lambda k=k: subscribed(admin, _channel(k)))  # type: ignore[misc]
            subscribers = [c for c in await connections_named(admin, name) if c.get("sub") != "0"]
            assert len(subscribers) == 1  # 20 watched keys, one connection
            assert PUSH_HUBS.count() == 1
            await admin.rpush(keys[7], "job")
            await notes[7].wait()
            assert [n.count for n in notes].count(0) == 19  # only the watcher of that key was told
        finally:
            for task in tasks:
                await _stop(task)
            await admin.delete(*keys)
        assert PUSH_HUBS.count() == 0

        async def none_subscribed() -> bool:
            return not [c for c in await connections_named(admin, name) if c.get("sub") != "0"]

        await eventually(none_subscribed)


async def test_cancelled_watch_and_close_leave_no_connection(
    make: ScalerFactory, admin: aioredis.Redis, key: str
) -> None:
    name = unique("client")
    async with notify_config(admin, "Kl"):
        scaler = make("redis", {"address": ADDRESS, "listName": key, "clientName": name})
        task = await _start_watch(scaler, Notifications())
        await eventually(lambda: subscribed(admin, _channel(key)))
        await scaler.get_metric_and_activity()
        assert len(await connections_named(admin, name)) == 2  # one for reads, one subscribed
        await _stop(task)
        await scaler.close()

        async def none_left() -> bool:
            return not await connections_named(admin, name)

        await eventually(none_left)
