"""The prometheus trigger against a real Prometheus (Debian's `prometheus` package) scraping a test endpoint.

Prometheus itself checks no credentials, so the auth tests put a small auth-checking reverse proxy
(served by the test) in front of it: those tests say `via_auth_proxy` in their names.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests._skips import needs
from tests.scalers._prometheus_server import (
    Certs,
    PrometheusFixture,
    free_port,
    make_certs,
    prometheus_binary,
)


@pytest.fixture(scope="module")
def prom() -> Iterator[PrometheusFixture]:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(needs("Prometheus", "apt-get install prometheus"))
    fixture = PrometheusFixture(binary)
    try:
        fixture.start()
        yield fixture
    finally:
        fixture.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    made = make_certs(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is needed to make test certificates")
    return made


@contextlib.asynccontextmanager
async def scaler(
    address: str,
    auth_params: Mapping[str, str] | None = None,
    index: int = 0,
    **metadata: str,
) -> AsyncIterator[Scaler]:
    meta = {"serverAddress": address, "query": "queue_depth", "threshold": "5", **metadata}
    ctx = TriggerContext(namespace="ns", name="worker", trigger_index=index, trigger_type="prometheus")
    s = build_scaler("prometheus", meta, ctx=ctx, auth_params=auth_params)
    try:
        yield s
    finally:
        await s.close()


async def test_reads_the_single_series_value_and_names_the_metric(prom: PrometheusFixture) -> None:
    async with scaler(prom.url, index=2) as s:
        reading = await s.get_metric_and_activity()
        spec = s.metric_spec()
    assert reading.value == 17
    assert reading.active
    assert (spec.name, spec.target, spec.metric_type) == ("s2-prometheus", 5.0, "AverageValue")


@pytest.mark.parametrize(
    ("activation", "active"),
    [("0", True), ("16.5", True), ("17", False), ("100", False)],
)
async def test_active_only_above_the_activation_threshold(
    prom: PrometheusFixture, activation: str, active: bool
) -> None:
    async with scaler(prom.url, activationThreshold=activation) as s:
        reading = await s.get_metric_and_activity()
    assert reading.value == 17
    assert reading.active is active


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sum(jobs_waiting)", 10.0),
        ('jobs_waiting{queue="b"}', 6.0),
        ("scalar(queue_depth)", 17.0),
        ("queue_depth * 2.5", 42.5),
    ],
)
async def test_single_element_vectors_and_scalars(prom: PrometheusFixture, query: str, expected: float) -> None:
    async with scaler(prom.url, query=query) as s:
        assert (await s.get_metric_and_activity()).value == expected


async def test_several_series_is_an_error(prom: PrometheusFixture) -> None:
    async with scaler(prom.url, query="jobs_waiting") as s:
        with pytest.raises(ScalerError, match="2 series"):
            await s.get_metric_and_activity()


async def test_a_range_vector_is_an_error(prom: PrometheusFixture) -> None:
    async with scaler(prom.url, query="queue_depth[1m]") as s:
        with pytest.raises(ScalerError, match="matrix"):
            await s.get_metric_and_activity()


async def test_invalid_promql_reports_prometheus_reason(prom: PrometheusFixture) -> None:
    async with scaler(prom.url, query="sum(queue_depth") as s:
        with pytest.raises(ScalerError, match="HTTP 400") as err:
            await s.get_metric_and_activity()
    assert "parse error" in str(err.value)
    assert "ScaledObject ns/worker" in str(err.value)
    assert "triggers[0]" in str(err.value)


@pytest.mark.parametrize("query", ["absent_metric_ebb_test", "vector(NaN)", "vector(+Inf)", "-vector(+Inf)"])
async def test_null_results_count_as_zero_when_ignored(prom: PrometheusFixture, query: str) -> None:
    async with scaler(prom.url, query=query) as s:
        reading = await s.get_metric_and_activity()
    assert reading.value == 0
    assert not reading.active


@pytest.mark.parametrize(
    ("query", "reason"),
    [("absent_metric_ebb_test", "empty"), ("vector(NaN)", "NaN"), ("vector(+Inf)", "Inf")],
)
async def test_null_results_are_errors_unless_ignored(prom: PrometheusFixture, query: str, reason: str) -> None:
    async with scaler(prom.url, query=query, ignoreNullValues="false") as s:
        with pytest.raises(ScalerError, match=reason):
            await s.get_metric_and_activity()


async def test_basic_auth_via_auth_proxy(prom: PrometheusFixture) -> None:
    proxy = prom.proxy(auth=("basic", "scaler", "s3cret-pw"))
    auth = {"authModes": "basic", "username": "scaler", "password": "s3cret-pw"}
    async with scaler(proxy.url, auth_params=auth) as s:
        assert (await s.get_metric_and_activity()).value == 17
    assert proxy.seen[-1].headers["Authorization"].startswith("Basic ")


async def test_bearer_auth_via_auth_proxy(prom: PrometheusFixture) -> None:
    proxy = prom.proxy(auth=("bearer", "tok-123"))
    async with scaler(proxy.url, auth_params={"authModes": "bearer", "bearerToken": "tok-123"}) as s:
        assert (await s.get_metric_and_activity()).value == 17
    assert proxy.seen[-1].headers["Authorization"] == "Bearer tok-123"


async def test_auth_modes_may_come_from_trigger_metadata_via_auth_proxy(prom: PrometheusFixture) -> None:
    proxy = prom.proxy(auth=("bearer", "tok-456"))
    async with scaler(proxy.url, auth_params={"bearerToken": "tok-456"}, authModes="bearer") as s:
        assert (await s.get_metric_and_activity()).value == 17


async def test_wrong_password_is_an_error_without_the_password_via_auth_proxy(
    prom: PrometheusFixture,
) -> None:
    proxy = prom.proxy(auth=("basic", "scaler", "right-pw"))
    auth = {"authModes": "basic", "username": "scaler", "password": "wrong-pw-xyz"}
    async with scaler(proxy.url, auth_params=auth) as s:
        with pytest.raises(ScalerError, match="HTTP 401") as err:
            await s.get_metric_and_activity()
    assert "wrong-pw-xyz" not in str(err.value)
    assert "wrong-pw-xyz" not in repr(s.describe())


async def test_no_credentials_without_auth_modes_via_auth_proxy(prom: PrometheusFixture) -> None:
    # Credentials in the TriggerAuthentication are only sent once authModes asks for them, as in KEDA.
    proxy = prom.proxy(auth=("bearer", "tok-789"))
    async with scaler(proxy.url, auth_params={"bearerToken": "tok-789"}) as s:
        with pytest.raises(ScalerError, match="HTTP 401"):
            await s.get_metric_and_activity()
    assert "Authorization" not in proxy.seen[-1].headers


async def test_custom_headers_namespace_and_query_parameters_are_sent(prom: PrometheusFixture) -> None:
    proxy = prom.proxy()
    async with scaler(
        proxy.url + "/",
        customHeaders="X-Scope-OrgID=team-a, X-Extra=1",
        namespace="tenant-ns",
        queryParameters="dedup=true,partial_response=false",
    ) as s:
        assert (await s.get_metric_and_activity()).value == 17
    seen = proxy.seen[-1]
    assert seen.headers["X-Scope-OrgID"] == "team-a"
    assert seen.headers["X-Extra"] == "1"
    params = dict(seen.query)
    assert params["query"] == "queue_depth"
    assert params["namespace"] == "tenant-ns"
    assert params["dedup"] == "true"
    assert params["partial_response"] == "false"
    assert params["time"].endswith("Z")


async def test_custom_auth_header_via_auth_proxy(prom: PrometheusFixture) -> None:
    proxy = prom.proxy()
    auth = {"authModes": "custom", "customAuthHeader": "X-Api-Key", "customAuthValue": "k-1"}
    async with scaler(proxy.url, auth_params=auth) as s:
        assert (await s.get_metric_and_activity()).value == 17
    assert proxy.seen[-1].headers["X-Api-Key"] == "k-1"


async def test_https_with_the_servers_ca_via_auth_proxy(prom: PrometheusFixture, certs: Certs) -> None:
    proxy = prom.proxy(tls=certs.server_context())
    async with scaler(proxy.url, auth_params={"ca": certs.ca.decode()}) as s:
        assert (await s.get_metric_and_activity()).value == 17
    async with scaler(proxy.url) as s:
        with pytest.raises(ScalerError, match="certificate"):
            await s.get_metric_and_activity()


async def test_unsafe_ssl_accepts_any_certificate_via_auth_proxy(prom: PrometheusFixture, certs: Certs) -> None:
    proxy = prom.proxy(tls=certs.server_context("other"))
    async with scaler(proxy.url, unsafeSsl="true") as s:
        assert (await s.get_metric_and_activity()).value == 17


async def test_client_certificate_via_auth_proxy(prom: PrometheusFixture, certs: Certs) -> None:
    proxy = prom.proxy(tls=certs.server_context(client_ca=True))
    auth = {
        "authModes": "tls",
        "ca": certs.ca.decode(),
        "cert": certs.client_cert.decode(),
        "key": certs.client_key.decode(),
    }
    async with scaler(proxy.url, auth_params=auth) as s:
        assert (await s.get_metric_and_activity()).value == 17
    async with scaler(proxy.url, auth_params={"ca": certs.ca.decode()}) as s:
        with pytest.raises(ScalerError) as err:
            await s.get_metric_and_activity()
    assert "PRIVATE KEY" not in str(err.value)


def test_invalid_pem_is_a_spec_error() -> None:
    meta = {"serverAddress": "https://x", "query": "q", "threshold": "1"}
    with pytest.raises(SpecError, match="PEM") as err:
        build_scaler("prometheus", meta, auth_params={"authModes": "tls", "cert": "nope", "key": "secret-key"})
    assert "secret-key" not in str(err.value)


async def test_server_down_is_an_error() -> None:
    async with scaler(f"http://127.0.0.1:{free_port()}") as s:
        with pytest.raises(ScalerError, match="ScaledObject ns/worker"):
            await s.get_metric_and_activity()


async def test_a_server_that_is_not_prometheus_is_an_error(prom: PrometheusFixture) -> None:
    # The scraped endpoint answers 200 with the text format on every path, not a query API response.
    async with scaler(prom.metrics_url) as s:
        with pytest.raises(ScalerError, match="did not answer with a Prometheus query API response"):
            await s.get_metric_and_activity()


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [("1500", 1.5), ("500ms", 0.5), ("1m30s", 90.0), ("2s", 2.0), (None, 3.0)],
)
def test_timeout_accepts_milliseconds_and_durations(timeout: str | None, seconds: float) -> None:
    meta = {"serverAddress": "http://x:9090", "query": "q", "threshold": "1"}
    if timeout is not None:
        meta["timeout"] = timeout
    assert build_scaler("prometheus", meta).timeout == seconds


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({"query": "q", "threshold": "1"}, {}, "serverAddress"),
        ({"serverAddress": "http://x:9090", "threshold": "1"}, {}, "query"),
        ({"serverAddress": "http://x:9090", "query": "q"}, {}, "threshold"),
        ({"serverAddress": "http://x:9090", "query": "q", "threshold": "many"}, {}, "threshold"),
        ({"serverAddress": "x:9090", "query": "q", "threshold": "1"}, {}, "serverAddress"),
        ({"serverAddress": "http://x", "query": "q", "threshold": "1", "timeout": "5x"}, {}, "timeout"),
        (
            {"serverAddress": "http://x", "query": "q", "threshold": "1", "customHeaders": "a"},
            {},
            "customHeaders",
        ),
        (
            {"serverAddress": "http://x", "query": "q", "threshold": "1", "authModes": "magic"},
            {},
            "authModes",
        ),
        (
            {"serverAddress": "http://x", "query": "q", "threshold": "1", "authModes": "basic"},
            {},
            "authentication",
        ),
        (
            {"serverAddress": "http://x", "query": "q", "threshold": "1"},
            {"authModes": "basic,bearer", "username": "u", "bearerToken": "t"},
            "authModes",
        ),
        ({"serverAddress": "http://x", "query": "q", "threshold": "1", "password": "pw"}, {}, "password"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, str], auth: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        build_scaler("prometheus", metadata, auth_params=auth)
    assert field in err.value.field
    assert "pw" not in str(err.value)
