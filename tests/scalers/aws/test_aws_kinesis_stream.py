"""The aws-kinesis-stream scaler against a moto server (see conftest.py), compared with independent boto3 reads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler
from tests.scalers._reads import read_once

from .._servers import free_port
from ._support import ctx, open_fds, tcp_to
from ._support import scaler as build
from .conftest import REGION, Moto, uid

TYPE = "aws-kinesis-stream"
KEYS = {"awsAccessKeyID": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t-" + uuid.uuid4().hex}
SHARDS = 3


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build(TYPE, metadata, **kw)


def open_shards(moto: Moto, name: str) -> int:
    """What Kinesis itself reports, read with boto3."""
    summary = moto.client("kinesis").describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return int(summary["OpenShardCount"])


@pytest.fixture
def stream(moto: Moto) -> Iterator[str]:
    kinesis = moto.client("kinesis")
    name = uid("ebb-kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    yield name
    kinesis.delete_stream(StreamName=name)


# --- parsing ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = scaler({"streamName": "clicks", "awsRegion": REGION}, auth_params=KEYS)
    d = s.describe()
    assert (d["shardCount"], d["activationShardCount"], d["identityOwner"]) == (2, 0, "pod")
    assert d["awsSecretAccessKey"] == "***"
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s0-aws-kinesis-clicks", 2.0, "AverageValue")
    assert s.activation_threshold() == 0.0


def test_metric_name_is_kedas() -> None:
    s = scaler({"streamName": "app.clicks", "awsRegion": REGION}, ctx=ctx(TYPE, 1), auth_params=KEYS)
    assert s.metric_spec().name == "s1-aws-kinesis-app-clicks"


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"awsRegion": REGION}, KEYS, "streamName"),
        ({"streamName": "s"}, KEYS, "awsRegion"),
        ({"streamName": "s", "awsRegion": REGION, "shardCount": "0"}, KEYS, "shardCount"),
        ({"streamName": "s", "awsRegion": REGION, "shardCount": "1.5"}, KEYS, "shardCount"),
        ({"streamName": "s", "awsRegion": REGION, "activationShardCount": "x"}, KEYS, "activationShardCount"),
        ({"streamName": "s", "awsRegion": REGION}, {}, "awsAccessKeyID"),
        ({"streamName": "s", "awsRegion": REGION, "identityOwner": "operator"}, KEYS, "identityOwner"),
        ({"streamName": "s", "awsRegion": REGION}, {**KEYS, "awsRoleArn": "arn:aws:iam::1:role/r"}, "awsRoleArn"),
    ],
)
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


# --- against moto ---------------------------------------------------------------------------------


async def test_known_shard_count_follows_resharding(moto: Moto, stream: str) -> None:
    s = scaler(moto.metadata(streamName=stream), auth_params=moto.auth())
    try:
        assert open_shards(moto, stream) == SHARDS
        assert (await s.get_metric_and_activity()).value == SHARDS
        moto.client("kinesis").update_shard_count(
            StreamName=stream, TargetShardCount=2 * SHARDS, ScalingType="UNIFORM_SCALING"
        )
        assert open_shards(moto, stream) == 2 * SHARDS
        reading = await s.get_metric_and_activity()
        assert (reading.value, reading.active) == (2 * SHARDS, True)
    finally:
        await s.close()


@pytest.mark.parametrize(("activation", "active"), [("2", True), ("3", False), ("4", False)])
async def test_activation_exactly_at_the_threshold(moto: Moto, stream: str, activation: str, active: bool) -> None:
    s = scaler(moto.metadata(streamName=stream, activationShardCount=activation), auth_params=moto.auth())
    assert await read_once(s) == (float(SHARDS), active)


async def test_authentication_failure_names_no_secret(moto: Moto, stream: str) -> None:
    bad = "Wr0ng-" + uuid.uuid4().hex
    s = scaler(moto.metadata(streamName=stream), auth_params={**moto.auth(), "awsSecretAccessKey": bad})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    text = str(err.value)
    assert "DescribeStreamSummary: SignatureDoesNotMatch" in text and "(HTTP 403)" in text
    assert bad not in text and moto.secret_access_key not in text


async def test_missing_stream(moto: Moto) -> None:
    s = scaler(moto.metadata(streamName=uid("absent")), auth_params=moto.auth())
    with pytest.raises(ScalerError, match="DescribeStreamSummary: ResourceNotFoundException"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    s = scaler({"streamName": "s", "awsRegion": REGION, "awsEndpoint": f"http://127.0.0.1:{port}"}, auth_params=KEYS)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach http://127.0.0.1:{port}" in str(err.value)
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.slow  # 1,000 signed calls: about 10 s on an idle machine
async def test_no_connection_or_descriptor_leak_over_1000_polls(moto: Moto, stream: str) -> None:
    s = scaler(moto.metadata(streamName=stream), auth_params=moto.auth())
    await s.get_metric_and_activity()
    fds = open_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == SHARDS
        assert tcp_to(moto.port) <= 2
        assert open_fds() <= fds + 2
    finally:
        await s.close()
    assert tcp_to(moto.port) == 0
    assert open_fds() <= fds
