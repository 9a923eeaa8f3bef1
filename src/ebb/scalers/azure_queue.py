"""`azure-queue`: KEDA's Azure Storage queue scaler. The metric is the queue's message count.

As KEDA (pkg/scalers/azure_queue_scaler.go): `queueLengthStrategy: all` reads the queue's approximate
message count, which includes messages that are invisible while a consumer holds them;
`visibleonly` peeks at up to 32 messages and counts them, falling back to the approximate count when
all 32 are visible (peeking cannot see further).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from azure.storage.queue.aio import QueueClient

from ebb.scalers._azure_storage import AzureStorageMetadata, AzureStorageScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, ScalerReading, activity, metric_name, param

#: The most messages one Peek Messages call returns (the service's limit, and KEDA's).
MAX_PEEK_MESSAGES = 32


class AzureQueueMetadata(AzureStorageMetadata):
    queue_name: str = param(name="queueName", min_length=1)
    queue_length: int = param(5, name="queueLength", gt=0, description="> 0, messages per replica")
    activation_queue_length: int = param(0, name="activationQueueLength")
    queue_length_strategy: Literal["all", "visibleonly"] = param(
        "all", name="queueLengthStrategy", description="`all` or `visibleonly`"
    )


class AzureQueueScaler(AzureStorageScaler):
    """Scales on an Azure Storage queue's length; `queueLength` messages per replica."""

    type_name: ClassVar[str] = "azure-queue"
    Metadata: ClassVar[type[ScalerMetadata]] = AzureQueueMetadata
    service: ClassVar[Literal["queue"]] = "queue"
    meta: AzureQueueMetadata

    def make_client(self) -> QueueClient:
        assert self.meta.connection is not None
        return QueueClient.from_connection_string(self.meta.connection, self.meta.queue_name, **self.client_options())

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"azure-queue-{self.meta.queue_name}"),
            target=float(self.meta.queue_length),
            metric_type=self.ctx.metric_type,
        )

    async def read(self) -> ScalerReading:
        count = await self.call(self._count, f"queue {self.meta.queue_name!r}")
        return ScalerReading(value=float(count), active=activity(count, self.meta.activation_queue_length))

    async def _count(self, client: Any) -> int:
        if self.meta.queue_length_strategy == "visibleonly":
            peeked = await client.peek_messages(max_messages=MAX_PEEK_MESSAGES)
            if len(peeked) < MAX_PEEK_MESSAGES:
                return len(peeked)
        properties = await client.get_queue_properties()
        return int(properties.approximate_message_count or 0)
