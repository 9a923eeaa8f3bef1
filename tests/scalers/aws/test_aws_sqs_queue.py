"""The aws-sqs-queue scaler against a moto server (see conftest.py), compared with independent boto3 reads."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler
from ebb.scalers.aws_sqs_queue import queue_name
from tests.scalers._reads import read_once

from .._servers import free_port
from ._support import ctx, open_fds, tcp_to
from ._support import scaler as build
from .conftest import REGION, Moto, uid

TYPE = "aws-sqs-queue"
URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
KEYS = {"awsAccessKeyID": "AKIAEXAMPLE", "awsSecretAccessKey": "s3cr3t-" + uuid.uuid4().hex}


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build(TYPE, metadata, **kw)


class Queue:
    """An SQS queue on the moto server with 5 visible, 2 in-flight and 3 delayed messages."""

    VISIBLE, IN_FLIGHT, DELAYED = 5, 2, 3

    def __init__(self, moto: Moto) -> None:
        self.sqs = moto.client("sqs")
        self.name = uid("ebb-sqs")
        self.url: str = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        for i in range(self.VISIBLE + self.IN_FLIGHT):
            self.sqs.send_message(QueueUrl=self.url, MessageBody=f"m{i}")
        for i in range(self.DELAYED):
            self.sqs.send_message(QueueUrl=self.url, MessageBody=f"d{i}", DelaySeconds=900)
        got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.IN_FLIGHT, VisibilityTimeout=900)
        assert len(got["Messages"]) == self.IN_FLIGHT

    def attributes(self) -> dict[str, int]:
        """What SQS itself reports, read with boto3."""
        answer = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        return {n: int(answer[n]) for n in [*names, "ApproximateNumberOfMessagesDelayed"]}


@pytest.fixture
def queue(moto: Moto) -> Any:
    q = Queue(moto)
    yield q
    q.sqs.delete_queue(QueueUrl=q.url)


# --- parsing ------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = scaler({"queueURL": URL, "awsRegion": REGION}, auth_params=KEYS)
    d = s.describe()
    assert (d["queueLength"], d["activationQueueLength"], d["scaleOnInFlight"], d["scaleOnDelayed"]) == (
        5,
        0,
        True,
        False,
    )
    assert d["identityOwner"] == "pod"
    assert d["awsSecretAccessKey"] == "***"
    assert "awsEndpoint" not in d
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s0-aws-sqs-orders", 5.0, "AverageValue")
    assert s.activation_threshold() == 0.0


def test_metric_name_is_kedas() -> None:
    s = scaler(
        {"queueURL": "https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo", "awsRegion": REGION},
        ctx=ctx(TYPE, 2),
        auth_params=KEYS,
    )
    assert s.metric_spec().name == "s2-aws-sqs-jobs-fifo"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (URL, "orders"),
        ("orders", "orders"),
        ("http://127.0.0.1:5000/123456789012/q", "q"),
        ("https://sqs.eu-west-1.amazonaws.com/orders", None),
        ("https://sqs.eu-west-1.amazonaws.com/1/orders/extra", None),
        ("https://sqs.eu-west-1.amazonaws.com/1/", None),
    ],
)
def test_queue_name_from_url(url: str, name: str | None) -> None:
    assert queue_name(url) == name


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"awsRegion": REGION}, KEYS, "queueURL"),
        ({"queueURL": URL}, KEYS, "awsRegion"),
        ({"queueURL": URL, "awsRegion": "eu west 1"}, KEYS, "awsRegion"),
        ({"queueURL": "https://sqs.eu-west-1.amazonaws.com/orders", "awsRegion": REGION}, KEYS, "queueURL"),
        ({"queueURL": URL, "awsRegion": REGION, "queueLength": "0"}, KEYS, "queueLength"),
        ({"queueURL": URL, "awsRegion": REGION, "queueLength": "many"}, KEYS, "queueLength"),
        ({"queueURL": URL, "awsRegion": REGION, "activationQueueLength": "x"}, KEYS, "activationQueueLength"),
        ({"queueURL": URL, "awsRegion": REGION, "scaleOnInFlight": "perhaps"}, KEYS, "scaleOnInFlight"),
        ({"queueURL": URL, "awsRegion": REGION, "awsEndpoint": "127.0.0.1:5000"}, KEYS, "awsEndpoint"),
        ({"queueURL": URL, "awsRegion": REGION, "identityOwner": "keda"}, KEYS, "identityOwner"),
        ({"queueURL": URL, "awsRegion": REGION}, {}, "awsAccessKeyID"),
        ({"queueURL": URL, "awsRegion": REGION}, {"awsAccessKeyID": "AKIAEXAMPLE"}, "awsSecretAccessKey"),
        ({"queueURL": URL, "awsRegion": REGION, "awsSecretAccessKey": "plain"}, KEYS, "awsSecretAccessKey"),
    ],
)
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert err.value.obj.startswith("ScaledObject default/aws-")
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.parametrize(
    ("metadata", "auth", "field", "words"),
    [
        ({"identityOwner": "operator"}, KEYS, "identityOwner", "operator's own AWS identity"),
        ({}, {**KEYS, "awsRoleArn": "arn:aws:iam::123456789012:role/keda"}, "awsRoleArn", "assume an IAM role"),
    ],
)
def test_cloud_identities_are_refused_naming_the_field(
    metadata: dict[str, str], auth: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as err:
        scaler({"queueURL": URL, "awsRegion": REGION, **metadata}, auth_params=auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert words in err.value.message
    assert "awsAccessKeyID and awsSecretAccessKey" in err.value.message


def test_credentials_from_env_and_the_other_key_id_spelling() -> None:
    secret = KEYS["awsSecretAccessKey"]
    from_env = scaler(
        {"queueURLFromEnv": "Q", "awsRegion": REGION, "awsAccessKeyIDFromEnv": "K", "awsSecretAccessKeyFromEnv": "S"},
        resolved_env={"Q": URL, "K": "AKIAENV", "S": secret},
    )
    assert from_env.describe()["awsAccessKeyID"] == "AKIAENV"
    assert from_env.describe()["queueURL"] == URL
    assert secret in from_env.secrets
    spelled = scaler(
        {"queueURL": URL},
        auth_params={"awsAccessKeyId": "AKIALOWER", "awsSecretAccessKey": secret, "awsRegion": REGION},
    )
    assert spelled.describe()["awsAccessKeyID"] == "AKIALOWER"
    assert spelled.describe()["awsRegion"] == REGION


# --- against moto ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "counted"),
    [
        ({}, ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")),
        ({"scaleOnInFlight": "false"}, ("ApproximateNumberOfMessages",)),
        (
            {"scaleOnDelayed": "true"},
            (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ),
        ),
        (
            {"scaleOnInFlight": "false", "scaleOnDelayed": "true"},
            ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"),
        ),
    ],
)
async def test_known_backlog(moto: Moto, queue: Queue, flags: dict[str, str], counted: tuple[str, ...]) -> None:
    truth = queue.attributes()
    assert truth == {
        "ApproximateNumberOfMessages": Queue.VISIBLE,
        "ApproximateNumberOfMessagesNotVisible": Queue.IN_FLIGHT,
        "ApproximateNumberOfMessagesDelayed": Queue.DELAYED,
    }
    s = scaler(moto.metadata(queueURL=queue.url, queueLength="2", **flags), auth_params=moto.auth())
    assert await read_once(s) == (float(sum(truth[a] for a in counted)), True)


async def test_queue_name_alone_and_url_from_env(moto: Moto, queue: Queue) -> None:
    by_name = scaler(moto.metadata(queueURL=queue.name), auth_params=moto.auth())
    from_env = scaler(
        moto.metadata(queueURLFromEnv="QUEUE"), auth_params=moto.auth(), resolved_env={"QUEUE": queue.url}
    )
    assert (await read_once(by_name))[0] == (await read_once(from_env))[0] == Queue.VISIBLE + Queue.IN_FLIGHT


async def test_empty_queue_is_zero_and_inactive(moto: Moto) -> None:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=uid("ebb-sqs"))["QueueUrl"]
    try:
        assert await read_once(scaler(moto.metadata(queueURL=url), auth_params=moto.auth())) == (0.0, False)
    finally:
        sqs.delete_queue(QueueUrl=url)


@pytest.mark.parametrize(("activation", "active"), [("6", True), ("7", False), ("8", False)])
async def test_activation_exactly_at_the_threshold(moto: Moto, queue: Queue, activation: str, active: bool) -> None:
    s = scaler(moto.metadata(queueURL=queue.url, activationQueueLength=activation), auth_params=moto.auth())
    assert await read_once(s) == (7.0, active)


@pytest.mark.parametrize(
    ("wrong", "code"),
    [
        ("secret", "SignatureDoesNotMatch"),
        ("key id", "InvalidClientTokenId"),
        ("session token", "InvalidClientTokenId"),
    ],
)
async def test_authentication_failure_names_no_secret(moto: Moto, queue: Queue, wrong: str, code: str) -> None:
    bad = "Wr0ng-" + uuid.uuid4().hex
    auth = moto.auth()
    if wrong == "secret":
        auth["awsSecretAccessKey"] = bad
    elif wrong == "key id":
        auth["awsAccessKeyID"] = "AKIA" + uuid.uuid4().hex[:16].upper()
    else:
        auth["awsSessionToken"] = bad
    s = scaler(moto.metadata(queueURL=queue.url), auth_params=auth)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    text = str(err.value)
    assert f"GetQueueAttributes: {code}" in text
    assert "(HTTP 403)" in text
    assert bad not in text
    assert moto.secret_access_key not in text
    assert "aws-sqs-queue" in err.value.trigger and "aws-" in err.value.obj


async def test_missing_queue(moto: Moto) -> None:
    s = scaler(moto.metadata(queueURL=f"{moto.endpoint}/123456789012/{uid('absent')}"), auth_params=moto.auth())
    with pytest.raises(ScalerError, match="NonExistentQueue"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    metadata = {"queueURL": URL, "awsRegion": REGION, "awsEndpoint": f"http://127.0.0.1:{port}"}
    s = scaler(metadata, auth_params=KEYS)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "cannot reach" in str(err.value)
    assert KEYS["awsSecretAccessKey"] not in str(err.value)


@pytest.mark.slow  # 1,000 signed calls: about 10 s on an idle machine
async def test_no_connection_or_descriptor_leak_over_1000_polls(moto: Moto, queue: Queue) -> None:
    s = scaler(moto.metadata(queueURL=queue.url), auth_params=moto.auth())
    await s.get_metric_and_activity()  # the client, its session and the service model are made once
    fds = open_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 7.0
        assert tcp_to(moto.port) <= 2
        assert open_fds() <= fds + 2
    finally:
        await s.close()
    assert tcp_to(moto.port) == 0
    assert open_fds() <= fds
    # A closed scaler makes a new client if it is used again.
    assert await read_once(s) == (7.0, True)


async def test_a_server_that_never_answers_is_bounded_by_the_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metadata = {"queueURL": URL, "awsRegion": REGION, "awsEndpoint": f"http://127.0.0.1:{port}"}
    s = scaler(metadata, auth_params=KEYS, ctx=replace(ctx(TYPE), timeout=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(ScalerError) as err:
            await read_once(s)
        assert time.monotonic() - started < 2.0
        assert "timeout" in str(err.value).lower() or "no answer" in str(err.value)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
