"""The `redis-streams` trigger against the real Redis on 127.0.0.1:6379: each of KEDA's three modes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ebb.errors import ScalerError, SpecError
from ebb.scalers import MetricSpec
from tests.scalers._redis_support import (
    ADDRESS,
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
async def stream(admin: aioredis.Redis) -> AsyncIterator[str]:
    name = unique("stream")
    yield name
    await admin.delete(name)


@pytest.fixture
async def make() -> AsyncIterator[ScalerFactory]:
    factory = ScalerFactory()
    yield factory
    await factory.close_all()


async def add(admin: aioredis.Redis, stream: str, n: int) -> list[str]:
    return [await admin.xadd(stream, {"job": str(i)}) for i in range(n)]


async def deliver(admin: aioredis.Redis, stream: str, group: str, count: int) -> list[str]:
    """XREADGROUP `count` new entries for one consumer: they become pending and leave the lag."""
    reply = await admin.xreadgroup(group, "worker-1", {stream: ">"}, count=count)
    return [entry_id for _, entries in reply for entry_id, _ in entries]


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "mode", "target"),
    [
        ({}, "streamLength", 5),
        ({"streamLength": "8"}, "streamLength", 8),
        ({"lagCount": "7"}, "streamLength", 5),  # lagCount without a group: still the stream's length
        ({"consumerGroup": "g"}, "pendingEntriesCount", 5),
        ({"consumerGroup": "g", "pendingEntriesCount": "3"}, "pendingEntriesCount", 3),
        ({"consumerGroup": "g", "lagCount": "0"}, "pendingEntriesCount", 5),
        ({"consumerGroup": "g", "lagCount": "7", "pendingEntriesCount": "3"}, "lagCount", 7),
    ],
)
def test_mode_and_target_are_chosen_as_keda_does(
    make: ScalerFactory, extra: dict[str, str], mode: str, target: int
) -> None:
    scaler = make("redis-streams", {"address": ADDRESS, "stream": "orders", **extra})
    assert scaler.describe()["mode"] == mode
    assert scaler.metric_spec() == MetricSpec(name="s0-redis-streams-orders", target=float(target))


def test_keda_defaults(make: ScalerFactory) -> None:
    described = make("redis-streams", {"host": "127.0.0.1", "port": "6379", "stream": "s"}).describe()
    assert described["pendingEntriesCount"] == 5
    assert described["streamLength"] == 5
    assert described["lagCount"] == 0
    assert described["activationLagCount"] == 0
    assert described["databaseIndex"] == 0


def test_metric_name_is_indexed_and_normalised(make: ScalerFactory) -> None:
    scaler = make("redis-streams", {"address": ADDRESS, "stream": "app:orders.v2"}, ctx=context(trigger_index=1))
    assert scaler.metric_spec().name == "s1-redis-streams-app-orders-v2"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"address": ADDRESS}, "metadata.stream"),
        ({"stream": "s"}, "metadata.address"),
        ({"stream": "s", "hosts": "a,b", "ports": "6379"}, "metadata.port"),
        ({"stream": "s", "address": ADDRESS, "pendingEntriesCount": "0"}, "metadata.pendingEntriesCount"),
        ({"stream": "s", "address": ADDRESS, "streamLength": "-2"}, "metadata.streamLength"),
        ({"stream": "s", "address": ADDRESS, "lagCount": "-1"}, "metadata.lagCount"),
        ({"stream": "s", "address": ADDRESS, "activationLagCount": "x"}, "metadata.activationLagCount"),
    ],
)
def test_bad_metadata_is_a_spec_error(make: ScalerFactory, metadata: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        make("redis-streams", metadata)
    assert caught.value.field == f"spec.triggers[0].{field}"


# --- the three modes -------------------------------------------------------------------------------


async def test_stream_length_mode_reads_xlen(make: ScalerFactory, admin: aioredis.Redis, stream: str) -> None:
    await add(admin, stream, 12)
    scaler = make("redis-streams", {"address": ADDRESS, "stream": stream})
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 12
    assert reading.active
    assert math.ceil(reading.value / scaler.metric_spec().target) == 3


async def test_stream_length_of_a_missing_stream_is_zero(make: ScalerFactory, stream: str) -> None:
    reading = await make("redis-streams", {"address": ADDRESS, "stream": stream}).get_metric_and_activity()
    assert (reading.value, reading.active) == (0, False)


async def test_pending_entries_mode_reads_xpending(make: ScalerFactory, admin: aioredis.Redis, stream: str) -> None:
    group = "workers"
    await admin.xgroup_create(stream, group, id="0", mkstream=True)
    await add(admin, stream, 9)
    delivered = await deliver(admin, stream, group, 6)
    await admin.xack(stream, group, delivered[0])
    scaler = make("redis-streams", {"address": ADDRESS, "stream": stream, "consumerGroup": group})
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 5  # 6 delivered, 1 acknowledged; the 3 never delivered are not pending
    assert reading.active
    assert scaler.metric_spec().target == 5


async def test_pending_entries_of_a_missing_group_is_a_scaler_error(
    make: ScalerFactory, admin: aioredis.Redis, stream: str
) -> None:
    await add(admin, stream, 2)
    scaler = make("redis-streams", {"address": ADDRESS, "stream": stream, "consumerGroup": "nobody"})
    with pytest.raises(ScalerError) as caught:
        await scaler.get_metric_and_activity()
    assert "NOGROUP" in caught.value.message


async def test_lag_mode_reads_the_groups_lag(make: ScalerFactory, admin: aioredis.Redis, stream: str) -> None:
    group = "workers"
    await admin.xgroup_create(stream, group, id="0", mkstream=True)
    await add(admin, stream, 10)
    await deliver(admin, stream, group, 4)
    metadata = {"address": ADDRESS, "stream": stream, "consumerGroup": group, "lagCount": "2"}
    scaler = make("redis-streams", metadata)
    reading = await scaler.get_metric_and_activity()
    assert reading.value == 6  # delivered entries leave the lag even before they are acknowledged
    assert scaler.metric_spec().target == 2


async def test_lag_of_a_missing_stream_is_zero(make: ScalerFactory, stream: str) -> None:
    metadata = {"address": ADDRESS, "stream": stream, "consumerGroup": "g", "lagCount": "2"}
    reading = await make("redis-streams", metadata).get_metric_and_activity()
    assert (reading.value, reading.active) == (0, False)


async def test_lag_of_a_group_not_created_yet_is_the_stream_length(
    make: ScalerFactory, admin: aioredis.Redis, stream: str
) -> None:
    await admin.xgroup_create(stream, "someone-else", id="0", mkstream=True)
    await add(admin, stream, 3)
    metadata = {"address": ADDRESS, "stream": stream, "consumerGroup": "not-yet", "lagCount": "2"}
    assert (await make("redis-streams", metadata).get_metric_and_activity()).value == 3


async def test_lag_redis_cannot_tell_falls_back_to_the_stream_length(
    make: ScalerFactory, admin: aioredis.Redis, stream: str
) -> None:
    group = "workers"
    await admin.xgroup_create(stream, group, id="0", mkstream=True)
    ids = await add(admin, stream, 5)
    await admin.xdel(stream, ids[2])  # a deleted, undelivered entry makes Redis report the lag as nil
    [info] = await admin.xinfo_groups(stream)
    assert info["lag"] is None
    metadata = {"address": ADDRESS, "stream": stream, "consumerGroup": group, "lagCount": "2"}
    reading = await make("redis-streams", metadata).get_metric_and_activity()
    assert (reading.value, reading.active) == (4, True)


@pytest.mark.parametrize(
    ("mode_params", "amount", "activation", "active"),
    [
        ({}, 4, "4", False),
        ({}, 5, "4", True),
        ({"consumerGroup": "g"}, 4, "4", False),
        ({"consumerGroup": "g"}, 5, "4", True),
        ({"consumerGroup": "g", "lagCount": "1"}, 4, "4", False),
        ({"consumerGroup": "g", "lagCount": "1"}, 5, "4", True),
    ],
    ids=["xlen-at", "xlen-above", "pending-at", "pending-above", "lag-at", "lag-above"],
)
async def test_activation_lag_count_applies_in_every_mode(
    make: ScalerFactory,
    admin: aioredis.Redis,
    stream: str,
    mode_params: dict[str, str],
    amount: int,
    activation: str,
    active: bool,
) -> None:
    await admin.xgroup_create(stream, "g", id="0", mkstream=True)
    await add(admin, stream, amount)
    if "consumerGroup" in mode_params and "lagCount" not in mode_params:
        await deliver(admin, stream, "g", amount)  # pending mode counts delivered entries
    metadata = {"address": ADDRESS, "stream": stream, "activationLagCount": activation, **mode_params}
    reading = await make("redis-streams", metadata).get_metric_and_activity()
    assert reading.value == amount
    assert reading.active is active


async def test_database_index_is_honoured(make: ScalerFactory, stream: str) -> None:
    async with admin_client(db=4) as db4:
        await add(db4, stream, 2)
        try:
            metadata = {"address": ADDRESS, "stream": stream}
            assert (
                await make("redis-streams", {**metadata, "databaseIndex": "4"}).get_metric_and_activity()
            ).value == 2
            assert (await make("redis-streams", metadata).get_metric_and_activity()).value == 0
        finally:
            await db4.delete(stream)


# --- failures and connections ----------------------------------------------------------------------


async def test_wrong_password_is_a_scaler_error_without_the_password(
    make: ScalerFactory, admin: aioredis.Redis
) -> None:
    user, password, wrong = unique("user"), f"pw-{uuid.uuid4().hex}", f"wrong-{uuid.uuid4().hex}"
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    try:
        metadata = {"address": ADDRESS, "stream": "s", "username": user, "passwordFromEnv": "PW"}
        with pytest.raises(ScalerError) as caught:
            await make("redis-streams", metadata, resolved_env={"PW": wrong}).get_metric_and_activity()
        assert "refused the login" in caught.value.message
        assert wrong not in str(caught.value)
        right = make("redis-streams", metadata, resolved_env={"PW": password})
        assert (await right.get_metric_and_activity()).value == 0
    finally:
        await admin.execute_command("ACL", "DELUSER", user)


async def test_server_down_is_a_scaler_error(make: ScalerFactory) -> None:
    scaler = make("redis-streams", {"address": f"127.0.0.1:{free_port()}", "stream": "s", "consumerGroup": "g"})
    with pytest.raises(ScalerError) as caught:
        await scaler.get_metric_and_activity()
    assert "cannot reach Redis" in caught.value.message


@pytest.mark.parametrize("mode_params", [{}, {"consumerGroup": "g"}, {"consumerGroup": "g", "lagCount": "3"}])
async def test_polls_reuse_one_pooled_connection_and_close_releases_it(
    make: ScalerFactory, admin: aioredis.Redis, stream: str, mode_params: dict[str, str]
) -> None:
    name = unique("client")
    await admin.xgroup_create(stream, "g", id="0", mkstream=True)
    scaler = make("redis-streams", {"address": ADDRESS, "stream": stream, "clientName": name, **mode_params})
    for _ in range(1000):
        await scaler.get_metric_and_activity()
    assert 1 <= len(await connections_named(admin, name)) <= 2
    await scaler.close()

    async def none_left() -> bool:
        return not await connections_named(admin, name)

    await eventually(none_left)


# --- push ------------------------------------------------------------------------------------------


async def test_push_wakes_on_xadd(make: ScalerFactory, admin: aioredis.Redis, stream: str) -> None:
    async with notify_config(admin, ""):
        metadata = {
            "address": ADDRESS,
            "stream": stream,
            "consumerGroup": "g",
            "enableKeyspaceNotifications": "true",
        }
        scaler = make("redis-streams", metadata)
        notifications = Notifications()
        task = asyncio.create_task(scaler.watch(notifications))
        try:
            await eventually(lambda: subscribed(admin, f"__keyspace@0__:{stream}"))
            flags = (await admin.config_get("notify-keyspace-events"))["notify-keyspace-events"]
            assert {"K", "t"} <= set(flags)
            await admin.xadd(stream, {"job": "1"})
            await notifications.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_push_without_stream_notifications_explains_a_fix_that_works(
    make: ScalerFactory, admin: aioredis.Redis, stream: str
) -> None:
    async with notify_config(admin, "Kl"):  # lists only: streams are class t
        scaler = make("redis-streams", {"address": ADDRESS, "stream": stream})
        with pytest.raises(ScalerError) as caught:
            await asyncio.wait_for(scaler.watch(Notifications()), 10)
        suggested = re.search(r"`CONFIG SET notify-keyspace-events (\S+)`", caught.value.message)
        assert suggested is not None
        assert {"K", "l", "t"} <= set(suggested[1])  # adds what streams need, keeps what was there

        await admin.config_set("notify-keyspace-events", suggested[1])
        notifications = Notifications()
        task = asyncio.create_task(scaler.watch(notifications))
        try:
            await eventually(lambda: subscribed(admin, f"__keyspace@0__:{stream}"))
            await admin.xadd(stream, {"job": "1"})
            await notifications.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
