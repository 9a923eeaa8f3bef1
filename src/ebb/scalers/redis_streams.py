"""`redis-streams`: KEDA's Redis Streams scaler, in its three modes chosen as KEDA chooses them.

- no `consumerGroup`: the stream's length (XLEN), `streamLength` per replica;
- `consumerGroup` and a non-zero `lagCount`: the group's lag (XINFO GROUPS, Redis 7+), `lagCount` per replica;
  a stream not created yet counts 0, a group not created yet counts the whole stream (XLEN);
- `consumerGroup` otherwise: the group's pending entries (XPENDING), `pendingEntriesCount` per replica.

`activationLagCount` is the activation threshold in every mode, as in KEDA.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ebb.scalers._redis_common import RedisConnectionMetadata, RedisScalerBase
from ebb.scalers.base import (
    MetricSpec,
    ScalerMetadata,
    ScalerReading,
    activity,
    metric_name,
    param,
)

Mode = Literal["pendingEntriesCount", "streamLength", "lagCount"]


class RedisStreamsMetadata(RedisConnectionMetadata):
    stream: str = param(name="stream")
    consumer_group: str | None = param(None, name="consumerGroup")
    pending_entries_count: int = param(5, name="pendingEntriesCount", gt=0, description="> 0")
    stream_length: int = param(5, name="streamLength", gt=0, description="> 0")
    lag_count: int = param(0, name="lagCount", ge=0, description="0 = not set")
    activation_lag_count: int = param(
        0, name="activationLagCount", description="the activation threshold in every mode"
    )

    @property
    def mode(self) -> Mode:
        """Which number is read: the name of the parameter that holds its target."""
        if not self.consumer_group:
            return "streamLength"
        return "lagCount" if self.lag_count != 0 else "pendingEntriesCount"


class RedisStreamsScaler(RedisScalerBase):
    """Scales on a Redis stream's length, a consumer group's pending entries, or its lag."""

    type_name: ClassVar[str] = "redis-streams"
    Metadata: ClassVar[type[ScalerMetadata]] = RedisStreamsMetadata
    meta: RedisStreamsMetadata

    def metric_spec(self) -> MetricSpec:
        target = {
            "streamLength": self.meta.stream_length,
            "lagCount": self.meta.lag_count,
            "pendingEntriesCount": self.meta.pending_entries_count,
        }[self.meta.mode]
        return MetricSpec(
            name=metric_name(self.ctx, f"redis-streams-{self.meta.stream}"),
            target=float(target),
            metric_type=self.ctx.metric_type,
        )

    async def read(self) -> ScalerReading:
        mode = self.meta.mode
        if mode == "streamLength":
            count = await self.call(lambda c: c.xlen(self.meta.stream))
        elif mode == "lagCount":
            count = await self.call(self._lag)
        else:
            count = await self.call(self._pending)
        return ScalerReading(value=float(count), active=activity(count, self.meta.activation_lag_count))

    async def _pending(self, client: aioredis.Redis) -> int:
        summary = await client.xpending(self.meta.stream, self.meta.consumer_group or "")
        return int(summary["pending"])

    async def _lag(self, client: aioredis.Redis) -> int:
        try:
            groups: list[dict[str, Any]] = await client.xinfo_groups(self.meta.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return 0  # no stream yet: nothing to do
            raise
        for group in groups:
            if group.get("name") != self.meta.consumer_group:
                continue
            if "lag" not in group:
                raise self.error("lagCount needs Redis 7 or later (XINFO GROUPS reports no lag)")
            if group["lag"] is not None:
                return int(group["lag"])
            # Redis cannot tell the lag (entries deleted or trimmed past the group): the stream's
            # length bounds it. KEDA reports -1 here, which reads as "no work".
            break
        # No such group yet (consumers not started): all of the stream is waiting, as KEDA counts it.
        return int(await client.xlen(self.meta.stream))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mode": self.meta.mode}

    @property
    def watched_key(self) -> str:
        return self.meta.stream

    async def notification_flag(self, client: aioredis.Redis) -> str:
        return "t"
