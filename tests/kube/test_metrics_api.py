"""The external-metrics API over real HTTPS on loopback, with certificates made by ebb.kube.certs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ebb.errors import ScalerError
from ebb.kube import certs
from ebb.kube.metrics_api import (
    PLACEHOLDER_RESOURCE,
    SCALED_OBJECT_LABEL,
    MetricsAPIServer,
    SelectorError,
    format_quantity,
    get_external_metric,
    parse_label_selector,
)
from ebb.kube.metrics_provider import ExternalMetricValue, MetricDescriptor, MetricNotFound

BASE = "/apis/external.metrics.k8s.io/v1beta1"
SECRET = "hunter2-s3cr3t-password"


class DictMetricsProvider:
    """A real MetricsProvider backed by a dict: (namespace, scaled object, metric) -> value or exception."""

    def __init__(self, values: dict[tuple[str, str, str], float | Exception], now: float) -> None:
        self.values = values
        self.now = now
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def list_metrics(self) -> list[MetricDescriptor]:
        return [MetricDescriptor(ns, metric, so) for (ns, so, metric) in self.values]

    async def get_metric(
        self, namespace: str, metric_name: str, selector: Mapping[str, str]
    ) -> list[ExternalMetricValue]:
        self.calls.append((namespace, metric_name, dict(selector)))
        await asyncio.sleep(0)
        key = (namespace, selector.get(SCALED_OBJECT_LABEL, ""), metric_name)
        if key not in self.values:
            raise MetricNotFound(metric_name)
        value = self.values[key]
        if isinstance(value, Exception):
            raise value
        return [ExternalMetricValue(metric_name, value, self.now, {"trigger": metric_name})]


NOW = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp()


def _failing_scaler() -> ScalerError:
    try:
        raise ConnectionError(f"redis://:{SECRET}@redis:6379 refused")
    except ConnectionError as cause:
        error = ScalerError("ScaledObject apps/worker", "s0-redis-jobs", "connection refused by redis:6379")
        error.__cause__ = cause
        return error


VALUES: dict[tuple[str, str, str], float | Exception] = {
    ("apps", "worker", "s0-redis-jobs"): 17.0,
    ("apps", "worker", "s1-postgresql"): 1.5,
    ("apps", "other", "s0-redis-jobs"): 4.0,
    ("apps", "broken", "s0-redis-jobs"): _failing_scaler(),
    ("apps", "crashing", "s0-redis-jobs"): RuntimeError(f"password={SECRET}"),
}


@pytest.fixture(scope="module")
def tls() -> certs.TLSBundle:
    return certs.generate(["localhost", "127.0.0.1"])


@pytest.fixture
async def served(tls: certs.TLSBundle) -> AsyncIterator[tuple[MetricsAPIServer, aiohttp.ClientSession]]:
    provider = DictMetricsProvider(dict(VALUES), NOW)
    server = MetricsAPIServer(provider, "127.0.0.1", 0, tls.ssl_context())
    await server.start()
    connector = aiohttp.TCPConnector(ssl=certs.client_ssl_context(tls.ca_cert))
    async with aiohttp.ClientSession(base_url=server.url, connector=connector) as session:
        yield server, session
    await server.stop()


async def _get(session: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, Any]:
    async with session.get(path, params=params or None) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def test_discovery_documents(served: tuple[MetricsAPIServer, aiohttp.ClientSession]) -> None:
    _, session = served
    status, groups = await _get(session, "/apis")
    assert status == 200
    assert groups["kind"] == "APIGroupList"
    [group] = groups["groups"]
    assert group["name"] == "external.metrics.k8s.io"
    assert group["preferredVersion"] == {"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}

    status, single = await _get(session, "/apis/external.metrics.k8s.io")
    assert (status, single["kind"], single["versions"]) == (200, "APIGroup", group["versions"])

    status, listing = await _get(session, BASE)
    assert status == 200
    assert (listing["kind"], listing["groupVersion"]) == ("APIResourceList", "external.metrics.k8s.io/v1beta1")
    names = [resource["name"] for resource in listing["resources"]]
    assert names == ["s0-redis-jobs", "s1-postgresql"]  # one entry per metric name, sorted
    for resource in listing["resources"]:
        assert resource["namespaced"] is True
        assert resource["kind"] == "ExternalMetricValueList"
        assert resource["verbs"] == ["get"]


async def test_discovery_is_never_empty(served: tuple[MetricsAPIServer, aiohttp.ClientSession]) -> None:
    server, session = served
    assert isinstance(server.provider, DictMetricsProvider)
    server.provider.values.clear()
    _, listing = await _get(session, BASE)
    assert [resource["name"] for resource in listing["resources"]] == [PLACEHOLDER_RESOURCE]


async def test_value_as_hpa_reads_it(served: tuple[MetricsAPIServer, aiohttp.ClientSession]) -> None:
    _, session = served
    status, body = await _get(
        session, f"{BASE}/namespaces/apps/s1-postgresql", labelSelector=f"{SCALED_OBJECT_LABEL}=worker"
    )
    assert status == 200
    assert (body["kind"], body["apiVersion"], body["metadata"]) == (
        "ExternalMetricValueList",
        "external.metrics.k8s.io/v1beta1",
        {},
    )
    assert body["items"] == [
        {
            "metricName": "s1-postgresql",
            "metricLabels": {"trigger": "s1-postgresql"},
            "timestamp": "2025-03-04T05:06:07Z",
            "value": "1500m",
        }
    ]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (f"{SCALED_OBJECT_LABEL}=worker", "17"),
        (f"{SCALED_OBJECT_LABEL}==other", "4"),
        (f"{SCALED_OBJECT_LABEL} in (other)", "4"),
        (f"app=x,{SCALED_OBJECT_LABEL}=worker", "17"),
    ],
)
async def test_selector_picks_the_scaled_object(
    served: tuple[MetricsAPIServer, aiohttp.ClientSession], selector: str, expected: str
) -> None:
    server, session = served
    status, body = await _get(session, f"{BASE}/namespaces/apps/s0-redis-jobs", labelSelector=selector)
    assert status == 200, body
    assert [item["value"] for item in body["items"]] == [expected]
    assert isinstance(server.provider, DictMetricsProvider)
    assert server.provider.calls[-1][2][SCALED_OBJECT_LABEL] == ("worker" if expected == "17" else "other")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"labelSelector": "app=worker"},
        {"labelSelector": f"{SCALED_OBJECT_LABEL} in (a,b)"},
        {"labelSelector": f"{SCALED_OBJECT_LABEL} notin (worker)"},
        {"labelSelector": "a=b=c"},
        {"labelSelector": f"{SCALED_OBJECT_LABEL} in (worker"},
    ],
)
async def test_selector_missing_or_invalid_is_400(
    served: tuple[MetricsAPIServer, aiohttp.ClientSession], params: dict[str, str]
) -> None:
    server, session = served
    status, body = await _get(session, f"{BASE}/namespaces/apps/s0-redis-jobs", **params)
    assert status == 400
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "BadRequest", 400)
    assert isinstance(server.provider, DictMetricsProvider)
    assert server.provider.calls == []


@pytest.mark.parametrize(
    ("namespace", "metric", "scaled_object"),
    [("apps", "s9-nothing", "worker"), ("elsewhere", "s0-redis-jobs", "worker"), ("apps", "s0-redis-jobs", "nope")],
)
async def test_unknown_metric_is_404_status(
    served: tuple[MetricsAPIServer, aiohttp.ClientSession], namespace: str, metric: str, scaled_object: str
) -> None:
    _, session = served
    status, body = await _get(
        session, f"{BASE}/namespaces/{namespace}/{metric}", labelSelector=f"{SCALED_OBJECT_LABEL}={scaled_object}"
    )
    assert status == 404
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)
    assert metric in body["message"]
    assert body["details"]["name"] == metric


@pytest.mark.parametrize("scaled_object", ["broken", "crashing"])
async def test_source_failure_is_500_without_the_secret(
    served: tuple[MetricsAPIServer, aiohttp.ClientSession], scaled_object: str
) -> None:
    _, session = served
    async with session.get(
        f"{BASE}/namespaces/apps/s0-redis-jobs", params={"labelSelector": f"{SCALED_OBJECT_LABEL}={scaled_object}"}
    ) as response:
        raw = await response.text()
        body = await response.json()
    assert response.status == 500
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "InternalError", 500)
    assert SECRET not in raw
    if scaled_object == "broken":
        assert "connection refused by redis:6379" in body["message"]


async def test_unknown_path_is_a_status(served: tuple[MetricsAPIServer, aiohttp.ClientSession]) -> None:
    _, session = served
    status, body = await _get(session, "/apis/custom.metrics.k8s.io/v1beta2")
    assert (status, body["kind"], body["reason"]) == (404, "Status", "NotFound")


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_probes(served: tuple[MetricsAPIServer, aiohttp.ClientSession], path: str) -> None:
    _, session = served
    async with session.get(path) as response:
        assert (response.status, await response.text()) == (200, "ok")


@pytest.mark.parametrize(("path", "key"), [("/openapi/v2", "swagger"), ("/openapi/v3", "paths")])
async def test_openapi_documents(served: tuple[MetricsAPIServer, aiohttp.ClientSession], path: str, key: str) -> None:
    _, session = served
    status, body = await _get(session, path)
    assert status == 200 and key in body
    if path == "/openapi/v3":
        [(_, entry)] = body["paths"].items()
        status, group = await _get(session, entry["serverRelativeURL"])
        assert status == 200 and group["openapi"].startswith("3.")


async def test_concurrent_requests(served: tuple[MetricsAPIServer, aiohttp.ClientSession]) -> None:
    _, session = served
    requests = [
        _get(session, f"{BASE}/namespaces/apps/s0-redis-jobs", labelSelector=f"{SCALED_OBJECT_LABEL}={so}")
        for so in ["worker", "other"] * 50
    ]
    results = await asyncio.gather(*requests)
    assert [(status, body["items"][0]["value"]) for status, body in results] == [(200, "17"), (200, "4")] * 50


async def test_readyz_follows_the_ready_callback(tls: certs.TLSBundle) -> None:
    state = {"ready": False}
    server = MetricsAPIServer(
        DictMetricsProvider({}, NOW), "127.0.0.1", 0, tls.ssl_context(), ready=lambda: state["ready"]
    )
    async with server:
        connector = aiohttp.TCPConnector(ssl=certs.client_ssl_context(tls.ca_cert))
        async with aiohttp.ClientSession(base_url=server.url, connector=connector) as session:
            async with session.get("/readyz") as response:
                assert response.status == 503
            state["ready"] = True
            async with session.get("/readyz") as response:
                assert response.status == 200
    assert not server.running


async def test_client_certificate_required_when_a_client_ca_is_given(tls: certs.TLSBundle) -> None:
    aggregator = certs.generate(["front-proxy-client"])  # stands in for the front-proxy client CA
    server = MetricsAPIServer(DictMetricsProvider({}, NOW), "127.0.0.1", 0, tls.ssl_context(aggregator.ca_cert))
    async with server:
        anonymous = certs.client_ssl_context(tls.ca_cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=anonymous)) as session:
            with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                async with session.get(f"{server.url}/healthz") as response:
                    await response.text()
        trusted = certs.client_ssl_context(tls.ca_cert)
        client_tls = certs.generate(["front-proxy-client"], ca=aggregator, client_auth=True)
        with _pem_files(client_tls) as (cert_path, key_path):
            trusted.load_cert_chain(cert_path, key_path)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted)) as session,
            session.get(f"{server.url}/healthz") as response,
        ):
            assert response.status == 200


@contextlib.contextmanager
def _pem_files(bundle: certs.TLSBundle) -> Iterator[tuple[str, str]]:
    """The bundle's cert and key as files, which is what SSLContext.load_cert_chain reads."""
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
        cert.write_bytes(bundle.cert)
        key.write_bytes(bundle.key)
        yield str(cert), str(key)


