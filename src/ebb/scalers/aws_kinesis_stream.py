"""`aws-kinesis-stream`: KEDA's Kinesis scaler. The metric is the stream's number of open shards.

One `DescribeStreamSummary` call per poll (pkg/scalers/aws_kinesis_stream_scaler.go): `OpenShardCount`.
Consumers follow the stream's resharding: `shardCount` open shards per replica (2 by default, as KEDA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ebb.scalers._aws import AwsMetadata, AwsScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, metric_name, param

if TYPE_CHECKING:
    from types_aiobotocore_kinesis import KinesisClient


class AwsKinesisStreamMetadata(AwsMetadata):
    stream_name: str = param(name="streamName", min_length=1)
    #: KEDA takes any integer; the HPA refuses a target that is not positive.
    shard_count: int = param(2, name="shardCount", gt=0, description="> 0. Target open shards per replica")
    activation_shard_count: int = param(0, name="activationShardCount")


class AwsKinesisStreamScaler(AwsScaler):
    """Scales on a Kinesis stream's open shards; `shardCount` shards per replica."""

    type_name: ClassVar[str] = "aws-kinesis-stream"
    Metadata: ClassVar[type[ScalerMetadata]] = AwsKinesisStreamMetadata
    service: ClassVar[str] = "kinesis"
    meta: AwsKinesisStreamMetadata

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"aws-kinesis-{self.meta.stream_name}"),
            target=float(self.meta.shard_count),
            metric_type=self.ctx.metric_type,
        )

    def activation(self) -> float:
        return float(self.meta.activation_shard_count)

    async def query(self, client: Any) -> float:
        kinesis: KinesisClient = client
        answer = await kinesis.describe_stream_summary(StreamName=self.meta.stream_name)
        return float(answer["StreamDescriptionSummary"]["OpenShardCount"])
