"""The nats-jetstream scaler against a private nats-server (JetStream + monitoring port) started per module.

The machine's own NATS on :4222 has no monitoring port, which the scaler needs, so the tests run
`nats-server -js -m <port>` on free loopback ports and publish and consume with nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests.scalers._reads import read_once

from ._servers import NatsServer, free_port, nats_server

WAIT = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with nats_server(tmp_path_factory.mktemp("nats")) as srv:
        yield srv


class Stream:
    def __init__(self, js: JetStreamContext, name: str) -> None:
        self.js = js
        self.name = name
        self.subject = f"{name.lower()}.jobs"

    async def publish(self, n: int) -> None:
        for i in range(n):
            await self.js.publish(self.subject, f"job {i}".encode())

    async def consumer(self, name: str = "workers") -> str:
        await self.js.add_consumer(self.name, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT))
        return name


@pytest.fixture
async def client(server: NatsServer) -> AsyncIterator[NATS]:
    nc = await nats.connect(server.client_url)
    yield nc
    await nc.close()


@pytest.fixture
async def stream(client: NATS) -> AsyncIterator[Stream]:
    js = client.jetstream()
    name = f"EBB_{uuid.uuid4().hex[:10].upper()}"
    s = Stream(js, name)
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
    yield s
    await js.delete_stream(name)


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"js-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="nats-jetstream")


def meta(server: NatsServer | None, stream: str = "S", consumer: str = "C", **extra: str) -> dict[str, str]:
    endpoint = server.monitoring_endpoint if server else f"127.0.0.1:{free_port()}"
    return {
        "natsServerMonitoringEndpoint": endpoint,
        "account": "$G",
        "stream": stream,
        "consumer": consumer,
        **extra,
    }


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build_scaler("nats-jetstream", metadata, ctx=kw.pop("ctx", None) or ctx(), **kw)


# --- parsing ------------------------------------------------------------------------------------


def test_defaults_and_metric_name() -> None:
    s = scaler(meta(None, stream="ORDERS"), ctx=ctx(index=2))
    d = s.describe()
    assert (d["lagThreshold"], d["activationLagThreshold"], d["useHttps"]) == (10, 0, False)
    spec = s.metric_spec()
    assert (spec.name, spec.target) == ("s2-nats-jetstream-ORDERS", 10.0)


def test_endpoint_and_account_from_auth_params() -> None:
    s = scaler(
        {"stream": "S", "consumer": "C"},
        auth_params={"natsServerMonitoringEndpoint": "nats.svc:8222", "account": "$G"},
    )
    assert s.describe()["natsServerMonitoringEndpoint"] == "nats.svc:8222"


@pytest.mark.parametrize(
    ("drop", "extra", "field"),
    [
        ("natsServerMonitoringEndpoint", {}, "natsServerMonitoringEndpoint"),
        ("stream", {}, "stream"),
        ("consumer", {}, "consumer"),
        ("account", {}, "account"),
        (None, {"lagThreshold": "ten"}, "lagThreshold"),
        (None, {"lagThreshold": "0"}, "lagThreshold"),
        (None, {"lagThreshold": "2.5"}, "lagThreshold"),
        (None, {"activationLagThreshold": "x"}, "activationLagThreshold"),
        (None, {"useHttps": "perhaps"}, "useHttps"),
        (None, {"natsServerMonitoringEndpoint": "http://nats:8222"}, "natsServerMonitoringEndpoint"),
        (None, {"natsServerAddress": "nats.svc:4222"}, "natsServerAddress"),
    ],
)
def test_bad_metadata_names_the_parameter(drop: str | None, extra: dict[str, str], field: str) -> None:
    m = {**meta(None), **extra}
    if drop:
        del m[drop]
    with pytest.raises(SpecError) as err:
        scaler(m)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"


def test_describe_masks_credentials_in_the_client_address() -> None:
    s = scaler(meta(None, natsServerAddress="nats://bob:hunter2-pw@nats.svc:4222"))
    assert s.describe()["natsServerAddress"] == "nats://***@nats.svc:4222"
    assert "hunter2-pw" not in repr(s.describe())


# --- lag ----------------------------------------------------------------------------------------


async def test_lag_counts_pending_and_unacknowledged(server: NatsServer, stream: Stream) -> None:
    consumer = await stream.consumer()
    await stream.publish(17)
    s = scaler(meta(server, stream.name, consumer, lagThreshold="5"))
    try:
        assert s.metric_spec().target == 5.0
        assert (await s.get_metric_and_activity()).value == 17.0
        sub = await stream.js.pull_subscribe_bind(consumer, stream.name)
        taken = await sub.fetch(4, timeout=WAIT)
        assert len(taken) == 4
        # Delivered but not acknowledged: still lag (num_ack_pending).
        assert (await s.get_metric_and_activity()).value == 17.0
        for msg in taken:
            await msg.ack_sync()
        reading = await s.get_metric_and_activity()
        assert (reading.value, reading.active) == (13.0, True)
    finally:
        await s.close()


@pytest.mark.parametrize(("activation", "active"), [("2", True), ("3", False), ("10", False)])
async def test_activation(server: NatsServer, stream: Stream, activation: str, active: bool) -> None:
    consumer = await stream.consumer()
    await stream.publish(3)
    s = scaler(meta(server, stream.name, consumer, activationLagThreshold=activation))
    assert await read_once(s) == (3.0, active)


async def test_empty_consumer_is_inactive(server: NatsServer, stream: Stream) -> None:
    consumer = await stream.consumer()
    assert await read_once(scaler(meta(server, stream.name, consumer))) == (0.0, False)


async def test_account_id_finds_the_account(server: NatsServer, stream: Stream) -> None:
    consumer = await stream.consumer()
    await stream.publish(2)
    m = meta(server, stream.name, consumer)
    del m["account"]
    assert await read_once(scaler({**m, "accountID": "$G"})) == (2.0, True)


@pytest.mark.parametrize(
    ("what", "match"),
    [
        ("stream", "stream 'NOPE' not found"),
        ("consumer", "consumer 'nope' not found"),
        ("account", "account"),
    ],
)
async def test_missing_stream_consumer_or_account(server: NatsServer, stream: Stream, what: str, match: str) -> None:
    consumer = await stream.consumer()
    m = meta(server, stream.name, consumer)
    m[what] = {"stream": "NOPE", "consumer": "nope", "account": "ACME"}[what]
    with pytest.raises(ScalerError, match=match):
        await read_once(scaler(m))


async def test_server_down() -> None:
    m = meta(None)
    with pytest.raises(ScalerError) as err:
        await read_once(scaler(m))
    assert m["natsServerMonitoringEndpoint"].split(":")[1] in str(err.value)


async def test_repeated_polls_reuse_one_session(server: NatsServer, stream: Stream) -> None:
    consumer = await stream.consumer()
    await stream.publish(1)
    s = scaler(meta(server, stream.name, consumer))
    try:
        values = {(await s.get_metric_and_activity()).value for _ in range(50)}
        assert values == {1.0}
    finally:
        await s.close()
    await s.close()  # closing twice is harmless


# --- push ---------------------------------------------------------------------------------------


async def _notified_after_publishing(stream: Stream, event: asyncio.Event) -> int:
    """Publish until the watcher reports; the subscription may need a moment, so one message may not do."""
    sent = 0
    async with asyncio.timeout(WAIT):
        while not event.is_set():
            await stream.publish(1)
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 0.1)
    return sent


async def test_watch_notifies_on_publish_without_consuming(server: NatsServer, stream: Stream) -> None:
    consumer = await stream.consumer()
    s = scaler(meta(server, stream.name, consumer, natsServerAddress=server.client_url))
    assert s.supports_push
    event = asyncio.Event()
    task = asyncio.create_task(s.watch(event.set))
    try:
        sent = await _notified_after_publishing(stream, event)
        assert sent >= 1
        # The watcher's core subscription took copies: the consumer still has every message to do.
        assert (await s.get_metric_and_activity()).value == float(sent)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await s.close()


async def test_watch_without_client_address_says_what_is_missing(server: NatsServer) -> None:
    s = scaler(meta(server))
    with pytest.raises(ScalerError, match="natsServerAddress"):
        await s.watch(lambda: None)


async def test_watch_reconnects_after_a_server_restart(tmp_path: Path) -> None:
    # A server of its own, restarted on the same ports and store: the stream survives on disk.
    with nats_server(tmp_path) as first:
        nc = await nats.connect(first.client_url)
        js = nc.jetstream()
        await js.add_stream(name="RESTART", subjects=["restart.>"])
        await nc.close()
        s = scaler(meta(first, "RESTART", "C", natsServerAddress=first.client_url))
        event = asyncio.Event()
        task = asyncio.create_task(s.watch(event.set))
        try:
            nc = await nats.connect(first.client_url)
            await _notified_after_publishing(Stream(nc.jetstream(), "RESTART"), event)
            await nc.close()
        except BaseException:
            task.cancel()
            raise
    event.clear()
    try:
        with nats_server(tmp_path, ports=first) as second:
            nc = await nats.connect(second.client_url)
            await _notified_after_publishing(Stream(nc.jetstream(), "RESTART"), event)
            await nc.close()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await s.close()