# --- the plain functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (17, "17"),
        (1.5, "1500m"),
        (0, "0"),
        (0.25, "250m"),
        (1500, "1500"),
        (17000, "17k"),
        (2_000_000, "2M"),
        (123.4567, "123457m"),
        (float("nan"), "0"),
        (float("inf"), "0"),
        (-4, "0"),
    ],
)
def test_format_quantity_matches_kubernetes_canonical_form(value: float, text: str) -> None:
    assert format_quantity(value) == text


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=b,c==d", {"a": "b", "c": "d"}, True),
        ("a=b,c==d", {"a": "b", "c": "x"}, False),
        ("a!=b", {}, True),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y)", {"a": "y"}, False),
        ("a,!b", {"a": ""}, True),
        ("a,!b", {"a": "", "b": "1"}, False),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "4"}, False),
        ("", {"anything": "1"}, True),
    ],
)
def test_label_selector_semantics(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is matches


@pytest.mark.parametrize("selector", ["a=b=c", "(", "a in (x", "a)", "=b", "a b", "-bad-=x", "n>x"])
def test_label_selector_errors(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


async def test_handler_runs_without_a_socket() -> None:
    provider = DictMetricsProvider(dict(VALUES), NOW)
    response = await get_external_metric(provider, "apps", "s0-redis-jobs", f"{SCALED_OBJECT_LABEL}=worker")
    assert response.status == 200
    assert response.body["items"][0]["value"] == "17"


# --- certificates (ebb.kube.certs) ------------------------------------------------------------------------

SERVICE_NAMES = certs.service_dns_names("ebb-metrics", "ebb-system")


class DictSecretStore:
    """A real load/save pair over a dict, the shape the operator backs with a Kubernetes Secret."""

    def __init__(self) -> None:
        self.data: dict[str, str] | None = None
        self.saves = 0

    async def load(self) -> dict[str, str] | None:
        return None if self.data is None else dict(self.data)

    def save(self, data: dict[str, str]) -> None:
        self.data = dict(data)
        self.saves += 1


async def test_ensure_generates_once_then_reuses() -> None:
    store = DictSecretStore()
    first = await certs.ensure(SERVICE_NAMES, store.load, store.save)
    assert store.saves == 1
    assert set(first.dns_names) == set(SERVICE_NAMES)
    first.check()
    second = await certs.ensure(SERVICE_NAMES, store.load, store.save)
    assert store.saves == 1
    assert second == first


async def test_ensure_renews_near_expiry_with_the_same_ca() -> None:
    store = DictSecretStore()
    first = await certs.ensure(SERVICE_NAMES, store.load, store.save)
    later = first.not_after - dt.timedelta(days=10)
    renewed = await certs.ensure(SERVICE_NAMES, store.load, store.save, now=later)
    assert store.saves == 2
    assert renewed.cert != first.cert
    assert renewed.ca_cert == first.ca_cert  # the APIService caBundle stays valid
    assert renewed.not_after > first.not_after
    renewed.check()


async def test_ensure_reissues_for_new_names_and_replaces_garbage() -> None:
    store = DictSecretStore()
    await certs.ensure(SERVICE_NAMES, store.load, store.save)
    other_names = certs.service_dns_names("ebb-metrics", "other-ns")
    moved = await certs.ensure(other_names, store.load, store.save)
    assert set(moved.dns_names) == set(other_names)
    assert store.data is not None
    store.data["tls.key"] = "not a key"
    fresh = await certs.ensure(other_names, store.load, store.save)
    assert store.saves == 3
    fresh.check()


def test_mismatched_key_is_rejected() -> None:
    one, two = certs.generate(["a"]), certs.generate(["a"])
    data = one.to_secret_data() | {"tls.key": two.key.decode()}
    with pytest.raises(certs.CertificateError, match="does not belong"):
        certs.TLSBundle.from_secret_data(data)
    with pytest.raises(certs.CertificateError, match="signed"):
        certs.TLSBundle.from_secret_data(one.to_secret_data() | {"ca.crt": two.ca_cert.decode()})


def test_load_files_reads_a_mounted_pair(tmp_path: Path) -> None:
    bundle = certs.generate(["localhost"])
    (tmp_path / "tls.crt").write_bytes(bundle.cert)
    (tmp_path / "tls.key").write_bytes(bundle.key)
    (tmp_path / "ca.crt").write_bytes(bundle.ca_cert)
    loaded = certs.load_files(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")
    assert (loaded.cert, loaded.key, loaded.ca_cert, loaded.ca_key) == (bundle.cert, bundle.key, bundle.ca_cert, None)
    loaded.check()
    (tmp_path / "other.key").write_bytes(certs.generate(["localhost"]).key)
    with pytest.raises(certs.CertificateError):
        certs.load_files(tmp_path / "tls.crt", tmp_path / "other.key")
