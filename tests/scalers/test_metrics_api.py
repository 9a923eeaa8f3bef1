"""The metrics-api scaler against a real aiohttp server on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ebb.errors import ScalerError, SpecError
from ebb.scalers import TriggerContext, build_scaler
from ebb.scalers.base import Scaler


@dataclass
class Api:
    """A metrics endpoint whose answer each test sets, recording what it receives."""

    status: int = 200
    body: str = "{}"
    content_type: str = "application/json"
    hang: bool = False
    url: str = ""
    requests: list[web.Request] = field(default_factory=list)
    #: Client (address, port) of every connection that carried a request: one per TCP connection.
    peers: set[tuple[str, int]] = field(default_factory=set)

    def answer(self, body: Any, content_type: str = "application/json", status: int = 200) -> None:
        self.body = body if isinstance(body, str) else json.dumps(body)
        self.content_type, self.status = content_type, status

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add((peer[0], peer[1]))
        if self.hang:
            await asyncio.Event().wait()
        return web.Response(status=self.status, text=self.body, content_type=self.content_type)


async def serve(api: Api, ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.url = f"{'https' if ssl_context else 'http'}://{host}:{port}/stats"
    return runner


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    server = Api()
    runner = await serve(server)
    yield server
    await runner.cleanup()


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Scaler]]:
    """Build metrics-api scalers (closed after the test, as the runtime would)."""
    made: list[Scaler] = []

    def _make(metadata: dict[str, str], auth: dict[str, str] | None = None, **ctx: Any) -> Scaler:
        scaler = build_scaler("metrics-api", metadata, ctx=TriggerContext(**ctx), auth_params=auth)
        made.append(scaler)
        return scaler

    yield _make
    for scaler in made:
        await scaler.close()


def meta(url: str, location: str = "value", **extra: str) -> dict[str, str]:
    return {"url": url, "valueLocation": location, "targetValue": "10", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- values from each format -------------------------------------------------------------------------

DOC = {
    "components": {"worker": {"tasks": 12, "load": "1.5k", "ratio": "500m", "text": "64"}},
    "queues": [{"name": "emails", "size": 5}, {"name": "images", "size": 9}],
    "dotted.key": 7,
    "count": 2.43,
}

JSON_CASES = [
    ("components.worker.tasks", 12.0),
    ("count", 2.43),
    ("queues.1.size", 9.0),
    ("queues.#", 2.0),
    (r"dotted\.key", 7.0),
    ("components.work*.tasks", 12.0),
    ('queues.#(name=="images").size', 9.0),
    ("queues.#(size<9).size", 5.0),
    ('queues.#(name%"im*").size', 9.0),
    ("components.worker.load", 1500.0),  # strings are Kubernetes quantities, as in KEDA
    ("components.worker.ratio", 0.5),
    ("components.worker.text", 64.0),
    # GJSON beyond plain keys, as KEDA's gjson reads them
    ("queues|@reverse|0.size", 9.0),
    ("queues.@reverse.0.size", 9.0),
    ("@this.count", 2.43),
    ("[count,queues.#]|1", 2.0),
    ("queues.#(name==images).size", 9.0),  # a bare query value is text
    ("queues.#(size>6)#|#", 1.0),
    ("queues.#(name>f).size", 9.0),  # strings compare as strings
    ("queues.#.size|@reverse|0", 9.0),
    ("queues.@dig:size|#", 2.0),
]

NESTED = {
    "friends": [
        {"first": "Dale", "age": 44, "nets": ["ig", "fb", "tw"]},
        {"first": "Roger", "age": 68, "nets": ["fb", "tw"]},
    ],
    "readings": [{"value": "7"}, {"value": "5"}, {"value": 9}],
}


@pytest.mark.parametrize(
    ("location", "value"),
    [
        ('friends.#(nets.#(=="fb")).age', 44.0),
        ('friends.#(nets.#(=="fb"))#|#', 2.0),
        ("friends.#(first==Roger).age", 68.0),
        # GJSON compares by the type of the value found: "7" > "6" as strings, 9 > 6 as numbers; "5" is not.
        ("readings.#(value>6)#|#", 2.0),
        ("readings.#(value>6).value", 7.0),
    ],
)
async def test_json_value_nested_queries(api: Api, make: Callable[..., Scaler], location: str, value: float) -> None:
    api.answer(NESTED)
    reading = await make(meta(api.url, location)).get_metric_and_activity()
    assert reading.value == pytest.approx(value)


async def test_json_lines(api: Api, make: Callable[..., Scaler]) -> None:
    api.answer('{"q": "a", "n": 3}\n{"q": "b", "n": 4}\n', "application/x-ndjson")
    assert (await make(meta(api.url, '..#(q=="b").n')).get_metric_and_activity()).value == 4.0
    assert (await make(meta(api.url, "..#")).get_metric_and_activity()).value == 2.0


async def test_a_path_gjson_cannot_resolve_loads_and_finds_nothing(api: Api, make: Callable[..., Scaler]) -> None:
    api.answer(DOC)
    scaler = make(meta(api.url, "components..worker"))  # KEDA accepts it too; it never matches
    with pytest.raises(ScalerError, match="matches nothing"):
        await scaler.get_metric_and_activity()


@pytest.mark.parametrize(("location", "value"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
async def test_json_value(api: Api, make: Callable[..., Scaler], location: str, value: float) -> None:
    api.answer(DOC)
    reading = await make(meta(api.url, location)).get_metric_and_activity()
    assert reading.value == pytest.approx(value)


YAML_BODY = """
components:
  - id: 82328e93e
    tasks: 32
    str: '64'
    k: 1k
