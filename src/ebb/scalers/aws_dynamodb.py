"""`aws-dynamodb`: KEDA's DynamoDB scaler. The metric is the number of items a `Query` matches.

One `Query` per poll (pkg/scalers/aws_dynamodb_scaler.go) on `tableName` (or its index `indexName`) with
`keyConditionExpression`, an optional `filterExpression`, and the names and values those expressions use, given
as JSON: `expressionAttributeNames` maps `#name` placeholders to attribute names, `expressionAttributeValues`
maps `:value` placeholders to values in DynamoDB's JSON (`{":s": {"S": "pending"}}`).

As in KEDA, the count is that of one page of the query: DynamoDB stops a page after 1 MB of items read, so a
larger result counts only its first megabyte. ebb asks for the count alone (`Select: COUNT`), which reads the
same items but sends none of them back.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator

from ebb.scalers._aws import AwsMetadata, AwsScaler
from ebb.scalers.base import (
    MetricSpec,
    ScalerMetadata,
    metric_name,
    param,
    require_target_unless_metric_source,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef

#: The attribute value types KEDA reads from expressionAttributeValues (no sets: SS, NS, BS).
VALUE_TYPES = ("S", "N", "BOOL", "B", "L", "M", "NULL")


def _attribute_value(value: Any, where: str) -> dict[str, Any]:
    """One value in DynamoDB's JSON, as the AWS client takes it; ValueError naming `where` otherwise."""
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"{where} must be an object with one type key, one of {', '.join(VALUE_TYPES)}")
    [(kind, inner)] = value.items()
    if kind in ("S", "N", "B") and not isinstance(inner, str):
        raise ValueError(f"{where}: the {kind} value must be given as a string")
    if kind == "S":
        return {"S": inner}
    if kind == "N":
        try:
            float(inner)
        except ValueError:
            raise ValueError(f"{where}: {inner!r} is not a number") from None
        return {"N": inner}
    if kind == "B":
        return {"B": inner.encode()}  # as KEDA: the string's own bytes
    if kind == "BOOL":
        if not isinstance(inner, bool):
            raise ValueError(f"{where}: the BOOL value must be true or false")
        return {"BOOL": inner}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "L":
        if not isinstance(inner, list):
            raise ValueError(f"{where}: the L value must be a list")
        return {"L": [_attribute_value(v, f"{where}[{i}]") for i, v in enumerate(inner)]}
    if kind == "M":
        if not isinstance(inner, dict):
            raise ValueError(f"{where}: the M value must be an object")
        return {"M": {k: _attribute_value(v, f"{where}.{k}") for k, v in inner.items()}}
    raise ValueError(f"{where}: unsupported type {kind!r}; one of {', '.join(VALUE_TYPES)}")


def _json_object(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    if not value:
        raise ValueError("must not be empty")
    return value


class AwsDynamoDBMetadata(AwsMetadata):
    table_name: str = param(name="tableName", min_length=1)
    key_condition_expression: str = param(name="keyConditionExpression", min_length=1, description="e.g. `#q = :q`")
    expression_attribute_names: dict[str, str] = param(
        name="expressionAttributeNames", description='JSON: {"#k": "attribute name"}'
    )
    expression_attribute_values: dict[str, Any] = param(
        name="expressionAttributeValues", description='JSON in DynamoDB\'s form: {":v": {"S": "text"}}'
    )
    filter_expression: str | None = param(
        None,
        name="filterExpression",
        description="applied after the key condition; the count is of the items that pass",
    )
    index_name: str | None = param(None, name="indexName", description="a global or local secondary index")
    #: KEDA takes any integer; the HPA refuses a target that is not positive.
    target_value: int | None = param(
        None,
        name="targetValue",
        gt=0,
        validate_default=True,
        description="integer > 0. Optional when the trigger only feeds `scalingModifiers`",
    )
    activation_target_value: int = param(0, name="activationTargetValue")

    _target = field_validator("target_value")(require_target_unless_metric_source)
    _names_json = field_validator("expression_attribute_names", mode="before")(_json_object)

    @field_validator("expression_attribute_values", mode="before")
    @classmethod
    def _values(cls, text: Any) -> Any:
        values = _json_object(text)
        if not isinstance(values, dict):
            return values
        return {key: _attribute_value(value, key) for key, value in values.items()}


class AwsDynamoDBScaler(AwsScaler):
    """Scales on the number of items a DynamoDB query matches; `targetValue` items per replica."""

    type_name: ClassVar[str] = "aws-dynamodb"
    Metadata: ClassVar[type[ScalerMetadata]] = AwsDynamoDBMetadata
    service: ClassVar[str] = "dynamodb"
    meta: AwsDynamoDBMetadata

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"aws-dynamodb-{self.meta.table_name}"),
            target=float(self.meta.target_value or 0),
            metric_type=self.ctx.metric_type,
        )

    def activation(self) -> float:
        return float(self.meta.activation_target_value)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        # Shown as the user wrote them: JSON, not the client's form (B values are bytes there).
        out["expressionAttributeNames"] = json.dumps(self.meta.expression_attribute_names)
        out["expressionAttributeValues"] = json.dumps(
            self.meta.expression_attribute_values, default=lambda b: b.decode(errors="replace")
        )
        return out

    async def query(self, client: Any) -> float:
        dynamodb: DynamoDBClient = client
        request: QueryInputTypeDef = {
            "TableName": self.meta.table_name,
            "KeyConditionExpression": self.meta.key_condition_expression,
            "ExpressionAttributeNames": self.meta.expression_attribute_names,
            "ExpressionAttributeValues": self.meta.expression_attribute_values,
            "Select": "COUNT",
        }
        if self.meta.filter_expression:
            request["FilterExpression"] = self.meta.filter_expression
        if self.meta.index_name:
            request["IndexName"] = self.meta.index_name
        answer = await dynamodb.query(**request)
        return float(answer["Count"])
