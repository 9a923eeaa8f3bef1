"""The aws-dynamodb-streams scaler against a moto server (see conftest.py), compared with independent boto3 reads.

moto gives every table stream exactly one shard; paging through more shards than one answer holds is tested
against a stand-in client below.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler
from ebb.scalers.aws_dynamodb_streams import AwsDynamoDBStreamsScaler
from tests.scalers._reads import read_once

from .._servers import free_port
from ._support import ctx, open_fds, tcp_to
from ._support import scaler as build
from .conftest import REGION, Moto, uid

TYPE = "aws-dynamodb-streams"
KEYS = {"awsAccessKeyID": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t-" + uuid.uuid4().hex}


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build(TYPE, metadata, **kw)


def make_table(moto: Moto, stream: bool) -> str:
    name = uid("ebb-streams")
    extra: dict[str, Any] = {}
    if stream:
        extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    moto.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    return name


def shards(moto: Moto, table: str) -> int:
    """What DynamoDB Streams itself lists, with boto3."""
    arn = moto.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    return len(moto.client("dynamodbstreams").describe_stream(StreamArn=arn)["StreamDescription"]["Shards"])


@pytest.fixture
def table(moto: Moto) -> Iterator[str]:
    name = make_table(moto, stream=True)
    yield name
    moto.client("dynamodb").delete_table(TableName=name)


# --- parsing ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = scaler({"tableName": "orders", "awsRegion": REGION}, auth_params=KEYS)
    d = s.describe()
    assert (d["shardCount"], d["activationShardCount"], d["identityOwner"]) == (2, 0, "pod")
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s0-aws-dynamodb-streams-orders", 2.0, "AverageValue")
    assert s.activation_threshold() == 0.0


def test_metric_name_is_kedas() -> None:
    s = scaler({"tableName": "app.orders", "awsRegion": REGION}, ctx=ctx(TYPE, 3), auth_params=KEYS)
    assert s.metric_spec().name == "s3-aws-dynamodb-streams-app-orders"


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"awsRegion": REGION}, KEYS, "tableName"),
        ({"tableName": "t"}, KEYS, "awsRegion"),
        ({"tableName": "t", "awsRegion": REGION, "shardCount": "0"}, KEYS, "shardCount"),
        ({"tableName": "t", "awsRegion": REGION, "activationShardCount": "one"}, KEYS, "activationShardCount"),
        ({"tableName": "t", "awsRegion": REGION}, {"awsAccessKeyID": "AKIAEXAMPLE"}, "awsSecretAccessKey"),
        ({"tableName": "t", "awsRegion": REGION, "identityOwner": "operator"}, KEYS, "identityOwner"),
    ],
)
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"


class PagedStreams:
    """A stand-in DynamoDB Streams client that lists `pages` of shards, as DescribeStream pages them."""

    def __init__(self, pages: list[int], repeat_last: bool = False) -> None:
        self.pages = pages
        self.repeat_last = repeat_last
        self.requests: list[dict[str, Any]] = []

    async def describe_stream(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        page = len(self.requests) - 1
        description: dict[str, Any] = {"Shards": [{"ShardId": f"s{page}-{i}"} for i in range(self.pages[page])]}
        if page + 1 < len(self.pages):
            description["LastEvaluatedShardId"] = "s0-last" if self.repeat_last else f"s{page}-last"
        return {"StreamDescription": description}


async def test_counts_every_page() -> None:
    s = scaler({"tableName": "t", "awsRegion": REGION}, auth_params=KEYS)
    assert isinstance(s, AwsDynamoDBStreamsScaler)
    s.stream_arn = "arn:aws:dynamodb:eu-west-1:1:table/t/stream/x"
    client = PagedStreams([100, 100, 37])
    assert await s.query(client) == 237.0
    assert [r.get("ExclusiveStartShardId") for r in client.requests] == [None, "s0-last", "s1-last"]


async def test_a_page_that_repeats_is_an_error_not_a_loop() -> None:
    s = scaler({"tableName": "t", "awsRegion": REGION}, auth_params=KEYS)
    assert isinstance(s, AwsDynamoDBStreamsScaler)
    s.stream_arn = "arn"
    with pytest.raises(ScalerError, match="same page twice"):
        await s.query(PagedStreams([100, 100, 100], repeat_last=True))


# --- against moto ---------------------------------------------------------------------------------


async def test_known_shard_count(moto: Moto, table: str) -> None:
    assert shards(moto, table) == 1
    s = scaler(moto.metadata(tableName=table, shardCount="1"), auth_params=moto.auth())
    assert await read_once(s) == (1.0, True)


@pytest.mark.parametrize(("activation", "active"), [("0", True), ("1", False), ("2", False)])
async def test_activation_exactly_at_the_threshold(moto: Moto, table: str, activation: str, active: bool) -> None:
    s = scaler(moto.metadata(tableName=table, activationShardCount=activation), auth_params=moto.auth())
    assert await read_once(s) == (1.0, active)


async def test_a_table_without_a_stream_says_so(moto: Moto) -> None:
    name = make_table(moto, stream=False)
    try:
        with pytest.raises(ScalerError, match=f"table '{name}' has no stream"):
            await read_once(scaler(moto.metadata(tableName=name), auth_params=moto.auth()))
    finally:
        moto.client("dynamodb").delete_table(TableName=name)


async def test_missing_table(moto: Moto) -> None:
    s = scaler(moto.metadata(tableName=uid("absent")), auth_params=moto.auth())
    with pytest.raises(ScalerError, match="DescribeTable: ResourceNotFoundException"):
        await read_once(s)


async def test_a_replaced_table_is_followed(moto: Moto) -> None:
    name = make_table(moto, stream=True)
    s = scaler(moto.metadata(tableName=name), auth_params=moto.auth())
    try:
        assert (await s.get_metric_and_activity()).value == 1.0
        moto.client("dynamodb").delete_table(TableName=name)
        with pytest.raises(ScalerError, match="ResourceNotFoundException"):
            await s.get_metric_and_activity()
        moto.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        )
        assert (await s.get_metric_and_activity()).value == 1.0
    finally:
        await s.close()
        moto.client("dynamodb").delete_table(TableName=name)


async def test_authentication_failure_names_no_secret(moto: Moto, table: str) -> None:
    bad = "Wr0ng-" + uuid.uuid4().hex
    s = scaler(moto.metadata(tableName=table), auth_params={**moto.auth(), "awsSecretAccessKey": bad})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    text = str(err.value)
    assert "SignatureDoesNotMatch" in text and "(HTTP 403)" in text
    assert bad not in text and moto.secret_access_key not in text


async def test_server_down() -> None:
    port = free_port()
    s = scaler({"tableName": "t", "awsRegion": REGION, "awsEndpoint": f"http://127.0.0.1:{port}"}, auth_params=KEYS)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach http://127.0.0.1:{port}" in str(err.value)
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.slow  # 1,000 signed calls: about 10 s on an idle machine
async def test_no_connection_or_descriptor_leak_over_1000_polls(moto: Moto, table: str) -> None:
    s = scaler(moto.metadata(tableName=table), auth_params=moto.auth())
    await s.get_metric_and_activity()
    fds = open_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 1.0
        assert tcp_to(moto.port) <= 4  # two clients: the table's (asked once) and the stream's
        assert open_fds() <= fds + 4
    finally:
        await s.close()
    assert tcp_to(moto.port) == 0
    assert open_fds() <= fds
