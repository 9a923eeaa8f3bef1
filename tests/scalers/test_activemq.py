"""The activemq trigger against a private ActiveMQ Classic with Jolokia (Debian's packages, see _activemq.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._activemq import BROKER, ENABLE, USER, ActiveMQ, activemq_server
from ._servers import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActiveMQ]:
    try:
        with activemq_server(tmp_path_factory.mktemp("activemq"), password="pw-" + uuid.uuid4().hex[:10]) as srv:
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"amq-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="activemq")


def scaler(metadata: dict[str, str], auth: dict[str, str] | None = None, **kw: Any) -> Scaler:
    return build_scaler("activemq", metadata, ctx=kw.pop("ctx", None) or ctx(), auth_params=auth, **kw)


def creds(srv: ActiveMQ) -> dict[str, str]:
    return {"username": USER, "password": srv.password}


def queue_meta(srv: ActiveMQ, queue: str, **extra: str) -> dict[str, str]:
    return {"managementEndpoint": srv.management_endpoint, "brokerName": BROKER, "destinationName": queue, **extra}


# --- parsing ---------------------------------------------------------------------------------------

AUTH = {"username": "admin", "password": "s3cr3t-pw"}
BASE = {"managementEndpoint": "amq:8161", "brokerName": "localhost", "destinationName": "jobs"}


def test_keda_defaults_url_and_metric_name() -> None:
    s = scaler(BASE, AUTH, ctx=ctx(index=1))
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s1-activemq-jobs", 10.0, "AverageValue")
    assert s.url == (  # type: ignore[attr-defined]
        "http://amq:8161/api/jolokia/read/org.apache.activemq:type=Broker,brokerName=localhost,"
        "destinationType=Queue,destinationName=jobs/QueueSize"
    )
    assert s.origin == "http://amq:8161"  # type: ignore[attr-defined]
    d = s.describe()
    assert (d["activationTargetQueueSize"], d["password"]) == (0, "***")


def test_rest_api_template_gives_endpoint_broker_and_destination() -> None:
    template = (
        "https://amq.example:8162/api/jolokia/read/org.apache.activemq:type=Broker,brokerName={{.BrokerName}},"
        "destinationType=Queue,destinationName=orders.eu/QueueSize"
    )
    s = scaler({"restAPITemplate": template.replace("{{.BrokerName}}", "b1"), "corsHeader": "https://x"}, AUTH)
    assert (s.management_endpoint, s.broker_name, s.destination_name) == ("amq.example:8162", "b1", "orders.eu")  # type: ignore[attr-defined]
    assert s.metric_spec().name == "s0-activemq-orders-eu"
    assert s.origin == "https://x"  # type: ignore[attr-defined]


def test_username_from_metadata_password_from_env() -> None:
    s = build_scaler(
        "activemq",
        {**BASE, "username": "u", "passwordFromEnv": "PW"},
        ctx=ctx(),
        resolved_env={"PW": "s3cr3t-pw"},
    )
    assert s.describe()["username"] == "u"


BAD: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("no endpoint", {k: v for k, v in BASE.items() if k != "managementEndpoint"}, AUTH, "managementEndpoint"),
    ("no broker", {k: v for k, v in BASE.items() if k != "brokerName"}, AUTH, "brokerName"),
    ("no destination", {k: v for k, v in BASE.items() if k != "destinationName"}, AUTH, "destinationName"),
    ("no username", BASE, {"password": "s3cr3t-pw"}, "username"),
    ("no password", BASE, {"username": "u"}, "password"),
    ("password in metadata", {**BASE, "password": "s3cr3t-pw"}, {"username": "u"}, "password"),
    ("text target", {**BASE, "targetQueueSize": "x"}, AUTH, "targetQueueSize"),
    ("zero target", {**BASE, "targetQueueSize": "0"}, AUTH, "targetQueueSize"),
    ("text activation", {**BASE, "activationTargetQueueSize": "x"}, AUTH, "activationTargetQueueSize"),
    ("template not a URL", {"restAPITemplate": "amq/api"}, AUTH, "restAPITemplate"),
    (
        "template without destination",
        {"restAPITemplate": "http://h:1/api/jolokia/read/org.apache.activemq:type=Broker,brokerName=b/QueueSize"},
        AUTH,
        "restAPITemplate",
    ),
    (
        "template with other fields",
        {
            "restAPITemplate": "http://h:1/api/jolokia/read/org.apache.activemq:type=Broker,brokerName=b,"
            "destinationName=d/{{.Attribute}}"
        },
        AUTH,
        "restAPITemplate",
    ),
]


@pytest.mark.parametrize(("metadata", "auth", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert "s3cr3t-pw" not in str(err.value)


# --- against the broker ----------------------------------------------------------------------------


async def test_known_value(server: ActiveMQ) -> None:
    queue = f"ebb.{uuid.uuid4().hex[:10]}"
    server.send(queue, 13)
    s = scaler(queue_meta(server, queue, targetQueueSize="5"), creds(server))
    assert await read_once(s) == (13.0, True)


@pytest.mark.parametrize(("activation", "active"), [("5", True), ("6", False), ("20", False)])
async def test_activation_exactly_at_the_threshold(server: ActiveMQ, activation: str, active: bool) -> None:
    queue = f"ebb.{uuid.uuid4().hex[:10]}"
    server.send(queue, 6)
    s = scaler(queue_meta(server, queue, activationTargetQueueSize=activation), creds(server))
    assert await read_once(s) == (6.0, active)


async def test_rest_api_template_against_the_broker(server: ActiveMQ) -> None:
    queue = f"ebb.{uuid.uuid4().hex[:10]}"
    server.send(queue, 2)
    template = (
        f"http://{server.management_endpoint}/api/jolokia/read/org.apache.activemq:type=Broker,"
        f"brokerName={BROKER},destinationType=Queue,destinationName={queue}/QueueSize"
    )
    assert (await read_once(scaler({"restAPITemplate": template}, creds(server))))[0] == 2.0


async def test_missing_queue_is_jolokias_404(server: ActiveMQ) -> None:
    queue = f"ebb.none.{uuid.uuid4().hex[:8]}"
    s = scaler(queue_meta(server, queue), creds(server))
    with pytest.raises(ScalerError, match=f"answered status 404 for '{queue}'.*InstanceNotFoundException"):
        await read_once(s)


async def test_wrong_password_is_an_error_without_the_password(server: ActiveMQ) -> None:
    wrong = "Wr0ng-" + uuid.uuid4().hex[:8]
    s = scaler(queue_meta(server, "jobs"), {"username": USER, "password": wrong})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    message = str(err.value)
    assert f"Jolokia at {server.management_endpoint} answered 401 Unauthorized: check username and password" in message
    assert wrong not in message and server.password not in message


async def test_server_down() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    s = scaler({**BASE, "managementEndpoint": endpoint}, AUTH)
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach Jolokia at {endpoint}" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)


async def test_no_connection_or_fd_leak_over_1000_polls(server: ActiveMQ) -> None:
    queue = f"ebb.{uuid.uuid4().hex[:10]}"
    server.send(queue, 3)
    s = scaler(queue_meta(server, queue), creds(server))
    await s.get_metric_and_activity()
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert process.num_fds() <= fds + 1
    finally:
        await s.close()
    assert process.num_fds() <= fds


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: ActiveMQ, tmp_path: Path) -> None:
    text = (REPO / "examples" / "activemq.yaml").read_text()
    assert "127.0.0.1:8161" in text and "brokerName: localhost" in text
    text = text.replace("127.0.0.1:8161", server.management_endpoint).replace(
        "brokerName: localhost", f"brokerName: {BROKER}"
    )
    text = text.replace("password: admin", f"password: {server.password}")
    path = tmp_path / "activemq.yaml"
    path.write_text(text)
    server.send("invoices", 8)
    result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = row_of(result.output, "[0] activemq")
    shown = (row["metric"], row["value"], row["target"], row["active"])
    assert shown == ("s0-activemq-invoices", "8", "5 (AverageValue)", "yes")
    assert server.password not in result.output
