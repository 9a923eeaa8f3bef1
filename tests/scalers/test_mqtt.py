"""The mqtt scaler against the Mosquitto on 127.0.0.1:1883 (anonymous, persistence on).

Every test works under its own `ebbtest/<uuid>/` topic tree and clears the retained messages it set.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiomqtt
import psutil
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from ebb.scalers.mqtt import parse_broker_address
from tests.scalers._reads import read_once

from ._servers import free_port

BROKER = "127.0.0.1:1883"
WAIT = 10.0
T = TypeVar("T")


class Publisher:
    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.root = f"ebbtest/{uuid.uuid4().hex[:12]}"
        self.retained: set[str] = set()

    async def retain(self, topic: str, payload: bytes = b"job") -> None:
        await self.client.publish(topic, payload, qos=1, retain=True)
        self.retained.add(topic)

    async def clear(self, topic: str) -> None:
        await self.client.publish(topic, b"", qos=1, retain=True)

    async def send(self, topic: str, n: int = 1) -> None:
        for i in range(n):
            await self.client.publish(topic, f"m{i}".encode(), qos=1)


@pytest.fixture
async def pub() -> AsyncIterator[Publisher]:
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"ebbtest-{uuid.uuid4().hex[:8]}") as client:
        p = Publisher(client)
        yield p
        for topic in p.retained:
            await p.clear(topic)


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"mqtt-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="mqtt")


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build_scaler("mqtt", {"brokerAddress": BROKER, **metadata}, ctx=kw.pop("ctx", None) or ctx(), **kw)


async def wait_for_value(fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = WAIT) -> T:
    deadline = asyncio.get_running_loop().time() + within
    value = await fetch()
    while not ok(value):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within}s (last value: {value!r})")
        await asyncio.sleep(0.05)
        value = await fetch()
    return value


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:1883", ("127.0.0.1", 1883, False)),
        ("broker.svc", ("broker.svc", 1883, False)),
        ("mqtt://broker.svc:1884", ("broker.svc", 1884, False)),
        ("mqtts://broker.svc", ("broker.svc", 8883, True)),
        ("mqtt://[::1]:1885", ("::1", 1885, False)),
    ],
)
def test_broker_address_forms(address: str, expected: tuple[str, int, bool]) -> None:
    assert parse_broker_address(address) == expected


def test_defaults_and_metric_names() -> None:
    s = scaler({"topic": "jobs/+/pending", "mode": "retained"})
    d = s.describe()
    assert (d["value"], d["activationValue"], d["windowSeconds"], d["quietPeriodMs"]) == (5.0, 0.0, 30.0, 200)
    assert s.metric_spec().name == "s0-mqtt-jobs-plus-pending"
    assert s.metric_spec().target == 5.0
    assert scaler({"topic": "#", "mode": "rate"}, ctx=ctx(index=1)).metric_spec().name == "s1-mqtt-all"


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"topic": "t"}, {}, "mode"),
        ({"mode": "rate"}, {}, "topic"),
        ({"topic": "t", "mode": "queued"}, {}, "mode"),
        ({"topic": "jobs/#/x", "mode": "rate"}, {}, "topic"),
        ({"topic": "jobs/a+", "mode": "rate"}, {}, "topic"),
        ({"topic": "jobs/x#", "mode": "rate"}, {}, "topic"),
        ({"topic": "t", "mode": "rate", "value": "0"}, {}, "value"),
        ({"topic": "t", "mode": "rate", "value": "lots"}, {}, "value"),
        ({"topic": "t", "mode": "rate", "windowSeconds": "-1"}, {}, "windowSeconds"),
        ({"topic": "t", "mode": "retained", "quietPeriodMs": "0"}, {}, "quietPeriodMs"),
        ({"topic": "t", "mode": "rate", "brokerAddress": "http://b:1883"}, {}, "brokerAddress"),
        ({"topic": "t", "mode": "rate", "brokerAddress": "b:port"}, {}, "brokerAddress"),
        ({"topic": "t", "mode": "rate", "brokerAddress": "mqtt://u:pw@b:1883"}, {}, "brokerAddress"),
        ({"topic": "t", "mode": "rate", "password": "pw"}, {}, "password"),
    ],
)
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"


def test_password_from_auth_params_is_masked() -> None:
    s = scaler({"topic": "t", "mode": "rate"}, auth_params={"username": "u", "password": "pw-9f8e7d"})
    assert s.describe()["password"] == "***"
    assert "pw-9f8e7d" not in repr(s.describe())


# --- retained -----------------------------------------------------------------------------------


async def test_retained_counts_topics_holding_a_retained_message(pub: Publisher) -> None:
    for i in range(17):
        await pub.retain(f"{pub.root}/job/{i}")
    await pub.retain(f"{pub.root}/job/done")
    await pub.clear(f"{pub.root}/job/done")  # an emptied retained message is gone
    await pub.retain(f"{pub.root}/other")  # outside the filter below
    stop = asyncio.Event()

    async def live_traffic() -> None:  # not retained: seen while counting, and must not be counted
        while not stop.is_set():
            await pub.send(f"{pub.root}/job/live")
            await asyncio.sleep(0.01)

    traffic = asyncio.create_task(live_traffic())
    try:
        jobs = scaler({"topic": f"{pub.root}/job/+", "mode": "retained", "value": "5"})
        assert await read_once(jobs) == (17.0, True)
        everything = scaler({"topic": f"{pub.root}/#", "mode": "retained"})
        assert (await read_once(everything))[0] == 18.0
    finally:
        stop.set()
        await traffic


@pytest.mark.parametrize(("activation", "active"), [("16", True), ("17", False)])
async def test_retained_activation(pub: Publisher, activation: str, active: bool) -> None:
    for i in range(17):
        await pub.retain(f"{pub.root}/job/{i}")
    s = scaler({"topic": f"{pub.root}/job/#", "mode": "retained", "activationValue": activation})
    assert await read_once(s) == (17.0, active)


async def test_retained_follows_changes_on_one_connection(pub: Publisher) -> None:
    for i in range(5):
        await pub.retain(f"{pub.root}/job/{i}")
    s = scaler({"topic": f"{pub.root}/job/+", "mode": "retained"})
    try:
        before = _tcp_to(1883)
        assert (await s.get_metric_and_activity()).value == 5.0
        await pub.clear(f"{pub.root}/job/0")
        await pub.clear(f"{pub.root}/job/1")
        assert (await s.get_metric_and_activity()).value == 3.0
        for _ in range(5):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert _tcp_to(1883) == before + 1  # the scaler's one kept connection
    finally:
        await s.close()
    await wait_for_value(lambda: asyncio.sleep(0, _tcp_to(1883)), lambda n: n == before)


def _tcp_to(port: int) -> int:
    """Established TCP connections from this test process to `port`."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def test_retained_nothing_is_zero_and_inactive(pub: Publisher) -> None:
    assert await read_once(scaler({"topic": f"{pub.root}/#", "mode": "retained"})) == (0.0, False)


