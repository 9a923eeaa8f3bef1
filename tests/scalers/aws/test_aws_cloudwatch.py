"""The aws-cloudwatch scaler against a moto server (see conftest.py), compared with independent boto3 reads.

Each test writes its datapoints into an hour of its own in the past and sets the scaler's clock there, so the
query windows of different tests never overlap (moto's Metrics Insights stand-in sums every metric it holds).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers.aws_cloudwatch import STANDARD_UNITS, AwsCloudwatchScaler, query_window
from tests.scalers._reads import read_once

from .._servers import free_port
from ._support import ctx, open_fds, tcp_to
from ._support import scaler as build
from .conftest import REGION, Moto, uid

TYPE = "aws-cloudwatch"
KEYS = {"awsAccessKeyID": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t-" + uuid.uuid4().hex}
METRIC = {
    "namespace": "App/Queue",
    "metricName": "Backlog",
    "dimensionName": "Queue",
    "dimensionValue": "orders",
    "targetMetricValue": "2.5",
    "minMetricValue": "0",
    "awsRegion": REGION,
}
_hours = itertools.count(1)


def scaler(metadata: dict[str, str], **kw: Any) -> AwsCloudwatchScaler:
    s = build(TYPE, metadata, **kw)
    assert isinstance(s, AwsCloudwatchScaler)
    return s


@dataclass
class Series:
    """Datapoints of one metric in an hour of this test's own: the hour ends at `end`."""

    namespace: str
    end: int

    def metadata(self, moto: Moto, **extra: str) -> dict[str, str]:
        base = {**METRIC, "namespace": self.namespace, "metricStatPeriod": "60", "metricCollectionTime": "300"}
        return moto.metadata(**{**base, **extra})

    def scaler(self, moto: Moto, **extra: str) -> AwsCloudwatchScaler:
        s = scaler(self.metadata(moto, **extra), auth_params=moto.auth())
        s.clock = lambda: self.end + 10.5  # the window ends at `end`, cut down to the minute
        return s


@pytest.fixture
def series(moto: Moto) -> Iterator[Series]:
    """Backlog{Queue=orders}: 100 in the minute before last, then 10 and 30 in the last minute (Count)."""
    hour = int(time.time()) // 3600 * 3600 - 3600 * next(_hours)
    s = Series(uid("Ebb/Test"), hour)
    points = [(hour - 90, 100.0), (hour - 30, 10.0), (hour - 20, 30.0)]
    moto.client("cloudwatch").put_metric_data(
        Namespace=s.namespace,
        MetricData=[
            {
                "MetricName": "Backlog",
                "Dimensions": [{"Name": "Queue", "Value": "orders"}],
                "Timestamp": datetime.fromtimestamp(at, UTC),
                "Value": value,
                "Unit": "Count",
            }
            for at, value in points
        ],
    )
    yield s


# --- parsing ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = scaler(METRIC, auth_params=KEYS)
    d = s.describe()
    assert d["activationTargetMetricValue"] == 0.0
    assert (d["ignoreNullValues"], d["metricCollectionTime"], d["metricStat"]) == (True, 300, "Average")
    assert (d["metricStatPeriod"], d["metricEndTimeOffset"]) == (300, 0)
    assert "metricUnit" not in d and "expression" not in d and "awsAccountId" not in d
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s0-aws-cloudwatch", 2.5, "AverageValue")
    assert s.activation_threshold() == 0.0
    assert scaler(METRIC, ctx=ctx(TYPE, 5), auth_params=KEYS).metric_spec().name == "s5-aws-cloudwatch"


