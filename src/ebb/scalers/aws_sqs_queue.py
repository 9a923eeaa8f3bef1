"""`aws-sqs-queue`: KEDA's SQS scaler. The metric is the queue's approximate backlog.

One `GetQueueAttributes` call per poll (pkg/scalers/aws_sqs_queue_scaler.go): the visible messages
(`ApproximateNumberOfMessages`), plus the in-flight ones (`...NotVisible`: received, not yet deleted) unless
`scaleOnInFlight: false`, plus the delayed ones (`...Delayed`) with `scaleOnDelayed: true`.

SQS always polls; it cannot push. SQS has no subscription that tells of a new message without taking it:
a `ReceiveMessage` long poll returns the message itself and hides it from the workers for its visibility
timeout, so watching that way would steal and delay the very work being counted. The counts are
approximate by SQS's own account and settle within about a minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final
from urllib.parse import urlsplit

from ebb.scalers._aws import AwsMetadata, AwsScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, TriggerContext, metric_name, param

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

VISIBLE: Final = "ApproximateNumberOfMessages"
IN_FLIGHT: Final = "ApproximateNumberOfMessagesNotVisible"
DELAYED: Final = "ApproximateNumberOfMessagesDelayed"


class AwsSqsQueueMetadata(AwsMetadata):
    queue_url: str = param(
        name="queueURL",
        sources=("triggerMetadata", "resolvedEnv"),
        min_length=1,
        description="`https://sqs.<region>.amazonaws.com/<account>/<name>`, or the name alone",
    )
    #: KEDA takes any integer; the HPA refuses a target that is not positive.
    queue_length: int = param(5, name="queueLength", gt=0, description="> 0. Target messages per replica")
    activation_queue_length: int = param(0, name="activationQueueLength")
    scale_on_in_flight: bool = param(
        True, name="scaleOnInFlight", description="count in-flight messages (`ApproximateNumberOfMessagesNotVisible`)"
    )
    scale_on_delayed: bool = param(
        False, name="scaleOnDelayed", description="count delayed messages (`ApproximateNumberOfMessagesDelayed`)"
    )


def queue_name(queue_url: str) -> str | None:
    """The queue's name from its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`); None if malformed.

    As KEDA: text that is not a URL (nor an absolute path) is the name itself.
    """
    if "://" not in queue_url and not queue_url.startswith("/"):
        return queue_url
    parts = urlsplit(queue_url).path.split("/")
    if len(parts) != 3 or not parts[2]:
        return None
    return parts[2]


class AwsSqsQueueScaler(AwsScaler):
    """Scales on an SQS queue's backlog; `queueLength` messages per replica."""

    type_name: ClassVar[str] = "aws-sqs-queue"
    Metadata: ClassVar[type[ScalerMetadata]] = AwsSqsQueueMetadata
    service: ClassVar[str] = "sqs"
    meta: AwsSqsQueueMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        name = queue_name(self.meta.queue_url)
        if name is None:
            self.bad("queueURL", "cannot read the queue name from queueURL: expected .../<account id>/<queue name>")
        self.queue_name = name
        self.attributes: list[QueueAttributeNameType] = [VISIBLE]
        if self.meta.scale_on_in_flight:
            self.attributes.append(IN_FLIGHT)
        if self.meta.scale_on_delayed:
            self.attributes.append(DELAYED)

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"aws-sqs-{self.queue_name}"),
            target=float(self.meta.queue_length),
            metric_type=self.ctx.metric_type,
        )

    def activation(self) -> float:
        return float(self.meta.activation_queue_length)

    async def query(self, client: Any) -> float:
        sqs: SQSClient = client
        answer = await sqs.get_queue_attributes(QueueUrl=self.meta.queue_url, AttributeNames=self.attributes)
        found = answer.get("Attributes", {})
        total = 0
        for attribute in self.attributes:
            text = found.get(attribute)
            if text is None:
                raise self.error(f"the queue's attributes lack {attribute}")
            try:
                total += int(text)
            except ValueError:
                raise self.error(f"{attribute} is not a whole number: {text[:40]!r}") from None
        return float(total)
