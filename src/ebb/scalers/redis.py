"""`redis`: KEDA's Redis list scaler. The metric is the length of `listName`.

Like KEDA (pkg/scalers/redis_scaler.go), the count is taken by one server-side script that also counts
sets, sorted sets and hashes by their cardinality, treats a missing key as empty, and refuses other types.
"""

from __future__ import annotations

from typing import ClassVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ebb.scalers._redis_common import RedisConnectionMetadata, RedisScalerBase, key_type_flag
from ebb.scalers.base import (
    MetricSpec,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    activity,
    metric_name,
    param,
)

# One round trip, and type and length read atomically.
_COUNT_SCRIPT = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'list' or kind == 'none' then return redis.call('LLEN', KEYS[1]) end
if kind == 'set' then return redis.call('SCARD', KEYS[1]) end
if kind == 'zset' then return redis.call('ZCARD', KEYS[1]) end
if kind == 'hash' then return redis.call('HLEN', KEYS[1]) end
return redis.error_reply('EBBTYPE ' .. kind)
"""


class RedisMetadata(RedisConnectionMetadata):
    list_name: str = param(name="listName")
    list_length: int = param(5, name="listLength", gt=0, description="> 0, items per replica")
    activation_list_length: int = param(0, name="activationListLength")


class RedisScaler(RedisScalerBase):
    """Scales on the length of a Redis list; `listLength` items per replica."""

    type_name: ClassVar[str] = "redis"
    Metadata: ClassVar[type[ScalerMetadata]] = RedisMetadata
    meta: RedisMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self._script: AsyncScript | None = None
        self._script_client: aioredis.Redis | None = None

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"redis-{self.meta.list_name}"),
            target=float(self.meta.list_length),
            metric_type=self.ctx.metric_type,
        )

    async def read(self) -> ScalerReading:
        length = await self.call(self._count)
        return ScalerReading(value=float(length), active=activity(length, self.meta.activation_list_length))

    async def _count(self, client: aioredis.Redis) -> int:
        if self._script is None or self._script_client is not client:
            # Sent by SHA after the first call; redis-py reloads it if the server forgot it.
            self._script, self._script_client = client.register_script(_COUNT_SCRIPT), client
        try:
            return int(await self._script(keys=[self.meta.list_name]))
        except ResponseError as exc:
            if "EBBTYPE" not in str(exc):
                raise
            kind = str(exc).rsplit("EBBTYPE", 1)[1].strip()
            raise self.error(
                f"key {self.meta.list_name!r} holds a {kind}; the redis trigger counts lists "
                "(and, as KEDA does, sets, sorted sets and hashes)"
            ) from None

    @property
    def watched_key(self) -> str:
        return self.meta.list_name

    async def notification_flag(self, client: aioredis.Redis) -> str:
        # The key may be a set, sorted set or hash: their writes are announced under other classes.
        try:
            return key_type_flag(str(await client.type(self.meta.list_name)))
        except ResponseError:
            return "l"