count: 2.43
7: seven-as-key
nested: {levels: {deep: 11}}
"""


@pytest.mark.parametrize(
    ("location", "value"),
    [("components.0.tasks", 32.0), ("components.0.str", 64.0), ("components.0.k", 1000.0),
     ("count", 2.43), ("nested.levels.deep", 11.0), ("components.#", 1.0)],
)  # fmt: skip
async def test_yaml_value(api: Api, make: Callable[..., Scaler], location: str, value: float) -> None:
    api.answer(YAML_BODY, "application/yaml")
    reading = await make(meta(api.url, location, format="yaml")).get_metric_and_activity()
    assert reading.value == pytest.approx(value)


XML_BODY = """<?xml version="1.0"?>
<stats xmlns="urn:example">
  <queue name="emails"><length>5</length></queue>
  <worker><tasks>1</tasks><tasks> 4 </tasks><tasks>2k</tasks></worker>
  <empty/>
</stats>"""


@pytest.mark.parametrize(
    ("location", "value"),
    [("stats.queue.length", 5.0), ("stats.worker.tasks.1", 4.0), ("stats.worker.tasks.2", 2000.0),
     ("stats.worker.tasks.#", 3.0)],
)  # fmt: skip
async def test_xml_value(api: Api, make: Callable[..., Scaler], location: str, value: float) -> None:
    api.answer(XML_BODY, "application/xml")
    reading = await make(meta(api.url, location, format="xml")).get_metric_and_activity()
    assert reading.value == value


PROM_BODY = (
    "# HELP http_requests_total Requests served.\r\n"
    "# TYPE http_requests_total counter\r\n"
    'http_requests_total{code="200",path="/"} 1027\r\n'
    'http_requests_total{code="500",path="/"} 3\r\n'
    "# TYPE queue_depth gauge\r\n"
    'queue_depth{queue="emails"} 17\r\n'
    'queue_depth{queue="images"} 4.5\r\n'
    "# TYPE tasks_done counter\r\n"
    "tasks_done 41\r\n"  # a counter exposed without _total: KEDA finds it under this name
    "# TYPE latency histogram\r\n"
    'latency_bucket{le="+Inf"} 6\r\n'
    "latency_count 6\r\n"
    "latency_sum 2.5\r\n"
    "jobs_waiting 8"  # untyped, and no final newline: tolerated as KEDA does
)


@pytest.mark.parametrize(
    ("location", "value"),
    [
        ("jobs_waiting", 8.0),
        ('queue_depth{queue="images"}', 4.5),
        ("queue_depth", 17.0),  # the first series, as KEDA
        ('http_requests_total{code="500"}', 3.0),
        ('http_requests_total{code!="200"}', 3.0),
        ('{__name__="queue_depth", queue=~"im.*"}', 4.5),
        ("tasks_done", 41.0),
    ],
)
async def test_prometheus_value(api: Api, make: Callable[..., Scaler], location: str, value: float) -> None:
    api.answer(PROM_BODY, "text/plain")
    reading = await make(meta(api.url, location, format="prometheus")).get_metric_and_activity()
    assert reading.value == value


@pytest.mark.parametrize(
    "location",
    [
        'queue_depth{queue="videos"}',
        "tasks_done_total",  # nothing is renamed: the family is tasks_done
        "latency_count",  # histogram samples carry no value KEDA reads (it reads untyped, counter, gauge)
        "latency",
    ],
)
async def test_prometheus_no_such_series(api: Api, make: Callable[..., Scaler], location: str) -> None:
    api.answer(PROM_BODY, "text/plain")
    scaler = make(meta(api.url, location, format="prometheus"))
    with pytest.raises(ScalerError, match="matches no series"):
        await scaler.get_metric_and_activity()


# --- activation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "activation", "active"),
    [(0, None, False), (0.5, None, True), (3, "3", False), (3.01, "3", True), (2, "3", False)],
)
async def test_activation_threshold(
    api: Api, make: Callable[..., Scaler], value: float, activation: str | None, active: bool
) -> None:
    api.answer({"value": value})
    extra = {"activationTargetValue": activation} if activation is not None else {}
    reading = await make(meta(api.url, **extra)).get_metric_and_activity()
    assert reading.value == value
    assert reading.active is active


# --- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(500, "Internal Server Error"), (401, "Unauthorized")])
async def test_http_error_status(api: Api, make: Callable[..., Scaler], status: int, reason: str) -> None:
    api.answer({"value": 1}, status=status)
    with pytest.raises(ScalerError) as err:
        await make(meta(api.url)).get_metric_and_activity()
    assert f"HTTP {status} {reason}" in str(err.value)
    assert "/stats" in str(err.value)


async def test_server_down(make: Callable[..., Scaler]) -> None:
    with pytest.raises(ScalerError, match="Cannot connect"):
        await make(meta(f"http://127.0.0.1:{free_port()}/stats")).get_metric_and_activity()


async def test_slow_server_times_out_at_the_trigger_timeout(api: Api, make: Callable[..., Scaler]) -> None:
    api.hang = True
    scaler = make(meta(api.url, timeout="200"))  # milliseconds, as in KEDA
    assert scaler.timeout == 0.2
    with pytest.raises(ScalerError, match=r"no answer within 0\.2s"):
        await scaler.get_metric_and_activity()


@pytest.mark.parametrize(
    ("body", "location", "fragment"),
    [
        ({"value": "many"}, "value", "is not a number (found 'many')"),
        ({"value": "NaN"}, "value", "is not a number"),
        ({"value": True}, "value", "is not a number (found true)"),
        ({"value": None}, "value", "is not a number (found null)"),
        ({"value": {"a": 1}}, "value", "is not a number (found an object)"),
        ({"value": [1, 2]}, "value", "is not a number (found an array of 2)"),
        ({"items": [{"n": 1}, {"n": 2}]}, "items.#.n", "is not a number (found an array of 2)"),
        ({"other": 1}, "value", "matches nothing"),
        ({"value": [1]}, "value.3", "matches nothing"),
        ("not json at all", "value", "not valid json"),
        ('{"value": NaN}', "value", "not valid json"),
    ],
)
async def test_value_problems(api: Api, make: Callable[..., Scaler], body: Any, location: str, fragment: str) -> None:
    api.answer(body)
    with pytest.raises(ScalerError) as err:
        await make(meta(api.url, location)).get_metric_and_activity()
    assert fragment in str(err.value)
    assert "triggers[0] (metrics-api)" in str(err.value)


@pytest.mark.parametrize(
    ("fmt", "body", "fragment"),
    [
        ("xml", "<stats><value>1</value>", "not valid xml"),
        ("yaml", "value: [1, 2", "not valid yaml"),
        ("prometheus", "value{ 12\n", "not in the Prometheus text format"),
        ("xml", "<stats><value>lots</value></stats>", "is not a number (found 'lots')"),
    ],
)
async def test_malformed_bodies(api: Api, make: Callable[..., Scaler], fmt: str, body: str, fragment: str) -> None:
    api.answer(body, "text/plain")
    location = "stats.value" if fmt == "xml" else "value"
    with pytest.raises(ScalerError) as err:
        await make(meta(api.url, location, format=fmt)).get_metric_and_activity()
    assert fragment in str(err.value)


# --- authentication and secrets ----------------------------------------------------------------------

SECRET = "s3cr3t+/ &key=1"  # changes when URL-encoded: the encoded form must be masked too


@pytest.mark.parametrize(
    ("extra", "auth", "check"),
    [
        (
            {"authModes": "apiKey"},
            {"apiKey": SECRET},
            lambda r: r.headers["X-API-KEY"] == SECRET,
        ),
        (
            {"authMode": "apiKey", "method": "query"},
            {"apiKey": SECRET},
            lambda r: r.query["api_key"] == SECRET,
        ),
        (
            {"authModes": "apiKey", "method": "query", "keyParamName": "token"},
            {"apiKey": SECRET},
            lambda r: r.query["token"] == SECRET and r.query["page"] == "1",
        ),
        (
            {"authModes": "apiKey", "keyParamName": "X-Custom"},
            {"apiKey": SECRET},
            lambda r: r.headers["X-Custom"] == SECRET,
        ),
        (
            {"authModes": "basic"},
            {"username": "ops", "password": SECRET},
            lambda r: r.headers["Authorization"].startswith("Basic "),
        ),
        (
            {"authModes": "bearer"},
            {"token": SECRET},
            lambda r: r.headers["Authorization"] == f"Bearer {SECRET}",
        ),
        (
            {"authModes": "bearer"},
            {"bearerToken": SECRET},
            lambda r: r.headers["Authorization"] == f"Bearer {SECRET}",
        ),
    ],
    ids=["apiKey header", "apiKey query", "apiKey query custom name", "apiKey custom header", "basic",
         "bearer token", "bearer bearerToken"],
)  # fmt: skip
async def test_auth_is_sent_and_never_shown(
    api: Api, make: Callable[..., Scaler], extra: dict[str, str], auth: dict[str, str], check: Any
) -> None:
    scaler = make(meta(api.url + "?page=1", **extra), auth=auth)
    api.answer({"value": 4})
    assert (await scaler.get_metric_and_activity()).value == 4
    assert check(api.requests[-1])
    if "basic" in extra.values():
        import base64

        sent = api.requests[-1].headers["Authorization"].removeprefix("Basic ")
        assert base64.b64decode(sent).decode() == f"ops:{SECRET}"

    api.answer({"value": 1}, status=500)
    with pytest.raises(ScalerError) as err:
        await scaler.get_metric_and_activity()
    shown = [str(err.value), json.dumps(scaler.describe())]
    # Nor may a failed connection (where the URL, with a query-string key, is in the error path).
    down = make(meta(f"http://127.0.0.1:{free_port()}/stats?page=1", **extra), auth=auth)
    with pytest.raises(ScalerError) as err_down:
        await down.get_metric_and_activity()
    shown.append(str(err_down.value))
    for text in shown:
        for form in (SECRET, "s3cr3t", "s3cr3t%2B", "s3cr3t+%2F"):
            assert form not in text, text


def test_describe_masks_secrets(api: Api) -> None:
    scaler = build_scaler(
        "metrics-api", meta(api.url, authModes="basic"), auth_params={"username": "ops", "password": SECRET}
    )
    described = scaler.describe()
    assert described["username"] == "ops"
    assert described["password"] == "***"


# --- connections -------------------------------------------------------------------------------------


async def test_a_thousand_polls_reuse_connections(api: Api, make: Callable[..., Scaler]) -> None:
    api.answer({"value": 3})
    scaler = make(meta(api.url))
    for _ in range(1000):
        assert (await scaler.get_metric_and_activity()).value == 3
    assert len(api.requests) == 1000
    assert len(api.peers) <= 2


async def test_close_releases_the_connection_and_a_later_poll_reopens(api: Api, make: Callable[..., Scaler]) -> None:
    api.answer({"value": 3})
    scaler = make(meta(api.url))
    await scaler.get_metric_and_activity()
    await scaler.close()
    await scaler.close()
    await scaler.get_metric_and_activity()
    assert len(api.peers) == 2


# --- TLS ---------------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: str
    server_cert: Path
    server_key: Path
    client_cert: str
    client_key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_ext = (
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run(
        "req",
        "-x509",
        *ec,
        *ca_ext,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=ebb CA",
    )
    for name, usage, extra in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1"),
        ("client", "clientAuth", ""),
    ):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=ebb test {name}")
        (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n{extra}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    return Pki(
        ca=(d / "ca.crt").read_text(),
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=(d / "client.crt").read_text(),
        client_key=(d / "client.key").read_text(),
    )


@pytest.fixture
async def tls_api(pki: Pki) -> AsyncIterator[Api]:
    """An HTTPS endpoint that demands a client certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    server = Api()
    server.answer({"value": 6})
    runner = await serve(server, context)
    yield server
    await runner.cleanup()


