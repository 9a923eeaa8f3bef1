"""`aws-cloudwatch`: KEDA's CloudWatch scaler. The metric is the newest value of a CloudWatch statistic.

One `GetMetricData` call per poll (pkg/scalers/aws_cloudwatch_scaler.go): either a metric (`namespace`,
`metricName`, `dimensionName`/`dimensionValue` lists separated by `;`) with a statistic (`metricStat`) over
periods of `metricStatPeriod` seconds, or a metric math / Metrics Insights `expression`. The window ends at the
current time less `metricEndTimeOffset`, cut down to a whole period (as Go's `Time.Truncate` cuts: periods
counted from the year 1), and starts `metricCollectionTime` seconds earlier. Datapoints come newest first; the
first is the value. With none, the value is `minMetricValue`, or an error with `ignoreNullValues: false`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator

from ebb.scalers._aws import AwsMetadata, AwsScaler
from ebb.scalers.base import MetricSpec, ScalerMetadata, TriggerContext, metric_name, param

if TYPE_CHECKING:
    from types_aiobotocore_cloudwatch import CloudWatchClient
    from types_aiobotocore_cloudwatch.type_defs import GetMetricDataInputTypeDef, MetricDataQueryTypeDef

#: CloudWatch's StandardUnit values, the units KEDA accepts for `metricUnit`.
STANDARD_UNITS = (
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
)
#: Seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch: Go truncates times relative to the former.
_GO_ZERO_TO_EPOCH = 62_135_596_800


def query_window(now: float, period: int, end_offset: int, collection_time: int) -> tuple[int, int]:
    """(start, end) in Unix seconds: KEDA's computeQueryWindow. A whole period drops the fraction of a second too."""
    seconds = math.floor(now) - end_offset
    end = seconds - (seconds + _GO_ZERO_TO_EPOCH) % period
    return end - collection_time, end


def _split(value: Any) -> Any:
    # KEDA's `separator=;` lists: split, each element trimmed.
    return [part.strip() for part in value.split(";")] if isinstance(value, str) else value


class AwsCloudwatchMetadata(AwsMetadata):
    namespace: str | None = param(None, name="namespace", description="required without `expression`")
    metric_name: str | None = param(None, name="metricName", description="required without `expression`")
    dimension_name: list[str] | None = param(
        None, name="dimensionName", description="`;`-separated lists of equal length. Required without `expression`"
    )
    dimension_value: list[str] | None = param(
        None, name="dimensionValue", description="`;`-separated lists of equal length. Required without `expression`"
    )
    expression: str | None = param(None, name="expression", description="replaces the metric and `metricStat`")
    #: KEDA takes any number; the HPA refuses a target that is not positive.
    target_metric_value: float = param(name="targetMetricValue", gt=0, allow_inf_nan=False, description="> 0")
    activation_target_metric_value: float = param(0.0, name="activationTargetMetricValue", allow_inf_nan=False)
    min_metric_value: float = param(
        name="minMetricValue", allow_inf_nan=False, description="the value when the window has no datapoint"
    )
    ignore_null_values: bool = param(True, name="ignoreNullValues", description="`false`: no datapoint is an error")
    metric_collection_time: int = param(
        300, name="metricCollectionTime", description="seconds, > 0, a multiple of `metricStatPeriod`"
    )
    metric_stat: str = param(
        "Average",
        name="metricStat",
        min_length=1,
        description="`Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`, `p99` …",
    )
    metric_unit: str | None = param(
        None,
        name="metricUnit",
        description=("a CloudWatch unit (`Count`, `Seconds`, `Bytes/Second` …). Only datapoints in that unit count"),
    )
    metric_stat_period: int = param(
        300, name="metricStatPeriod", description="seconds: 1, 5, 10, 30, 60 or a multiple of 60"
    )
    metric_end_time_offset: int = param(
        0,
        name="metricEndTimeOffset",
        description="seconds. Skips the newest periods, which CloudWatch may still be filling",
    )
    aws_account_id: str | None = param(
        None, name="awsAccountId", description="read from another account (cross-account observability)"
    )

    _dimension_lists = field_validator("dimension_name", "dimension_value", mode="before")(_split)

    @field_validator("metric_stat_period")
    @classmethod
    def _period(cls, period: int) -> int:
        if period < 1:
            raise ValueError(f"metricStatPeriod can not be smaller than 1, however, {period} is provided")
        if period <= 60 and period not in (1, 5, 10, 30, 60):
            raise ValueError(f"metricStatPeriod < 60 has to be one of [1, 5, 10, 30], however, {period} is provided")
        if period > 60 and period % 60:
            raise ValueError(f"metricStatPeriod >= 60 has to be a multiple of 60, however, {period} is provided")
        return period


