"""The rabbitmq scaler against the RabbitMQ on 127.0.0.1:5672 and its management API on :15672.

HTTP-mode tests need the management plugin (`rabbitmq-plugins enable rabbitmq_management`) and skip,
saying so, when it does not answer. The API refreshes queue figures every few seconds, so those tests
wait until the API itself shows what was published, then compare the scaler with an independent read.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import aiormq
import psutil
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from ebb.scalers.rabbitmq import basic_auth
from tests._skips import needs
from tests.scalers._reads import read_once

from ._servers import free_port

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
HTTP = "http://guest:guest@127.0.0.1:15672/"
API = "http://127.0.0.1:15672/api"
AUTH = {"Authorization": basic_auth("guest", "guest")}
STATS_WAIT = 20.0  # the management plugin emits stats every 5 s by default; allow a few rounds
T = TypeVar("T")


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"rmq-{uuid.uuid4().hex[:10]}", trigger_index=index, trigger_type="rabbitmq")


def uid(prefix: str = "ebb-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_for_value(fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = STATS_WAIT) -> T:
    """Poll `fetch` until `ok(value)`; fail with the last value if that never happens `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    value = await fetch()
    while not ok(value):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(0.1)
        value = await fetch()
    return value


class Broker:
    """Declares, fills and finally deletes test queues through one AMQP connection."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.queues: list[str] = []

    async def queue(self, name: str, messages: int = 0) -> str:
        await self.channel.queue_declare(name, durable=False, auto_delete=False)
        self.queues.append(name)
        await self.publish(name, messages)
        return name

    async def publish(self, name: str, messages: int) -> None:
        for i in range(messages):
            await self.channel.basic_publish(f"m{i}".encode(), routing_key=name)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    connection = await aiormq.connect(AMQP)
    b = Broker(await connection.channel())
    yield b
    cleanup = await connection.channel()
    for name in b.queues:
        await cleanup.queue_delete(name)
    await connection.close()


@pytest.fixture
async def mgmt() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(headers=AUTH)
    try:
        async with session.get(f"{API}/overview", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            reachable = resp.status == 200
    except aiohttp.ClientError:
        reachable = False
    if not reachable:
        await session.close()
        pytest.skip(needs("RabbitMQ management", "rabbitmq-plugins enable rabbitmq_management"))
    yield session
    await session.close()


async def api_queue(session: aiohttp.ClientSession, name: str, vhost: str = "%2F") -> dict[str, Any]:
    async with session.get(f"{API}/queues/{vhost}/{name}") as resp:
        return dict(await resp.json()) if resp.status == 200 else {}


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build_scaler("rabbitmq", metadata, ctx=kw.pop("ctx", None) or ctx(), **kw)


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "mode", "target", "protocol"),
    [
        ({"host": AMQP, "queueName": "q"}, "QueueLength", 20.0, "amqp"),
        ({"host": AMQP, "queueName": "q", "queueLength": "7"}, "QueueLength", 7.0, "amqp"),
        ({"host": AMQP, "queueName": "q", "mode": "QueueLength", "value": "5"}, "QueueLength", 5.0, "amqp"),
        ({"host": HTTP, "queueName": "q", "mode": "MessageRate", "value": "2.5"}, "MessageRate", 2.5, "http"),
        ({"host": "https://h/", "queueName": "q", "protocol": "http"}, "QueueLength", 20.0, "http"),
    ],
)
def test_parse_defaults_and_modes(metadata: dict[str, str], mode: str, target: float, protocol: str) -> None:
    s = scaler(metadata)
    d = s.describe()
    assert (d["mode"], d["value"], d["protocol"]) == (mode, target, protocol)
    assert s.metric_spec().target == target
    assert (d["pageSize"], d["operation"], d["activationValue"]) == (100, "sum", 0.0)


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"queueName": "q"}, {}, "host"),
        ({"host": AMQP}, {}, "queueName"),
        ({"host": "redis://h:1/", "queueName": "q"}, {}, "host"),
        ({"host": AMQP, "queueName": "q", "protocol": "http"}, {}, "protocol"),
        ({"host": AMQP, "queueName": "q", "protocol": "stomp"}, {}, "protocol"),
        ({"host": AMQP, "queueName": "q", "mode": "Backlog", "value": "5"}, {}, "mode"),
        ({"host": AMQP, "queueName": "q", "value": "5"}, {}, "mode"),
        ({"host": AMQP, "queueName": "q", "mode": "QueueLength"}, {}, "value"),
        ({"host": AMQP, "queueName": "q", "mode": "QueueLength", "value": "x"}, {}, "value"),
        ({"host": AMQP, "queueName": "q", "queueLength": "5", "mode": "QueueLength"}, {}, "queueLength"),
        ({"host": AMQP, "queueName": "q", "mode": "MessageRate", "value": "5"}, {}, "mode"),
        ({"host": AMQP, "queueName": "q", "useRegex": "true"}, {}, "useRegex"),
        ({"host": AMQP, "queueName": "q", "useRegex": "maybe"}, {}, "useRegex"),
        ({"host": AMQP, "queueName": "q", "excludeUnacknowledged": "true"}, {}, "excludeUnacknowledged"),
        ({"host": AMQP, "queueName": "q", "timeout": "5s"}, {}, "timeout"),
        ({"host": HTTP, "queueName": "q", "timeout": "5 parsecs"}, {}, "timeout"),
        ({"host": HTTP, "queueName": "q", "pageSize": "0"}, {}, "pageSize"),
        ({"host": HTTP, "queueName": "q", "operation": "median"}, {}, "operation"),
        ({"host": AMQP, "queueName": "q"}, {"username": "u"}, "password"),
        ({"host": AMQP, "queueName": "q"}, {"password": "p"}, "username"),
        ({"host": AMQP, "queueName": "q", "password": "p"}, {}, "password"),
        ({"host": AMQP, "queueName": "q"}, {"tls": "enable"}, "tls"),
        # OAuth2, KEDA's validateOAuth2: all three or none, HTTP only, not with username/password.
        ({"host": HTTP, "queueName": "q"}, {"oauthTokenURI": "http://t/", "clientID": "c"}, "clientSecret"),
        ({"host": HTTP, "queueName": "q"}, {"clientSecret": "s"}, "oauthTokenURI"),
        (
            {"host": AMQP, "queueName": "q"},
            {"oauthTokenURI": "http://t/", "clientID": "c", "clientSecret": "s"},
            "oauthTokenURI",
        ),
        (
            {"host": HTTP, "queueName": "q"},
            {"oauthTokenURI": "http://t/", "clientID": "c", "clientSecret": "s", "username": "u", "password": "p"},
            "oauthTokenURI",
        ),
        ({"host": HTTP, "queueName": "q"}, {"workloadIdentityResource": "api://x"}, "workloadIdentityResource"),
    ],
)
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert err.value.obj.startswith("ScaledObject default/rmq-")


def test_host_from_auth_params_and_env() -> None:
    from_auth = scaler({"queueName": "q"}, auth_params={"host": HTTP})
    from_env = scaler({"queueName": "q", "hostFromEnv": "RMQ"}, resolved_env={"RMQ": HTTP})
    assert from_auth.describe()["protocol"] == from_env.describe()["protocol"] == "http"


@pytest.mark.parametrize(
    ("raw", "seconds"), [("250", 0.25), ("5s", 5.0), ("1m30s", 90.0), ("1.5s", 1.5), ("800ms", 0.8)]
)
def test_timeout_takes_go_durations_or_milliseconds(raw: str, seconds: float) -> None:
    s = scaler({"host": HTTP, "queueName": "q", "timeout": raw})
    assert s.timeout == pytest.approx(seconds)


def test_metric_name_is_kedas() -> None:
    s = scaler({"host": AMQP, "queueName": "orders/eu v2"}, ctx=ctx(index=3))
    # KEDA: s{index}-rabbitmq-{url.QueryEscape(queueName)} with / . : % ( ) turned into dashes.
    assert s.metric_spec().name == "s3-rabbitmq-orders-2Feu+v2"


def test_describe_masks_the_password_inside_host() -> None:
    s = scaler({"host": "amqp://worker:s3cr3t-pw@rabbit.svc:5672/prod", "queueName": "q"})
    d = s.describe()
    assert d["host"] == "amqp://worker:***@rabbit.svc:5672/prod"
    assert "s3cr3t-pw" not in repr(d)


# --- AMQP ---------------------------------------------------------------------------------------


async def test_amqp_queue_length(broker: Broker) -> None:
    q = await broker.queue(uid(), messages=17)
    s = scaler({"host": AMQP, "queueName": q, "mode": "QueueLength", "value": "5"})
    assert s.metric_spec().target == 5.0
    assert await read_once(s) == (17.0, True)


@pytest.mark.parametrize(("activation", "active"), [("16", True), ("17", False), ("40", False)])
async def test_activation_threshold(broker: Broker, activation: str, active: bool) -> None:
    q = await broker.queue(uid(), messages=17)
    s = scaler({"host": AMQP, "queueName": q, "value": "5", "mode": "QueueLength", "activationValue": activation})
    assert await read_once(s) == (17.0, active)


async def test_amqp_counts_ready_messages_only(broker: Broker) -> None:
    q = await broker.queue(uid(), messages=17)
    held = [await broker.channel.basic_get(q, no_ack=False) for _ in range(3)]
    assert [h.body for h in held] == [b"m0", b"m1", b"m2"]  # delivered, not acknowledged
    s = scaler({"host": AMQP, "queueName": q})
    assert (await read_once(s))[0] == 14.0


async def test_amqp_credentials_from_auth_params_override_the_url(broker: Broker) -> None:
    q = await broker.queue(uid(), messages=2)
    s = scaler(
        {"host": "amqp://nobody:nothing@127.0.0.1:5672/", "queueName": q},
        auth_params={"username": "guest", "password": "guest"},
    )
    assert (await read_once(s))[0] == 2.0


@pytest.mark.parametrize("where", ["url", "authParams"])
async def test_amqp_wrong_password_is_a_scaler_error_without_the_password(broker: Broker, where: str) -> None:
    q = await broker.queue(uid())
    bad = "Wr0ng-" + uuid.uuid4().hex[:8]
    if where == "url":
        s = scaler({"host": f"amqp://guest:{bad}@127.0.0.1:5672/", "queueName": q})
    else:
        s = scaler(
            {"host": "amqp://127.0.0.1:5672/", "queueName": q},
            auth_params={"username": "guest", "password": bad},
        )
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert "ACCESS_REFUSED" in str(err.value)
    assert bad not in str(err.value)
    assert "rmq-" in err.value.obj and "rabbitmq" in err.value.trigger


async def test_amqp_server_down() -> None:
    port = free_port()
    s = scaler({"host": f"amqp://guest:guest@127.0.0.1:{port}/", "queueName": "q"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert str(port) in str(err.value)


async def test_amqp_missing_queue_then_created_reuses_the_scaler(broker: Broker) -> None:
    q = uid()
    s = scaler({"host": AMQP, "queueName": q})
    try:
        with pytest.raises(ScalerError, match="NOT_FOUND"):
            await s.get_metric_and_activity()
        await broker.queue(q, messages=3)
        assert (await s.get_metric_and_activity()).value == 3.0
    finally:
        await s.close()


async def test_amqp_missing_vhost_says_so() -> None:
    vhost = uid("no-such-vhost")
    s = scaler({"host": AMQP, "queueName": "q", "vhostName": vhost})
    with pytest.raises(ScalerError, match=f"virtual host '{vhost}'"):
        await read_once(s)


# --- HTTP (management API) ------------------------------------------------------------------------


async def test_http_queue_length_and_exclude_unacknowledged(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    q = await broker.queue(uid(), messages=17)
    for _ in range(3):
        await broker.channel.basic_get(q, no_ack=False)
    info = await wait_for_value(
        lambda: api_queue(mgmt, q), lambda d: d.get("messages") == 17 and d.get("messages_ready") == 14
    )
    total = scaler({"host": HTTP, "queueName": q, "mode": "QueueLength", "value": "5"})
    ready = scaler({"host": HTTP, "queueName": q, "excludeUnacknowledged": "true"})
    assert await read_once(total) == (float(info["messages"]), True)
    assert await read_once(ready) == (float(info["messages_ready"]), True)


async def test_http_oauth2_client_credentials_token_is_fetched_cached_and_sent(
    broker: Broker, mgmt: aiohttp.ClientSession
) -> None:
    """KEDA's clientcredentials flow: the token endpoint is asked once, the management API gets the bearer token.

    RabbitMQ here takes no OAuth2 tokens, so a stand-in on loopback serves the token endpoint and forwards
    API requests that carry the token to the real management API.
    """
    from aiohttp import web

    q = await broker.queue(uid(), messages=4)
    await wait_for_value(lambda: api_queue(mgmt, q), lambda d: d.get("messages") == 4)
    token_requests: list[tuple[str | None, dict[str, str]]] = []

    async def token(request: web.Request) -> web.Response:
        form = dict(await request.post())
        token_requests.append((request.headers.get("Authorization"), {k: str(v) for k, v in form.items()}))
        return web.json_response({"access_token": "tok-123", "token_type": "bearer", "expires_in": 3600})

    async def api(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok-123":
            return web.Response(status=401)
        async with mgmt.get(f"http://127.0.0.1:15672{request.path_qs}") as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/{tail:.*}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        auth = {
            "oauthTokenURI": f"http://127.0.0.1:{port}/token",
            "clientID": "ebb client",
            "clientSecret": "s3cret",
            "scopes": "queues.read, queues.list",
            "endpointParams": "audience=rabbitmq",
        }
        s = scaler({"host": f"http://127.0.0.1:{port}/", "queueName": q}, auth_params=auth)
        try:
            assert (await s.get_metric_and_activity()).value == 4
            assert (await s.get_metric_and_activity()).value == 4
        finally:
            await s.close()
    finally:
        await runner.cleanup()
    assert len(token_requests) == 1  # cached until it expires
    header, form = token_requests[0]
    assert header == basic_auth("ebb+client", "s3cret")
    assert form == {"grant_type": "client_credentials", "scope": "queues.read queues.list", "audience": "rabbitmq"}


def _has_messages(n: int, queue: dict[str, Any]) -> bool:
    return queue.get("messages") == n


async def test_http_regex_over_queues(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    prefix = uid("ebb-rx")
    sizes = {"a": 3, "b": 5, "c": 9}
    for suffix, n in sizes.items():
        await broker.queue(f"{prefix}-{suffix}", messages=n)
    await broker.queue(f"x{prefix}-d", messages=50)  # contains the prefix but does not start with it
    for suffix, n in sizes.items():
        expect = functools.partial(_has_messages, n)
        await wait_for_value(functools.partial(api_queue, mgmt, f"{prefix}-{suffix}"), expect)
    # avg of counts is an integer division, as KEDA's: 17 // 3.
    for operation, expected in [("sum", 17.0), ("max", 9.0), ("avg", 5.0)]:
        s = scaler({"host": HTTP, "queueName": f"^{prefix}-", "useRegex": "true", "operation": operation})
        assert (await read_once(s))[0] == expected, operation
    none = scaler({"host": HTTP, "queueName": f"^{prefix}-nothing", "useRegex": "true"})
    assert await read_once(none) == (0.0, False)


async def test_http_regex_more_queues_than_a_page(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    prefix = uid("ebb-rx")
    for i in range(3):
        await broker.queue(f"{prefix}-{i}")
    s = scaler({"host": HTTP, "queueName": f"^{prefix}-", "useRegex": "true", "pageSize": "2"})
    with pytest.raises(ScalerError, match="pageSize"):
        await read_once(s)


def _figures(d: dict[str, Any]) -> tuple[int, float, float]:
    """(messages, publish rate, deliver/get rate) as the management API reports them for one queue."""
    stats = d.get("message_stats") or {}
    return (
        int(d.get("messages", 0)),
        float((stats.get("publish_details") or {}).get("rate", 0.0)),
        float((stats.get("deliver_get_details") or {}).get("rate", 0.0)),
    )


@pytest.mark.slow  # the API's rates need two statistics samples: 5 to 10 s with the broker's defaults
async def test_http_rate_modes_follow_the_rates_the_api_reports(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    q = await broker.queue(uid())
    stop = asyncio.Event()

    async def traffic() -> None:
        # Publish faster than we consume, so the queue also has a backlog for the consumption-time mode.
        while not stop.is_set():
            await broker.publish(q, 5)
            for _ in range(2):
                await broker.channel.basic_get(q, no_ack=True)
            await asyncio.sleep(0.05)

    running = asyncio.create_task(traffic())
    modes = ["MessageRate", "DeliverGetRate", "PublishedToDeliveredRatio", "ExpectedQueueConsumptionTime"]
    scalers = {m: scaler({"host": HTTP, "queueName": q, "mode": m, "value": "10"}) for m in modes}
    try:
        await wait_for_value(lambda: api_queue(mgmt, q), lambda d: all(_figures(d)))
        # The API's figures change every few seconds: use the scalers' reads taken between two
        # identical independent reads.
        for _ in range(50):
            before = _figures(await api_queue(mgmt, q))
            readings = {m: await s.get_metric_and_activity() for m, s in scalers.items()}
            if _figures(await api_queue(mgmt, q)) == before:
                break
        else:
            pytest.fail("the API's figures never held still across one round of scaler reads")
        messages, published, delivered = before
        assert readings["MessageRate"].value == published
        assert readings["DeliverGetRate"].value == delivered
        assert readings["PublishedToDeliveredRatio"].value == pytest.approx(published / delivered)
        # KEDA's estimate: the backlog's growth rate relative to consumption, plus the backlog / consumption.
        eta = (published - delivered) / delivered + messages / delivered
        assert readings["ExpectedQueueConsumptionTime"].value == pytest.approx(eta)
        assert all(r.active for r in readings.values())
    finally:
        stop.set()
        await running
        for s in scalers.values():
            await s.close()


async def test_http_wrong_password(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    q = await broker.queue(uid())
    bad = "Wr0ng-" + uuid.uuid4().hex[:8]
    s = scaler({"host": f"http://guest:{bad}@127.0.0.1:15672/", "queueName": q})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert "401" in str(err.value)
    assert bad not in str(err.value)


async def test_http_missing_queue(mgmt: aiohttp.ClientSession) -> None:
    s = scaler({"host": HTTP, "queueName": uid()})
    with pytest.raises(ScalerError, match="404"):
        await read_once(s)


async def test_http_server_down() -> None:
    port = free_port()
    s = scaler({"host": f"http://guest:guest@127.0.0.1:{port}/", "queueName": "q"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert str(port) in str(err.value)
    assert "guest:guest" not in str(err.value)


async def test_vhost_name_over_amqp_and_http(mgmt: aiohttp.ClientSession) -> None:
    vhost = uid("ebb-vh")
    async with mgmt.put(f"{API}/vhosts/{vhost}") as resp:
        assert resp.status in (201, 204)
    try:
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        async with mgmt.put(f"{API}/permissions/{vhost}/guest", json=perms) as resp:
            assert resp.status in (201, 204)
        connection = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
        channel = await connection.channel()
        await channel.queue_declare("work")
        for i in range(4):
            await channel.basic_publish(str(i).encode(), routing_key="work")
        await connection.close()
        assert (await read_once(scaler({"host": AMQP, "queueName": "work", "vhostName": vhost})))[0] == 4.0
        await wait_for_value(lambda: api_queue(mgmt, "work", vhost), lambda d: d.get("messages") == 4)
        s = scaler({"host": HTTP, "queueName": "work", "vhostName": vhost})
        assert (await read_once(s))[0] == 4.0
    finally:
        async with mgmt.delete(f"{API}/vhosts/{vhost}") as resp:
            assert resp.status in (204, 404)


# --- resources ------------------------------------------------------------------------------------


async def _our_connections(mgmt: aiohttp.ClientSession, name: str) -> list[dict[str, Any]]:
    async with mgmt.get(f"{API}/connections") as resp:
        rows = await resp.json()
    return [c for c in rows if (c.get("client_properties") or {}).get("connection_name") == name]


@pytest.mark.slow  # waits for the broker's next statistics round (5 s by default) after the polls
async def test_amqp_no_connection_or_channel_leak_over_1000_polls(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    q = await broker.queue(uid(), messages=1)
    c = ctx()
    s = scaler({"host": AMQP, "queueName": q}, ctx=c)
    name = f"ebb-{c.namespace}-{c.name}"
    failures = 0
    try:
        for i in range(1000):
            if i == 400:
                await broker.channel.queue_delete(q)  # a stretch of failing reads: each closes the channel
            if i == 450:
                await broker.queue(q, messages=1)
            try:
                await s.get_metric_and_activity()
            except ScalerError:
                failures += 1
        assert failures == 50
        # Wait for statistics the broker took after the last poll: the server must have received at
        # least one frame per poll, so its frame counter reaches 1000 only once the stats are fresh.
        rows = await wait_for_value(
            lambda: _our_connections(mgmt, name), lambda r: bool(r) and r[0].get("recv_cnt", 0) >= 1000
        )
        assert len(rows) == 1
        assert rows[0]["channels"] == 1
    finally:
        await s.close()
    await wait_for_value(lambda: _our_connections(mgmt, name), lambda r: r == [], within=10)


@pytest.mark.slow  # the connection shows in the API only after the broker's next statistics round
async def test_amqp_reconnects_after_the_broker_drops_the_connection(
    broker: Broker, mgmt: aiohttp.ClientSession
) -> None:
    q = await broker.queue(uid(), messages=6)
    c = ctx()
    name = f"ebb-{c.namespace}-{c.name}"
    s = scaler({"host": AMQP, "queueName": q}, ctx=c)
    try:
        assert (await s.get_metric_and_activity()).value == 6.0
        rows = await wait_for_value(lambda: _our_connections(mgmt, name), bool)
        async with mgmt.delete(f"{API}/connections/{quote(rows[0]['name'], safe='')}") as resp:
            assert resp.status == 204
        # The read that notices the loss may fail; the one after must be back on a new connection.
        values: list[float | None] = []
        for _ in range(2):
            try:
                values.append((await s.get_metric_and_activity()).value)
            except ScalerError:
                values.append(None)
        assert values[-1] == 6.0
    finally:
        await s.close()


async def _tcp_to(port: int) -> int:
    """Established TCP connections from this test process to `port`."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def test_http_session_reuses_connections_over_300_polls(broker: Broker, mgmt: aiohttp.ClientSession) -> None:
    q = await broker.queue(uid(), messages=1)
    before = await _tcp_to(15672)  # the test's own API session, idle meanwhile
    s = scaler({"host": HTTP, "queueName": q})
    try:
        for _ in range(300):
            await s.get_metric_and_activity()
        assert 1 <= await _tcp_to(15672) - before <= 2
    finally:
        await s.close()
    await wait_for_value(lambda: _tcp_to(15672), lambda n: n <= before, within=5)