async def test_tls_client_certificate(tls_api: Api, pki: Pki, make: Callable[..., Scaler]) -> None:
    auth = {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key}
    scaler = make(meta(tls_api.url, authModes="tls"), auth=auth)
    assert (await scaler.get_metric_and_activity()).value == 6
    assert "PRIVATE KEY" not in json.dumps(scaler.describe())


async def test_tls_without_client_certificate_is_refused(tls_api: Api, pki: Pki, make: Callable[..., Scaler]) -> None:
    with pytest.raises(ScalerError):
        await make(meta(tls_api.url, unsafeSsl="true")).get_metric_and_activity()


async def test_tls_unknown_ca_is_refused_unless_unsafe(pki: Pki, make: Callable[..., Scaler]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server = Api()
    server.answer({"value": 2})
    runner = await serve(server, context)
    try:
        with pytest.raises(ScalerError, match="certificate"):
            await make(meta(server.url)).get_metric_and_activity()
        assert (await make(meta(server.url, unsafeSsl="true")).get_metric_and_activity()).value == 2
    finally:
        await runner.cleanup()


async def test_tls_bad_key_pair_is_a_scaler_error(tls_api: Api, pki: Pki, make: Callable[..., Scaler]) -> None:
    auth = {"ca": pki.ca, "cert": pki.client_cert, "key": "-----BEGIN PRIVATE KEY-----\nnope\n"}
    with pytest.raises(ScalerError, match="not a valid PEM"):
        await make(meta(tls_api.url, authModes="tls"), auth=auth).get_metric_and_activity()


# --- metadata ----------------------------------------------------------------------------------------


def test_metric_spec_like_keda() -> None:
    scaler = build_scaler(
        "metrics-api",
        meta("http://api:3232/api/v1/stats", "components.worker.tasks", targetValue="8.8"),
        ctx=TriggerContext(trigger_index=1),
        metric_type="Value",
    )
    spec = scaler.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == (
        "s1-metric-api-components-worker-tasks",
        8.8,
        "Value",
    )


def test_parsing_with_keda_defaults() -> None:
    # The example in KEDA's metrics-api documentation, with every optional parameter left out.
    scaler = build_scaler(
        "metrics-api",
        {
            "targetValue": "8.8",
            "url": "http://api:3232/api/v1/stats",
            "valueLocation": "components.worker.tasks",
        },
    )
    described = scaler.describe()
    assert described == {
        "url": "http://api:3232/api/v1/stats",
        "format": "json",
        "valueLocation": "components.worker.tasks",
        "targetValue": 8.8,
        "activationTargetValue": 0.0,
        "unsafeSsl": False,
        "aggregateFromKubeServiceEndpoints": False,
        "aggregationType": "average",
        "authModes": (),
        "authMode": (),
        "method": "header",
    }
    assert scaler.timeout == TriggerContext().timeout


@pytest.mark.parametrize(("given", "seconds"), [("1500", 1.5), ("2s", 2.0), ("1m30s", 90.0), ("250ms", 0.25)])
def test_timeout_parameter(given: str, seconds: float) -> None:
    scaler = build_scaler("metrics-api", meta("http://api/stats", timeout=given))
    assert scaler.timeout == seconds


BAD: list[tuple[str, dict[str, str | None], dict[str, str], str, str]] = [
    # (case, metadata overrides (None removes), auth params, parameter named, message fragment)
    ("no url", {"url": None}, {}, "url", "required"),
    ("no valueLocation", {"valueLocation": None}, {}, "valueLocation", "required"),
    ("no targetValue", {"targetValue": None}, {}, "targetValue", "required"),
    ("negative targetValue", {"targetValue": "-3"}, {}, "targetValue", "greater than 0"),
    ("zero targetValue", {"targetValue": "0"}, {}, "targetValue", "greater than 0"),
    ("targetValue not a number", {"targetValue": "ten"}, {}, "targetValue", "number"),
    ("activation not a number", {"activationTargetValue": "x"}, {}, "activationTargetValue", "number"),
    ("unknown format", {"format": "csv"}, {}, "format", "'json'"),
    ("not http", {"url": "ftp://files/stats"}, {}, "url", "http"),
    ("no host", {"url": "stats"}, {}, "url", "http"),
    ("unsafeSsl not a bool", {"unsafeSsl": "perhaps"}, {}, "unsafeSsl", "boolean"),
    ("timeout not a duration", {"timeout": "soon"}, {}, "timeout", "duration"),
    ("negative timeout", {"timeout": "-1s"}, {}, "timeout", "duration"),
    ("empty valueLocation", {"valueLocation": " "}, {}, "valueLocation", "required"),
    ("bad selector", {"format": "prometheus", "valueLocation": "up{job=}"}, {}, "valueLocation", "matcher"),
    ("aggregation from a host that names no service", {"aggregateFromKubeServiceEndpoints": "true"}, {},
     "aggregateFromKubeServiceEndpoints", "<service>.<namespace>"),
    ("aggregation locally", {"aggregateFromKubeServiceEndpoints": "true", "url": "http://api.shop/stats"}, {},
     "aggregateFromKubeServiceEndpoints", "scalingModifiers.formula"),
    ("unknown aggregationType", {"aggregationType": "avg"}, {}, "aggregationType", "'average'"),
    ("unknown auth mode", {"authModes": "magic"}, {}, "authModes", "'apiKey'"),
    ("oauth", {"authModes": "oauth"}, {}, "authModes", "not supported"),
    ("basic and bearer", {"authModes": "basic,bearer"}, {"username": "u", "token": "t"}, "authModes",
     "combined"),
    ("basic without username", {"authModes": "basic"}, {"password": "p"}, "authModes", "username"),
    ("bearer without token", {"authMode": "bearer"}, {}, "authMode", "token"),
    ("apiKey without key", {"authModes": "apiKey"}, {}, "authModes", "apiKey"),
    ("tls without key", {"authModes": "tls"}, {"cert": "C"}, "authModes", "cert and key"),
    ("apiKey in plain metadata", {"authModes": "apiKey", "apiKey": "k"}, {}, "apiKey", "secret"),
    ("bad method", {"method": "cookie"}, {}, "method", "'header'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "overrides", "auth", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_metadata_names_the_parameter(
    case: str, overrides: dict[str, str | None], auth: dict[str, str], key: str, fragment: str
) -> None:
    metadata = {k: v for k, v in {**meta("http://api/stats"), **overrides}.items() if v is not None}
    ctx = TriggerContext(namespace="shop", name="api", trigger_index=4)
    with pytest.raises(SpecError) as err:
        build_scaler("metrics-api", metadata, ctx=ctx, auth_params=auth)
    assert err.value.obj == "ScaledObject shop/api"
    assert err.value.field == f"spec.triggers[4].metadata.{key}"
    assert fragment in err.value.message


def test_target_value_is_optional_only_when_the_trigger_feeds_a_formula() -> None:
    """KEDA's AsMetricSource: inside scalingModifiers a trigger's own target is not needed."""
    metadata = {"url": "http://127.0.0.1:1/m", "valueLocation": "depth"}
    feeding = build_scaler(
        "metrics-api", metadata, ctx=TriggerContext(trigger_type="metrics-api", as_metric_source=True)
    )
    assert feeding.metric_spec().target == 0.0
    with pytest.raises(SpecError) as exc:
        build_scaler("metrics-api", metadata)
    assert exc.value.field == "spec.triggers[0].metadata.targetValue"