class AwsCloudwatchScaler(AwsScaler):
    """Scales on a CloudWatch statistic; `targetMetricValue` per replica."""

    type_name: ClassVar[str] = "aws-cloudwatch"
    Metadata: ClassVar[type[ScalerMetadata]] = AwsCloudwatchMetadata
    service: ClassVar[str] = "cloudwatch"
    meta: AwsCloudwatchMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        m = self.meta
        if not m.expression:
            for value, key in (
                (m.namespace, "namespace"),
                (m.metric_name, "metricName"),
                (m.dimension_name, "dimensionName"),
                (m.dimension_value, "dimensionValue"),
            ):
                if not value:
                    self.bad(key, f"{key} is required unless expression is given")
            if len(m.dimension_name or []) != len(m.dimension_value or []):
                self.bad("dimensionValue", "dimensionName and dimensionValue are not matching in size")
            if m.metric_unit and m.metric_unit not in STANDARD_UNITS:
                self.bad("metricUnit", f"metricUnit {m.metric_unit!r} is not one of {', '.join(STANDARD_UNITS)}")
        period, collection = m.metric_stat_period, m.metric_collection_time
        if collection <= 0 or collection % period:
            self.bad(
                "metricCollectionTime",
                f"metricCollectionTime must be greater than 0 and a multiple of metricStatPeriod ({period}), "
                f"{collection} is given",
            )
        #: Unix seconds now; tests move the query window by replacing it.
        self.clock: Callable[[], float] = time.time

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, "aws-cloudwatch"),
            target=self.meta.target_metric_value,
            metric_type=self.ctx.metric_type,
        )

    def activation(self) -> float:
        return self.meta.activation_target_metric_value

    def request(self, now: float) -> GetMetricDataInputTypeDef:
        """The GetMetricData request KEDA would send at `now`."""
        m = self.meta
        start, end = query_window(now, m.metric_stat_period, m.metric_end_time_offset, m.metric_collection_time)
        query: MetricDataQueryTypeDef
        if m.expression:
            query = {"Id": "q1", "Expression": m.expression, "Period": m.metric_stat_period}
        else:
            dimensions = [
                {"Name": name, "Value": value}
                for name, value in zip(m.dimension_name or [], m.dimension_value or [], strict=True)
            ]
            stat: Any = {
                "Metric": {"Namespace": m.namespace or "", "MetricName": m.metric_name or "", "Dimensions": dimensions},
                "Period": m.metric_stat_period,
                "Stat": m.metric_stat,
            }
            if m.metric_unit:
                stat["Unit"] = m.metric_unit
            query = {"Id": "c1", "MetricStat": stat, "ReturnData": True}
        if m.aws_account_id:
            query["AccountId"] = m.aws_account_id
        return {
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
            "ScanBy": "TimestampDescending",
            "MetricDataQueries": [query],
        }

    async def query(self, client: Any) -> float:
        cloudwatch: CloudWatchClient = client
        answer = await cloudwatch.get_metric_data(**self.request(self.clock()))
        results = answer.get("MetricDataResults", [])
        values = results[0].get("Values", []) if results else []
        if values:
            return float(values[0])
        if results and not self.meta.ignore_null_values:
            raise self.error("no datapoint in the query window, and ignoreNullValues is false")
        return self.meta.min_metric_value
