"""`aws-dynamodb-streams`: KEDA's DynamoDB Streams scaler. The metric is the table stream's shard count.

As KEDA (pkg/scalers/aws_dynamodb_streams_scaler.go): the stream's ARN is the table's `LatestStreamArn`
(`DescribeTable`, asked once), and each poll counts the shards `DescribeStream` lists, page by page (100
shards a page). The count includes closed shards that DynamoDB still lists, as KEDA's does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from botocore.exceptions import ClientError

from ebb.scalers._aws import AwsMetadata, AwsScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, TriggerContext, metric_name, param

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient
    from types_aiobotocore_dynamodbstreams.type_defs import DescribeStreamInputTypeDef


class AwsDynamoDBStreamsMetadata(AwsMetadata):
    table_name: str = param(
        name="tableName", min_length=1, description="the table must have a stream (`StreamSpecification`)"
    )
    #: KEDA takes any integer; the HPA refuses a target that is not positive.
    shard_count: int = param(2, name="shardCount", gt=0, description="> 0. Target shards per replica")
    activation_shard_count: int = param(0, name="activationShardCount")


class AwsDynamoDBStreamsScaler(AwsScaler):
    """Scales on the shards of a DynamoDB table's stream; `shardCount` shards per replica."""

    type_name: ClassVar[str] = "aws-dynamodb-streams"
    Metadata: ClassVar[type[ScalerMetadata]] = AwsDynamoDBStreamsMetadata
    service: ClassVar[str] = "dynamodbstreams"
    meta: AwsDynamoDBStreamsMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.stream_arn: str | None = None

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"aws-dynamodb-streams-{self.meta.table_name}"),
            target=float(self.meta.shard_count),
            metric_type=self.ctx.metric_type,
        )

    def activation(self) -> float:
        return float(self.meta.activation_shard_count)

    async def _stream_arn(self) -> str:
        if self.stream_arn is None:
            tables: DynamoDBClient = await self.client_for("dynamodb")
            table = (await tables.describe_table(TableName=self.meta.table_name))["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise self.error(
                    f"table {self.meta.table_name!r} has no stream: enable DynamoDB Streams on it (StreamSpecification)"
                )
            self.stream_arn = arn
        return self.stream_arn

    async def query(self, client: Any) -> float:
        streams: DynamoDBStreamsClient = client
        arn = await self._stream_arn()
        shards = 0
        request: DescribeStreamInputTypeDef = {"StreamArn": arn}
        try:
            while True:
                description = (await streams.describe_stream(**request))["StreamDescription"]
                shards += len(description.get("Shards", []))
                last = description.get("LastEvaluatedShardId")
                if not last:
                    return float(shards)
                if last == request.get("ExclusiveStartShardId"):
                    raise self.error(f"DescribeStream returned the same page twice (after shard {last})")
                request = {"StreamArn": arn, "ExclusiveStartShardId": last}
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                self.stream_arn = None  # the table or its stream was replaced: ask for the ARN again next time
            raise
