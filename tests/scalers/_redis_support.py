"""Helpers shared by the redis and redis-streams tests (the real Redis on 127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from ebb.scalers import Scaler, TriggerContext, build_scaler

ADDRESS = "127.0.0.1:6379"
NOTIFY_CONFIG = "notify-keyspace-events"


def unique(prefix: str) -> str:
    return f"ebb-test-{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def context(name: str | None = None, trigger_index: int = 0, timeout: float = 3.0) -> TriggerContext:
    return TriggerContext(name=name or unique("so"), trigger_index=trigger_index, timeout=timeout)


class ScalerFactory:
    """Builds scalers and closes every one of them at the end of the test."""

    def __init__(self) -> None:
        self.made: list[Scaler] = []

    def __call__(
        self,
        trigger_type: str,
        metadata: Mapping[str, str],
        *,
        ctx: TriggerContext | None = None,
        auth_params: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
        metric_type: Any = None,
    ) -> Scaler:
        scaler = build_scaler(
            trigger_type,
            metadata,
            ctx=ctx or context(),
            auth_params=auth_params,
            resolved_env=resolved_env,
            metric_type=metric_type,
        )
        self.made.append(scaler)
        return scaler

    async def close_all(self) -> None:
        for scaler in self.made:
            await scaler.close()


@asynccontextmanager
async def admin_client(db: int = 0) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=6379, db=db, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def connections_named(client: aioredis.Redis, name: str) -> list[dict[str, Any]]:
    return [c for c in await client.client_list() if c.get("name") == name]


async def eventually(check: Callable[[], Any], limit: float = 10.0) -> None:
    """Wait until the async `check()` is truthy (server-side state settles asynchronously)."""
    async with asyncio.timeout(limit):
        while not await check():  # noqa: ASYNC110 - the state is on the server: nothing to wait on but polling
            await asyncio.sleep(0.02)


async def subscribed(client: aioredis.Redis, channel: str) -> bool:
    counts = dict(await client.pubsub_numsub(channel))
    return bool(counts.get(channel, 0))


@asynccontextmanager
async def notify_config(client: aioredis.Redis, value: str) -> AsyncIterator[None]:
    """Set notify-keyspace-events for the test and restore what the server had."""
    before = (await client.config_get(NOTIFY_CONFIG))[NOTIFY_CONFIG]
    await client.config_set(NOTIFY_CONFIG, value)
    try:
        yield
    finally:
        await client.config_set(NOTIFY_CONFIG, before)


class Notifications:
    """A `notify` callback that counts calls and wakes a waiter."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self, limit: float = 10.0) -> None:
        await asyncio.wait_for(self.event.wait(), limit)
        self.event.clear()
