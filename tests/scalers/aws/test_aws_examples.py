"""`ebb metrics` reads each examples/aws-*.yaml through the CLI, against the moto server.

The examples point at moto's default address with moto's any-key credentials; here they are pointed at the
test server and its issued key, and the resource each example names is created first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.scalers.aws_cloudwatch import query_window
from tests.test_cli_metrics import WIDE, row_of

from .conftest import Moto

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE_ENDPOINT = "http://127.0.0.1:5000"
runner = CliRunner()


def localised(path: Path, moto: Moto) -> str:
    text = path.read_text()
    assert EXAMPLE_ENDPOINT in text and "_ACCESS_KEY_ID: testing" in text and "_SECRET_ACCESS_KEY: testing" in text
    text = text.replace(EXAMPLE_ENDPOINT, moto.endpoint)
    text = text.replace("_ACCESS_KEY_ID: testing", f"_ACCESS_KEY_ID: '{moto.access_key_id}'")
    return text.replace("_SECRET_ACCESS_KEY: testing", f"_SECRET_ACCESS_KEY: '{moto.secret_access_key}'")


def sqs_orders(moto: Moto) -> float:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"order {i}")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return float(sum(int(attributes[n]) for n in names))


def kinesis_clicks(moto: Moto) -> float:
    kinesis = moto.client("kinesis")
    streams = kinesis.list_streams()["StreamNames"]
    if "clicks" not in streams:
        kinesis.create_stream(StreamName="clicks", ShardCount=4)
    summary = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]
    return float(summary["OpenShardCount"])


def dynamodb_jobs(moto: Moto) -> float:
    dynamodb = moto.client("dynamodb")
    if "jobs" not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "queue", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "queue", "AttributeType": "S"},
                {"AttributeName": "id", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    for i, (queue, status) in enumerate([("orders", "pending")] * 7 + [("orders", "done"), ("other", "pending")]):
        item = {"queue": {"S": queue}, "id": {"S": str(i)}, "status": {"S": status}}
        dynamodb.put_item(TableName="jobs", Item=item)
    answer = dynamodb.query(
        TableName="jobs",
        Select="COUNT",
        KeyConditionExpression="#q = :q",
        FilterExpression="#s = :s",
        ExpressionAttributeNames={"#q": "queue", "#s": "status"},
        ExpressionAttributeValues={":q": {"S": "orders"}, ":s": {"S": "pending"}},
    )
    assert answer["Count"] == 7
    return float(answer["Count"])


def dynamodb_orders_stream(moto: Moto) -> float:
    dynamodb = moto.client("dynamodb")
    if "orders" not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
    arn = dynamodb.describe_table(TableName="orders")["Table"]["LatestStreamArn"]
    return float(len(moto.client("dynamodbstreams").describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]))


def cloudwatch_backlog(moto: Moto) -> float:
    cloudwatch = moto.client("cloudwatch")
    _, end = query_window(time.time(), 60, 0, 300)
    dimensions = [{"Name": "Queue", "Value": "orders"}]
    points = [(end - 30, 40.0), (end - 20, 44.0)]  # the minute just over: Average 42
    cloudwatch.put_metric_data(
        Namespace="App/Orders",
        MetricData=[
            {
                "MetricName": "Backlog",
                "Dimensions": dimensions,
                "Timestamp": datetime.fromtimestamp(at, UTC),
                "Value": v,
            }
            for at, v in points
        ],
    )
    start, end = query_window(time.time(), 60, 0, 300)
    answer = cloudwatch.get_metric_data(
        StartTime=datetime.fromtimestamp(start, UTC),
        EndTime=datetime.fromtimestamp(end, UTC),
        ScanBy="TimestampDescending",
        MetricDataQueries=[
            {
                "Id": "c1",
                "MetricStat": {
                    "Metric": {"Namespace": "App/Orders", "MetricName": "Backlog", "Dimensions": dimensions},
                    "Period": 60,
                    "Stat": "Average",
                },
            }
        ],
    )
    assert answer["MetricDataResults"][0]["Values"][0] == 42.0
    return 42.0


SETUPS: dict[str, Callable[[Moto], float]] = {
    "aws-cloudwatch": cloudwatch_backlog,
    "aws-dynamodb-streams": dynamodb_orders_stream,
    "aws-dynamodb": dynamodb_jobs,
    "aws-sqs-queue": sqs_orders,
    "aws-kinesis-stream": kinesis_clicks,
}


def test_every_aws_example_is_tested() -> None:
    assert {p.stem for p in EXAMPLES.glob("aws-*.yaml")} == set(SETUPS)


@pytest.mark.parametrize("trigger_type", sorted(SETUPS))
def test_ebb_metrics_reads_the_example(moto: Moto, tmp_path: Path, trigger_type: str) -> None:
    expected = SETUPS[trigger_type](moto)
    path = tmp_path / f"{trigger_type}.yaml"
    path.write_text(localised(EXAMPLES / f"{trigger_type}.yaml", moto))
    result = runner.invoke(app, ["metrics", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    row = row_of(result.output, f"[0] {trigger_type}")
    assert row["value"] == f"{expected:g}", row
    assert row["active"] == ("yes" if expected > float(row["activation"]) else "no")
    assert moto.secret_access_key not in result.output
    checked = runner.invoke(app, ["check", str(path)], env=WIDE)
    assert checked.exit_code == 0, checked.output
    assert moto.secret_access_key not in checked.output


@pytest.mark.parametrize("provider", ["aws", "aws-eks"])
def test_pod_identity_is_refused_naming_the_field(moto: Moto, tmp_path: Path, provider: str) -> None:
    text = localised(EXAMPLES / "aws-sqs-queue.yaml", moto)
    text = text.replace(
        "spec:\n  secretTargetRef:\n", f"spec:\n  podIdentity: {{provider: {provider}}}\n  secretTargetRef:\n", 1
    )
    path = tmp_path / "pod-identity.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["metrics", str(path)], env=WIDE)
    assert result.exit_code == 1, result.output
    assert f"podIdentity (provider {provider})" in result.output
    assert "authenticationRef" in result.output