@pytest.mark.parametrize(
    ("now", "period", "offset", "collection", "window"),
    [
        (1_700_000_000, 300, 0, 300, (1_699_999_500, 1_699_999_800)),
        (1_700_000_000.7, 1, 0, 1, (1_699_999_999, 1_700_000_000)),
        (1_700_000_000, 60, 60, 120, (1_699_999_800, 1_699_999_920)),
        # Go truncates from the year 1, not from 1970: 420 s periods fall 60 s later than Unix ones would.
        (1_700_000_000, 420, 0, 420, (1_699_999_500, 1_699_999_920)),
    ],
)
def test_query_window_is_kedas(now: float, period: int, offset: int, collection: int, window: tuple[int, int]) -> None:
    assert query_window(now, period, offset, collection) == window


def test_the_request_kedas_sends() -> None:
    metadata = {
        **METRIC,
        "dimensionName": "Queue; Region",
        "dimensionValue": "orders ;eu",
        "metricUnit": "Count",
        "metricStat": "p99",
        "awsAccountId": "123456789012",
    }
    request = scaler(metadata, auth_params=KEYS).request(1_700_000_000)
    assert request["ScanBy"] == "TimestampDescending"
    assert (request["StartTime"].timestamp(), request["EndTime"].timestamp()) == (1_699_999_500, 1_699_999_800)
    [query] = request["MetricDataQueries"]
    assert query == {
        "Id": "c1",
        "MetricStat": {
            "Metric": {
                "Namespace": "App/Queue",
                "MetricName": "Backlog",
                "Dimensions": [{"Name": "Queue", "Value": "orders"}, {"Name": "Region", "Value": "eu"}],
            },
            "Period": 300,
            "Stat": "p99",
            "Unit": "Count",
        },
        "ReturnData": True,
        "AccountId": "123456789012",
    }
    expression = {"expression": "SELECT AVG(Backlog) FROM App", "targetMetricValue": "1", "minMetricValue": "0"}
    [query] = scaler({**expression, "awsRegion": REGION}, auth_params=KEYS).request(0)["MetricDataQueries"]
    assert query == {"Id": "q1", "Expression": "SELECT AVG(Backlog) FROM App", "Period": 300}


