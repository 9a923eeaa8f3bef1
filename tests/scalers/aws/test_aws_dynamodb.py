"""The aws-dynamodb scaler against a moto server (see conftest.py), compared with independent boto3 queries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler
from tests.scalers._reads import read_once

from .._servers import free_port
from ._support import ctx, open_fds, tcp_to
from ._support import scaler as build
from .conftest import REGION, Moto, uid

TYPE = "aws-dynamodb"
KEYS = {"awsAccessKeyID": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t-" + uuid.uuid4().hex}
NAMES = json.dumps({"#q": "queue"})
VALUES = json.dumps({":q": {"S": "orders"}})
BASE = {"tableName": "jobs", "keyConditionExpression": "#q = :q", "targetValue": "3", "awsRegion": REGION}
BY_QUEUE = {**BASE, "expressionAttributeNames": NAMES, "expressionAttributeValues": VALUES}
#: The table's items: (queue, status) for each.
ITEMS = [("orders", "pending")] * 4 + [("orders", "done")] * 2 + [("invoices", "pending")] * 3


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build(TYPE, metadata, **kw)


@pytest.fixture
def table(moto: Moto) -> Iterator[str]:
    """A table keyed by (queue, id) with an index on status, holding ITEMS."""
    dynamodb = moto.client("dynamodb")
    name = uid("ebb-jobs")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "queue", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "queue", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i, (queue, status) in enumerate(ITEMS):
        item = {"queue": {"S": queue}, "id": {"N": str(i)}, "status": {"S": status}}
        dynamodb.put_item(TableName=name, Item=item)
    yield name
    dynamodb.delete_table(TableName=name)


def count(moto: Moto, **query: Any) -> int:
    """What DynamoDB itself counts, with boto3."""
    return int(moto.client("dynamodb").query(Select="COUNT", **query)["Count"])


# --- parsing ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = scaler(BY_QUEUE, auth_params=KEYS)
    d = s.describe()
    assert (d["targetValue"], d["activationTargetValue"], d["identityOwner"]) == (3, 0, "pod")
    assert "filterExpression" not in d and "indexName" not in d
    assert json.loads(d["expressionAttributeNames"]) == {"#q": "queue"}
    assert json.loads(d["expressionAttributeValues"]) == {":q": {"S": "orders"}}
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s0-aws-dynamodb-jobs", 3.0, "AverageValue")
    assert s.activation_threshold() == 0.0


def test_metric_name_is_kedas_and_target_optional_for_a_metric_source() -> None:
    metadata = {k: v for k, v in BY_QUEUE.items() if k != "targetValue"} | {"tableName": "app.jobs"}
    s = scaler(metadata, ctx=replace(ctx(TYPE, 4), as_metric_source=True), auth_params=KEYS)
    assert (s.metric_spec().name, s.metric_spec().target) == ("s4-aws-dynamodb-app-jobs", 0.0)


@pytest.mark.parametrize(
    "values",
    [
        {":s": {"S": "x"}, ":n": {"N": "1.5"}, ":b": {"BOOL": True}, ":z": {"NULL": True}},
        {":bin": {"B": "raw"}, ":l": {"L": [{"S": "a"}, {"N": "2"}]}, ":m": {"M": {"k": {"S": "v"}}}},
    ],
)
def test_every_value_type_kedas_reads(values: dict[str, Any]) -> None:
    s = scaler({**BY_QUEUE, "expressionAttributeValues": json.dumps(values)}, auth_params=KEYS)
    assert json.loads(s.describe()["expressionAttributeValues"]) == values


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"tableName": ""}, "tableName", "required"),
        ({"keyConditionExpression": ""}, "keyConditionExpression", "required"),
        ({"expressionAttributeNames": ""}, "expressionAttributeNames", "required"),
        ({"expressionAttributeNames": "{#q: queue}"}, "expressionAttributeNames", "not valid JSON"),
        ({"expressionAttributeNames": "{}"}, "expressionAttributeNames", "must not be empty"),
        ({"expressionAttributeNames": '["queue"]'}, "expressionAttributeNames", "JSON object"),
        ({"expressionAttributeNames": '{"#q": 1}'}, "expressionAttributeNames", "string"),
        ({"expressionAttributeValues": ""}, "expressionAttributeValues", "required"),
        ({"expressionAttributeValues": '{":q": "orders"}'}, "expressionAttributeValues", "one type key"),
        ({"expressionAttributeValues": '{":q": {"N": "many"}}'}, "expressionAttributeValues", "not a number"),
        ({"expressionAttributeValues": '{":q": {"N": 3}}'}, "expressionAttributeValues", "as a string"),
        ({"expressionAttributeValues": '{":q": {"SS": ["a"]}}'}, "expressionAttributeValues", "unsupported"),
        ({"expressionAttributeValues": '{":q": {"L": [{"X": 1}]}}'}, "expressionAttributeValues", ":q[0]"),
        ({"targetValue": ""}, "targetValue", "required"),
        ({"targetValue": "0"}, "targetValue", "greater than 0"),
        ({"targetValue": "2.5"}, "targetValue", "integer"),
        ({"activationTargetValue": "x"}, "activationTargetValue", "integer"),
        ({"awsRegion": ""}, "awsRegion", "required"),
    ],
)
def test_bad_metadata_names_the_parameter(change: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler({**BY_QUEUE, **change}, auth_params=KEYS)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert words in err.value.message


def test_credentials_are_required() -> None:
    with pytest.raises(SpecError) as err:
        scaler(BY_QUEUE)
    assert err.value.field == "spec.triggers[0].metadata.awsAccessKeyID"


# --- against moto ---------------------------------------------------------------------------------


async def test_known_counts(moto: Moto, table: str) -> None:
    names, values = {"#q": "queue"}, {":q": {"S": "orders"}}
    assert count(moto, TableName=table, KeyConditionExpression="#q = :q", **_attrs(names, values)) == 6
    s = scaler(moto.metadata(**{**BY_QUEUE, "tableName": table}), auth_params=moto.auth())
    assert await read_once(s) == (6.0, True)

    names, values = {"#q": "queue", "#s": "status"}, {":q": {"S": "orders"}, ":s": {"S": "pending"}}
    query = {"KeyConditionExpression": "#q = :q", "FilterExpression": "#s = :s"}
    assert count(moto, TableName=table, **query, **_attrs(names, values)) == 4
    filtered = scaler(
        moto.metadata(
            **{**BASE, "tableName": table, "filterExpression": "#s = :s"},
            expressionAttributeNames=json.dumps(names),
            expressionAttributeValues=json.dumps(values),
        ),
        auth_params=moto.auth(),
    )
    assert await read_once(filtered) == (4.0, True)


async def test_query_on_an_index(moto: Moto, table: str) -> None:
    names, values = {"#s": "status"}, {":s": {"S": "pending"}}
    expected = count(
        moto, TableName=table, IndexName="by-status", KeyConditionExpression="#s = :s", **_attrs(names, values)
    )
    assert expected == 7
    s = scaler(
        moto.metadata(
            **{**BASE, "tableName": table, "indexName": "by-status", "keyConditionExpression": "#s = :s"},
            expressionAttributeNames=json.dumps(names),
            expressionAttributeValues=json.dumps(values),
        ),
        auth_params=moto.auth(),
    )
    assert await read_once(s) == (7.0, True)


def _attrs(names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
    return {"ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


async def test_no_match_is_zero_and_inactive(moto: Moto, table: str) -> None:
    values = json.dumps({":q": {"S": "nothing-here"}})
    s = scaler(
        moto.metadata(**{**BY_QUEUE, "tableName": table, "expressionAttributeValues": values}), auth_params=moto.auth()
    )
    assert await read_once(s) == (0.0, False)


@pytest.mark.parametrize(("activation", "active"), [("5", True), ("6", False), ("7", False)])
async def test_activation_exactly_at_the_threshold(moto: Moto, table: str, activation: str, active: bool) -> None:
    metadata = moto.metadata(**{**BY_QUEUE, "tableName": table, "activationTargetValue": activation})
    assert await read_once(scaler(metadata, auth_params=moto.auth())) == (6.0, active)


async def test_authentication_failure_names_no_secret(moto: Moto, table: str) -> None:
    bad = "Wr0ng-" + uuid.uuid4().hex
    s = scaler(
        moto.metadata(**{**BY_QUEUE, "tableName": table}), auth_params={**moto.auth(), "awsSecretAccessKey": bad}
    )
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    text = str(err.value)
    assert "Query: SignatureDoesNotMatch" in text and "(HTTP 403)" in text
    assert bad not in text and moto.secret_access_key not in text


async def test_missing_table(moto: Moto) -> None:
    s = scaler(moto.metadata(**{**BY_QUEUE, "tableName": uid("absent")}), auth_params=moto.auth())
    with pytest.raises(ScalerError, match="Query: ResourceNotFoundException"):
        await read_once(s)


async def test_an_expression_the_table_refuses(moto: Moto, table: str) -> None:
    names = json.dumps({"#q": "status"})  # not the table's key
    s = scaler(
        moto.metadata(**{**BY_QUEUE, "tableName": table, "expressionAttributeNames": names}), auth_params=moto.auth()
    )
    with pytest.raises(ScalerError, match="Query: ValidationException"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    s = scaler({**BY_QUEUE, "awsEndpoint": f"http://127.0.0.1:{port}"}, auth_params=KEYS)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach http://127.0.0.1:{port}" in str(err.value)
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.slow  # 1,000 signed calls: about 10 s on an idle machine
async def test_no_connection_or_descriptor_leak_over_1000_polls(moto: Moto, table: str) -> None:
    s = scaler(moto.metadata(**{**BY_QUEUE, "tableName": table}), auth_params=moto.auth())
    await s.get_metric_and_activity()
    fds = open_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 6.0
        assert tcp_to(moto.port) <= 2
        assert open_fds() <= fds + 2
    finally:
        await s.close()
    assert tcp_to(moto.port) == 0
    assert open_fds() <= fds