# --- rate ---------------------------------------------------------------------------------------


async def test_rate_is_messages_in_the_window_per_second(pub: Publisher) -> None:
    s = scaler({"topic": f"{pub.root}/events/+", "mode": "rate", "windowSeconds": "10"})
    try:
        first = await s.get_metric_and_activity()  # starts the subscription
        assert (first.value, first.active) == (0.0, False)
        await pub.send(f"{pub.root}/events/a", 12)
        await pub.send(f"{pub.root}/events/b", 8)
        await pub.send(f"{pub.root}/elsewhere", 30)  # outside the filter
        reading = await wait_for_value(s.get_metric_and_activity, lambda r: r.value >= 2.0)
        assert (reading.value, reading.active) == (20 / 10, True)
    finally:
        await s.close()


async def test_rate_forgets_messages_older_than_the_window(pub: Publisher) -> None:
    s = scaler({"topic": f"{pub.root}/events", "mode": "rate", "windowSeconds": "1", "activationValue": "2"})
    try:
        await s.get_metric_and_activity()
        await pub.send(f"{pub.root}/events", 3)
        seen = await wait_for_value(s.get_metric_and_activity, lambda r: r.value > 0)
        assert (seen.value, seen.active) == (3.0, True)
        gone = await wait_for_value(s.get_metric_and_activity, lambda r: r.value == 0, within=5)
        assert not gone.active
    finally:
        await s.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ebb-mqtt-rate")]


# --- failures and push --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["retained", "rate"])
async def test_wrong_broker_port_is_a_scaler_error(mode: str) -> None:
    port = free_port()
    s = scaler({"topic": "t", "mode": mode, "brokerAddress": f"127.0.0.1:{port}"}, auth_params={"password": "pw-x1"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert "refused" in str(err.value).lower()
    assert "pw-x1" not in str(err.value)


async def test_watch_notifies_on_a_message(pub: Publisher) -> None:
    s = scaler({"topic": f"{pub.root}/wake/#", "mode": "rate"})
    assert s.supports_push
    event = asyncio.Event()
    task = asyncio.create_task(s.watch(event.set))
    try:
        async with asyncio.timeout(WAIT):
            # The subscription may not be in place for the first message: publish until one is seen.
            while not event.is_set():
                await pub.send(f"{pub.root}/wake/now")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), 0.1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await s.close()


class Notifications:
    """Counts watch() notifications; `arrived` is set by each one."""

    def __init__(self) -> None:
        self.count = 0
        self.arrived = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.arrived.set()

    async def beyond(self, count: int) -> None:
        """Wait until more than `count` notifications have come (one that came already counts)."""
        async with asyncio.timeout(WAIT):
            while self.count <= count:
                self.arrived.clear()
                await self.arrived.wait()

    async def settled(self) -> int:
        """The count once no notification has come for 0.3 s (messages still in flight have landed)."""
        while True:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), 0.3)
            except TimeoutError:
                return self.count


async def test_watch_ignores_other_topics(pub: Publisher) -> None:
    s = scaler({"topic": f"{pub.root}/wake", "mode": "rate"})
    seen = Notifications()
    task = asyncio.create_task(s.watch(seen))
    try:
        # Subscribed once a message on the watched topic gets through; then send only elsewhere.
        async with asyncio.timeout(WAIT):
            while not seen.count:
                await pub.send(f"{pub.root}/wake")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(seen.arrived.wait(), 0.05)
        count = await seen.settled()
        await pub.send(f"{pub.root}/other", 5)
        await pub.send(f"{pub.root}/wake")  # a marker after them, on the watched topic
        await seen.beyond(count)
        assert await seen.settled() == count + 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.close()