def test_units_are_cloudwatchs() -> None:
    model = botocore.session.get_session().get_service_model("cloudwatch")
    assert set(STANDARD_UNITS) == set(model.shape_for("StandardUnit").enum)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"targetMetricValue": ""}, "targetMetricValue", "required"),
        ({"targetMetricValue": "0"}, "targetMetricValue", "greater than 0"),
        ({"minMetricValue": ""}, "minMetricValue", "required"),
        ({"activationTargetMetricValue": "lots"}, "activationTargetMetricValue", "number"),
        ({"namespace": ""}, "namespace", "unless expression"),
        ({"metricName": ""}, "metricName", "unless expression"),
        ({"dimensionName": ""}, "dimensionName", "unless expression"),
        ({"dimensionValue": ""}, "dimensionValue", "unless expression"),
        ({"dimensionName": "Queue;Region"}, "dimensionValue", "not matching in size"),
        ({"metricUnit": "Parsecs"}, "metricUnit", "not one of"),
        ({"metricStatPeriod": "0"}, "metricStatPeriod", "smaller than 1"),
        ({"metricStatPeriod": "7"}, "metricStatPeriod", "[1, 5, 10, 30]"),
        ({"metricStatPeriod": "90"}, "metricStatPeriod", "multiple of 60"),
        ({"metricCollectionTime": "450"}, "metricCollectionTime", "multiple of metricStatPeriod (300)"),
        ({"metricCollectionTime": "0"}, "metricCollectionTime", "greater than 0"),
        ({"ignoreNullValues": "maybe"}, "ignoreNullValues", "boolean"),
        ({"awsRegion": ""}, "awsRegion", "required"),
    ],
)
def test_bad_metadata_names_the_parameter(change: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler({**METRIC, **change}, auth_params=KEYS)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert words in err.value.message


def test_an_expression_needs_no_metric() -> None:
    s = scaler(
        {"expression": "SELECT 1", "targetMetricValue": "1", "minMetricValue": "0", "awsRegion": REGION},
        auth_params=KEYS,
    )
    assert s.metric_spec().target == 1.0


def test_credentials_are_required() -> None:
    with pytest.raises(SpecError) as err:
        scaler(METRIC)
    assert err.value.field == "spec.triggers[0].metadata.awsAccessKeyID"


# --- against moto ---------------------------------------------------------------------------------


def independent(moto: Moto, s: AwsCloudwatchScaler) -> list[float]:
    """The datapoints CloudWatch itself returns for the scaler's request, with boto3."""
    answer = moto.client("cloudwatch").get_metric_data(**s.request(s.clock()))
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


@pytest.mark.parametrize(("stat", "value"), [("Average", 20.0), ("Sum", 40.0), ("Maximum", 30.0), ("SampleCount", 2.0)])
async def test_newest_period_statistic(moto: Moto, series: Series, stat: str, value: float) -> None:
    s = series.scaler(moto, metricStat=stat)
    assert independent(moto, s)[0] == value  # newest first; the older minute (100) comes after
    assert await read_once(s) == (value, True)


async def test_unit_filters_the_datapoints(moto: Moto, series: Series) -> None:
    assert await read_once(series.scaler(moto, metricUnit="Count")) == (20.0, True)
    assert await read_once(series.scaler(moto, metricUnit="Seconds", minMetricValue="1.5")) == (1.5, True)


@pytest.mark.parametrize(("activation", "active"), [("19.5", True), ("20", False), ("20.5", False)])
async def test_activation_exactly_at_the_threshold(moto: Moto, series: Series, activation: str, active: bool) -> None:
    assert await read_once(series.scaler(moto, activationTargetMetricValue=activation)) == (20.0, active)


async def test_no_datapoint_is_min_metric_value_or_an_error(moto: Moto, series: Series) -> None:
    empty = {"dimensionValue": "invoices", "minMetricValue": "3"}
    assert await read_once(series.scaler(moto, **empty)) == (3.0, True)
    assert await read_once(series.scaler(moto, **empty, activationTargetMetricValue="3")) == (3.0, False)
    with pytest.raises(ScalerError, match="no datapoint in the query window, and ignoreNullValues is false"):
        await read_once(series.scaler(moto, **empty, ignoreNullValues="false"))


async def test_window_offset_reaches_older_periods(moto: Moto, series: Series) -> None:
    # Ending a minute earlier leaves only the minute before last in the window.
    assert await read_once(series.scaler(moto, metricEndTimeOffset="60")) == (100.0, True)


async def test_metrics_insights_expression(moto: Moto, series: Series) -> None:
    s = series.scaler(moto, expression=f'SELECT SUM(Backlog) FROM SCHEMA("{series.namespace}", Queue)')
    expected = independent(moto, s)[0]
    assert expected == 40.0
    assert await read_once(s) == (expected, True)


async def test_authentication_failure_names_no_secret(moto: Moto, series: Series) -> None:
    bad = "Wr0ng-" + uuid.uuid4().hex
    s = scaler(series.metadata(moto), auth_params={**moto.auth(), "awsSecretAccessKey": bad})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    text = str(err.value)
    assert "GetMetricData: SignatureDoesNotMatch" in text and "(HTTP 403)" in text
    assert bad not in text and moto.secret_access_key not in text


async def test_server_down() -> None:
    port = free_port()
    s = scaler({**METRIC, "awsEndpoint": f"http://127.0.0.1:{port}"}, auth_params=KEYS)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach http://127.0.0.1:{port}" in str(err.value)
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.slow  # 1,000 signed calls: about 10 s on an idle machine
async def test_no_connection_or_descriptor_leak_over_1000_polls(moto: Moto, series: Series) -> None:
    s = series.scaler(moto)
    await s.get_metric_and_activity()
    fds = open_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 20.0
        assert tcp_to(moto.port) <= 2
        assert open_fds() <= fds + 2
    finally:
        await s.close()
    assert tcp_to(moto.port) == 0
    assert open_fds() <= fds
