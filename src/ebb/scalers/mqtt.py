"""MQTT trigger (ebb's own; KEDA has none). Two measures, chosen with `mode`:

`retained`: how many topics matching `topic` (wildcards `+` and `#` allowed) hold a retained message
right now. Each poll subscribes (QoS 0) on a connection kept per scaler, counts the distinct topics of
the messages the broker delivers with the retain flag, stops once no retained message has come for
`quietPeriodMs` (200 ms), then unsubscribes. Fits "one retained message per pending job, cleared
(empty retained payload) when done". Limits: the end of the broker's retained burst is inferred from
that quiet period, so a broker slower than it to send them under-counts; only topics this user may
read are seen; `$`-topics are not matched by a leading wildcard, as MQTT prescribes.

`rate`: messages per second published on `topic`, seen by one long-lived subscription (QoS 0) that
starts at the first poll: the messages of the last `windowSeconds` (30) divided by `windowSeconds`,
counted in 0.1 s buckets. Until the subscription has run a full window the rate is under-stated; while
it is disconnected (it reconnects by itself) a poll fails rather than report a rate with a hole in it;
for one window after a reconnection the rate misses what was published during the outage. QoS 0 means
a loaded broker may drop copies, which this rate would not see.

Not offered: the number of messages queued for a persistent session. Mosquitto (like most brokers)
does not publish per-session queue depth, and reading it by connecting as that client would take the
messages from their real consumer.

Both modes: the target is `value` (5); active iff the measure exceeds `activationValue` (0).
Push: `watch()` subscribes to `topic` and calls `notify()` on every message (retained ones included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Literal, cast
from urllib.parse import quote, urlsplit

import aiomqtt
from pydantic import field_validator

from ebb.errors import redact
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

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883}
#: Width of one counting bucket of the rate mode, in seconds.
BUCKET = 0.1
RETRY_MAX = 10.0
_CLOSE_TIMEOUT = 1.0


def parse_broker_address(address: str) -> tuple[str, int, bool]:
    """(host, port, tls) from `host:port`, `host`, `mqtt://host[:port]` or `mqtts://host[:port]`."""
    parts = urlsplit(address if "://" in address else f"mqtt://{address}")
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"unknown scheme {scheme!r}: expected host:port, mqtt://host:port or mqtts://host:port")
    if parts.username or parts.password:
        raise ValueError("give username and password as parameters (password through authParams), not in the URL")
    if parts.path not in ("", "/") or not parts.hostname:
        raise ValueError("expected host:port, mqtt://host:port or mqtts://host:port")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    return parts.hostname, port, scheme == "mqtts"


class MqttMetadata(ScalerMetadata):
    broker_address: str = param(
        name="brokerAddress",
        sources=("triggerMetadata", "authParams", "resolvedEnv"),
        min_length=1,
        description="`host:port`, `mqtt://…` or `mqtts://…`. No credentials in the URL",
    )
    topic: str = param(name="topic", min_length=1, description="a topic filter")
    mode: Literal["retained", "rate"] = param(name="mode", description="`retained` or `rate`")
    value: float = param(5.0, name="value", gt=0, description="> 0")
    activation_value: float = param(0.0, name="activationValue")
    window_seconds: float = param(30.0, name="windowSeconds", gt=0, description="`rate` only")
    quiet_period_ms: int = param(200, name="quietPeriodMs", gt=0, description="`retained` only")
    username: str | None = param(None, name="username", sources=("triggerMetadata", "authParams", "resolvedEnv"))
    password: str | None = param(None, name="password", sources=("authParams", "resolvedEnv"), secret=True)

    @field_validator("broker_address")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_broker_address(value)
        return value

    @field_validator("topic")
    @classmethod
    def _topic_filter(cls, value: str) -> str:
        levels = value.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise ValueError("'#' must be a whole level and the last one (as in 'jobs/#')")
            if "+" in level and level != "+":
                raise ValueError("'+' must be a whole level (as in 'jobs/+/pending')")
        if "\x00" in value:
            raise ValueError("a topic cannot contain the NUL character")
        return value


class MqttScaler(Scaler):
    type_name: ClassVar[str] = "mqtt"
    Metadata: ClassVar[type[ScalerMetadata]] = MqttMetadata
    supports_push: ClassVar[bool] = True

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.m = cast(MqttMetadata, meta)
        self.host, self.port, self.tls = parse_broker_address(self.m.broker_address)
        self._poll: aiomqtt.Client | None = None
        self._rate_task: asyncio.Task[None] | None = None
        self._rate_attempted: asyncio.Event | None = None
        self._rate_connected = False
        self._rate_error = ""
        self._buckets: deque[list[int]] = deque()

    def metric_spec(self) -> MetricSpec:
        readable = self.m.topic.replace("+", "plus").replace("#", "all")
        return MetricSpec(
            name=metric_name(self.ctx, f"mqtt-{quote(readable, safe='/')}"),
            target=self.m.value,
            metric_type=self.ctx.metric_type,
        )

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.m.username,
            password=self.m.password,
            identifier=f"ebb-{uuid.uuid4().hex[:12]}",
            timeout=self.timeout,
            keepalive=30,
            tls_context=ssl.create_default_context() if self.tls else None,
        )

    async def read(self) -> ScalerReading:
        measure = float(await self._count_retained()) if self.m.mode == "retained" else await self._rate()
        return ScalerReading(measure, activity(measure, self.m.activation_value))

    # --- retained ---------------------------------------------------------------------------------

    async def _count_retained(self) -> int:
        # A kept connection may have died since the last poll: one fresh attempt before giving up.
        for _ in range(2):
            fresh = self._poll is None
            if self._poll is None:
                client = self._client()
                await client.__aenter__()
                self._poll = client
            try:
                return await self._collect_retained(self._poll)
            except aiomqtt.MqttError:
                await self._drop_poll_client()
                if fresh:
                    raise
            except BaseException:
                await self._drop_poll_client()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _collect_retained(self, client: aiomqtt.Client) -> int:
        loop = asyncio.get_running_loop()
        quiet = self.m.quiet_period_ms / 1000.0
        topics: set[str] = set()
        await client.subscribe(self.m.topic, qos=0)
        deadline = loop.time() + quiet
        messages = client.messages
        while (remaining := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), remaining)
            except TimeoutError:
                break
            # Live traffic on the topic does not extend the wait: only the retained burst does.
            if message.retain:
                topics.add(message.topic.value)
                deadline = loop.time() + quiet
        await client.unsubscribe(self.m.topic)
        # Once the broker has acknowledged the unsubscribe, nothing more comes for it: clear what is queued.
        while len(messages):
            await anext(messages)
        return len(topics)

    async def _drop_poll_client(self) -> None:
        client, self._poll = self._poll, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), _CLOSE_TIMEOUT)

    # --- rate -------------------------------------------------------------------------------------

    async def _rate(self) -> float:
        if self._rate_task is None:
            self._rate_attempted = asyncio.Event()
            self._rate_task = asyncio.create_task(self._subscribe_for_rate(), name=f"ebb-mqtt-rate-{self.m.topic}")
        assert self._rate_attempted is not None
        await self._rate_attempted.wait()
        if not self._rate_connected:
            raise self.error(f"not subscribed to {self.host}:{self.port} ({self._rate_error}); retrying")
        return self._seen_in_window(time.monotonic()) / self.m.window_seconds

    async def _subscribe_for_rate(self) -> None:
        assert self._rate_attempted is not None
        pause = 0.5
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.m.topic, qos=0)
                    self._rate_connected, self._rate_error = True, ""
                    self._rate_attempted.set()
                    pause = 0.5
                    async for _ in client.messages:
                        self._count(time.monotonic())
            except Exception as exc:  # whatever broke the subscription, the next attempt may succeed
                self._rate_error = redact(str(exc) or type(exc).__name__, self.secrets)
            finally:
                self._rate_connected = False
            self._rate_attempted.set()
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    def _count(self, now: float) -> None:
        bucket = int(now / BUCKET)
        if self._buckets and self._buckets[-1][0] == bucket:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([bucket, 1])
            self._prune(bucket)

    def _prune(self, bucket: int) -> None:
        oldest = bucket - round(self.m.window_seconds / BUCKET)
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()

    def _seen_in_window(self, now: float) -> int:
        self._prune(int(now / BUCKET))
        return sum(count for _, count in self._buckets)

    # --- push and lifecycle ------------------------------------------------------------------------

    async def watch(self, notify: Callable[[], None]) -> None:
        """Notify on every message on `topic`, reconnecting until cancelled."""
        pause = 0.5
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(self.m.topic, qos=0)
                    pause = 0.5
                    async for _ in client.messages:
                        notify()
            except aiomqtt.MqttError as exc:
                log.warning(
                    "%s: mqtt watch of %r lost, reconnecting in %gs: %s",
                    self.ctx.object_ref,
                    self.m.topic,
                    pause,
                    redact(str(exc), self.secrets),
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    async def close(self) -> None:
        task, self._rate_task = self._rate_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rate_connected = False
        self._buckets.clear()
        await self._drop_poll_client()
