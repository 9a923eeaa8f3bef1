"""The azure-queue trigger against a private Azurite queue service (see _azurite.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from azure.storage.queue.aio import QueueClient
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._azurite import ENABLE, KEY, REPO, Azurite, azurite
from ._servers import free_port

FAKE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    try:
        with azurite("queue", tmp_path_factory.mktemp("azurite-queue")) as srv:
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


def ctx(index: int = 0, **kw: Any) -> TriggerContext:
    return TriggerContext(name=f"aq-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="azure-queue", **kw)


def scaler(metadata: dict[str, str], auth: dict[str, str] | None = None, **kw: Any) -> Scaler:
    return build_scaler("azure-queue", metadata, ctx=kw.pop("ctx", None) or ctx(), auth_params=auth, **kw)


class Queue:
    def __init__(self, client: QueueClient) -> None:
        self.client = client
        self.name = client.queue_name

    async def send(self, n: int) -> None:
        for i in range(n):
            await self.client.send_message(f"m{i}")


@pytest.fixture
async def queue(server: Azurite) -> AsyncIterator[Queue]:
    name = f"ebb-{uuid.uuid4().hex[:12]}"
    async with QueueClient.from_connection_string(server.connection_string(), name) as client:
        await client.create_queue()
        yield Queue(client)
        await client.delete_queue()


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    s = scaler({"queueName": "orders.eu"}, {"connection": FAKE}, ctx=ctx(index=2))
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s2-azure-queue-orders-eu", 5.0, "AverageValue")
    d = s.describe()
    assert (d["queueLength"], d["activationQueueLength"], d["queueLengthStrategy"]) == (5, 0, "all")
    assert d["connection"] == "***"
    assert "c2VjcmV0LWtleQ" not in repr(d)
    assert s.activation_threshold() == 0.0


def test_connection_from_env_and_value_metric_type() -> None:
    s = build_scaler(
        "azure-queue",
        {"queueName": "q", "connectionFromEnv": "STORAGE", "queueLength": "7"},
        ctx=ctx(metric_type="Value"),
        resolved_env={"STORAGE": FAKE},
    )
    assert (s.metric_spec().target, s.metric_spec().metric_type) == (7.0, "Value")


BAD: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("no queueName", {}, {"connection": FAKE}, "queueName"),
    ("empty queueName", {"queueName": ""}, {"connection": FAKE}, "queueName"),
    ("text queueLength", {"queueName": "q", "queueLength": "AA"}, {"connection": FAKE}, "queueLength"),
    ("zero queueLength", {"queueName": "q", "queueLength": "0"}, {"connection": FAKE}, "queueLength"),
    (
        "text activation",
        {"queueName": "q", "activationQueueLength": "AA"},
        {"connection": FAKE},
        "activationQueueLength",
    ),
    (
        "unknown strategy",
        {"queueName": "q", "queueLengthStrategy": "VisibleOnly"},
        {"connection": FAKE},
        "queueLengthStrategy",
    ),
    ("no connection", {"queueName": "q"}, {}, "connection"),
    ("connection in plain metadata", {"queueName": "q", "connection": FAKE}, {}, "connection"),
    ("missing env variable", {"queueName": "q", "connectionFromEnv": "NOPE"}, {}, "connectionFromEnv"),
    ("workload identity", {"queueName": "q", "accountName": "acct"}, {}, "accountName"),
    ("not key=value", {"queueName": "q"}, {"connection": "AccountKey=s3cr3t-key;garbage"}, "connection"),
    ("no key", {"queueName": "q"}, {"connection": "AccountName=acct;EndpointSuffix=core.windows.net"}, "connection"),
    ("no endpoint", {"queueName": "q"}, {"connection": "SharedAccessSignature=sv=1&sig=s3cr3t-key"}, "connection"),
    ("unknown cloud", {"queueName": "q", "cloud": "Mars"}, {"connection": FAKE}, "cloud"),
    ("private without suffix", {"queueName": "q", "cloud": "Private"}, {"connection": FAKE}, "endpointSuffix"),
]


@pytest.mark.parametrize(("metadata", "auth", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert "s3cr3t-key" not in str(err.value)
    assert "c2VjcmV0LWtleQ" not in str(err.value)


def test_workload_identity_is_refused_with_what_to_do() -> None:
    with pytest.raises(SpecError, match=r"workload identity.*connection"):
        scaler({"queueName": "q", "accountName": "acct"})


@pytest.mark.parametrize(
    ("cloud", "suffix"),
    [
        (None, "queue.core.windows.net"),
        ("AzureChinaCloud", "queue.core.chinacloudapi.cn"),
        ("azureusgovernmentcloud", "queue.core.usgovcloudapi.net"),
    ],
)
def test_cloud_picks_the_endpoint_suffix(cloud: str | None, suffix: str) -> None:
    meta = {"queueName": "q"} | ({"cloud": cloud} if cloud else {})
    assert scaler(meta, {"connection": FAKE}).endpoint_suffix == suffix  # type: ignore[attr-defined]


def test_development_storage_means_azurite_on_its_default_port() -> None:
    s = scaler({"queueName": "q"}, {"connection": "UseDevelopmentStorage=true"})
    assert s.endpoint == "http://127.0.0.1:10001/devstoreaccount1/q"  # type: ignore[attr-defined]
    asyncio.run(s.close())


def test_private_cloud_takes_endpoint_suffix() -> None:
    s = scaler({"queueName": "q", "cloud": "Private", "endpointSuffix": "queue.example.net"}, {"connection": FAKE})
    assert s.endpoint_suffix == "queue.example.net"  # type: ignore[attr-defined]


# --- against Azurite ------------------------------------------------------------------------------------


async def test_known_value(server: Azurite, queue: Queue) -> None:
    await queue.send(17)
    s = scaler({"queueName": queue.name, "queueLength": "5"}, {"connection": server.connection_string()})
    assert await read_once(s) == (17.0, True)


async def test_empty_queue_is_inactive(server: Azurite, queue: Queue) -> None:
    s = scaler({"queueName": queue.name}, {"connection": server.connection_string()})
    assert await read_once(s) == (0.0, False)


@pytest.mark.parametrize(("activation", "active"), [("16", True), ("17", False), ("40", False)])
async def test_activation_exactly_at_the_threshold(
    server: Azurite, queue: Queue, activation: str, active: bool
) -> None:
    await queue.send(17)
    s = scaler(
        {"queueName": queue.name, "activationQueueLength": activation}, {"connection": server.connection_string()}
    )
    assert await read_once(s) == (17.0, active)


async def test_all_counts_invisible_messages_visibleonly_does_not(server: Azurite, queue: Queue) -> None:
    await queue.send(10)
    received = [m async for m in queue.client.receive_messages(max_messages=3, visibility_timeout=300)][:3]
    assert len(received) == 3
    conn = {"connection": server.connection_string()}
    assert (await read_once(scaler({"queueName": queue.name}, conn)))[0] == 10.0
    visible = scaler({"queueName": queue.name, "queueLengthStrategy": "visibleonly"}, conn)
    assert (await read_once(visible))[0] == 7.0


async def test_visibleonly_falls_back_to_the_approximate_count_past_32(server: Azurite, queue: Queue) -> None:
    await queue.send(40)
    s = scaler(
        {"queueName": queue.name, "queueLengthStrategy": "visibleonly"}, {"connection": server.connection_string()}
    )
    assert (await read_once(s))[0] == 40.0


async def test_connection_through_env(server: Azurite, queue: Queue) -> None:
    await queue.send(2)
    s = build_scaler(
        "azure-queue",
        {"queueName": queue.name, "connectionFromEnv": "AZ"},
        ctx=ctx(),
        resolved_env={"AZ": server.connection_string()},
    )
    assert (await read_once(s))[0] == 2.0


async def test_wrong_key_is_an_error_without_the_key(server: Azurite, queue: Queue) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    s = scaler({"queueName": queue.name}, {"connection": server.connection_string(wrong)})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    message = str(err.value)
    assert "refused the credentials" in message and "AuthenticationFailed" in message
    assert wrong not in message and KEY not in message
    assert err.value.obj.startswith("ScaledObject default/aq-") and "azure-queue" in err.value.trigger


async def test_missing_queue_says_so(server: Azurite) -> None:
    name = f"ebb-none-{uuid.uuid4().hex[:8]}"
    s = scaler({"queueName": name}, {"connection": server.connection_string()})
    with pytest.raises(ScalerError, match=f"queue '{name}' not found at {server.endpoint}"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    conn = f"AccountName=devstoreaccount1;AccountKey={KEY};QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
    s = scaler({"queueName": "q"}, {"connection": conn})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach Azure Storage at http://127.0.0.1:{port}" in str(err.value)
    assert KEY not in str(err.value)


def _tcp_to(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


async def test_no_connection_or_fd_leak_over_1000_polls(server: Azurite, queue: Queue) -> None:
    await queue.send(3)
    s = scaler(
        {"queueName": queue.name, "queueLengthStrategy": "visibleonly"}, {"connection": server.connection_string()}
    )
    await s.get_metric_and_activity()  # the first poll opens the pool; count from there
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert process.num_fds() <= fds + 1
        assert _tcp_to(server.port) <= 2
    finally:
        await s.close()
    assert process.num_fds() < fds


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: Azurite, tmp_path: Path) -> None:
    text = (REPO / "examples" / "azure-queue.yaml").read_text()
    assert "127.0.0.1:10001" in text
    path = tmp_path / "azure-queue.yaml"
    path.write_text(text.replace("127.0.0.1:10001", f"127.0.0.1:{server.port}"))

    async def fill() -> None:
        async with QueueClient.from_connection_string(server.connection_string(), "thumbnails") as client:
            await client.create_queue()
            for i in range(7):
                await client.send_message(f"m{i}")

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = row_of(result.output, "[0] azure-queue")
    assert (row["metric"], row["value"], row["target"], row["active"]) == (
        "s0-azure-queue-thumbnails",
        "7",
        "5 (AverageValue)",
        "yes",
    )
    assert KEY not in result.output


def test_workload_identity_in_a_trigger_authentication_is_refused_naming_pod_identity(tmp_path: Path) -> None:
    text = (
        "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: w}\nspec: {command: [worker]}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: wi}\n"
        "spec: {podIdentity: {provider: azure-workload}}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w}\nspec:\n"
        "  scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: w}\n"
        "  triggers:\n    - type: azure-queue\n      metadata: {queueName: q, accountName: acct}\n"
        "      authenticationRef: {name: wi}\n"
    )
    path = tmp_path / "wi.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["check", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "spec.triggers[0].authenticationRef" in result.output
    assert "podIdentity (provider azure-workload)" in result.output
