"""Delegated authentication and authorization of the external-metrics API, over real HTTPS on loopback.

Certificates come from ebb.kube.certs (a front-proxy CA, a client CA, an unknown CA); the kube-apiserver is
kmock, holding kube-system/extension-apiserver-authentication and answering TokenReviews and
SubjectAccessReviews the way the tests program it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kmock as km
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from ebb.kube import certs
from ebb.kube.authn import (
    AuthConfigError,
    AuthenticationConfig,
    DelegatedAuthenticator,
    DelegatedAuthorizer,
    RequestAttributes,
    delegated_auth,
    load_authentication_config,
    request_attributes,
)
from ebb.kube.client import AsyncClient, client_for_url
from ebb.kube.metrics_api import SCALED_OBJECT_LABEL, MetricsAPIServer, make_app
from ebb.kube.metrics_provider import ExternalMetricValue, MetricDescriptor, MetricNotFound

CM_RES = km.resource("v1/configmaps")
CM_NAME = "extension-apiserver-authentication"
TOKEN_REVIEWS = "post /apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "post /apis/authorization.k8s.io/v1/subjectaccessreviews"
BASE = "/apis/external.metrics.k8s.io/v1beta1"
METRIC = "s0-redis-jobs"
METRIC_PATH = f"{BASE}/namespaces/team-a/{METRIC}"
SELECTOR = {"labelSelector": f"{SCALED_OBJECT_LABEL}=worker"}
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
GOOD_TOKEN = "eyJhbGciOi.good-token-7f3a9c"
BAD_TOKEN = "eyJhbGciOi.stolen-token-0b1d2e"
NOW = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp()


class OneMetric:
    """A MetricsProvider serving one value: team-a/worker's METRIC."""

    def list_metrics(self) -> list[MetricDescriptor]:
        return [MetricDescriptor("team-a", METRIC, "worker")]

    async def get_metric(
        self, namespace: str, metric_name: str, selector: Mapping[str, str]
    ) -> list[ExternalMetricValue]:
        if (namespace, metric_name, selector.get(SCALED_OBJECT_LABEL)) != ("team-a", METRIC, "worker"):
            raise MetricNotFound(metric_name)
        return [ExternalMetricValue(metric_name, 7, NOW, {})]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- certificates --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serving() -> certs.TLSBundle:
    return certs.generate(["localhost", "127.0.0.1"])


@pytest.fixture(scope="module")
def front_proxy_ca() -> certs.TLSBundle:
    # Distinct CA names: OpenSSL finds a certificate's issuer by name.
    return certs.generate(["front-proxy-ca"], common_name="front-proxy")


@pytest.fixture(scope="module")
def client_ca() -> certs.TLSBundle:
    return certs.generate(["kubernetes-ca"], common_name="kubernetes")


@pytest.fixture(scope="module")
def front_proxy_client(front_proxy_ca: certs.TLSBundle) -> certs.TLSBundle:
    return certs.generate(["front-proxy-client"], ca=front_proxy_ca, client_auth=True)


def user_certificate(ca: certs.TLSBundle, common_name: str, organizations: list[str]) -> certs.TLSBundle:
    """A client certificate with O= entries (groups), which certs.generate does not write."""
    assert ca.ca_key is not None
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert)
    ca_key = serialization.load_pem_private_key(ca.ca_key, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    moment = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - dt.timedelta(minutes=5))
        .not_valid_after(moment + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certs.TLSBundle(cert.public_bytes(serialization.Encoding.PEM), key_pem, ca.ca_cert)


def config_map_data(front_proxy_ca: certs.TLSBundle, client_ca: certs.TLSBundle | None) -> dict[str, str]:
    """What the kube-apiserver writes (kubeadm's defaults)."""
    data = {
        "requestheader-client-ca-file": front_proxy_ca.ca_cert.decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }
    if client_ca is not None:
        data["client-ca-file"] = client_ca.ca_cert.decode()
    return data


def put_config_map(cluster: km.KubernetesEmulator, data: dict[str, str]) -> None:
    cluster.objects[CM_RES, "kube-system", CM_NAME] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CM_NAME, "namespace": "kube-system"},
        "data": data,
    }


# --- the fake kube-apiserver ----------------------------------------------------------------------------

REVIEW_RESOURCES = (
    km.resource("authentication.k8s.io/v1/tokenreviews"),
    km.resource("authorization.k8s.io/v1/subjectaccessreviews"),
)


def answer(cluster: km.KubernetesEmulator, respond: Any) -> Any:
    """A reaction for review POSTs. A real API server never stores a review; kmock does (under no name), and
    would answer the next one 409, so its copy is dropped."""

    def react(request: km.Request) -> Any:
        for resource in REVIEW_RESOURCES:
            with contextlib.suppress(KeyError):
                del cluster.objects[resource, None, None]
        return respond(request)

    return react


def token_review(request: km.Request) -> dict[str, Any]:
    token = request.data["spec"]["token"]
    if token != GOOD_TOKEN:
        return {**request.data, "status": {"authenticated": False, "error": "invalid bearer token"}}
    user = {"username": "alice", "uid": "u-1", "groups": ["team-a"], "extra": {"scopes": ["metrics"]}}
    return {**request.data, "status": {"authenticated": True, "user": user}}


def access_review(request: km.Request) -> dict[str, Any]:
    """Everybody may read, except bob."""
    spec = request.data["spec"]
    if spec["user"] == "bob":
        return {**request.data, "status": {"allowed": False, "reason": "no RBAC policy matched"}}
    return {**request.data, "status": {"allowed": True, "reason": "RBAC: allowed"}}


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator, front_proxy_ca: certs.TLSBundle, client_ca: certs.TLSBundle) -> Any:
    kmock.resources[CM_RES] = {}
    put_config_map(kmock, config_map_data(front_proxy_ca, client_ca))
    kmock[TOKEN_REVIEWS] << answer(kmock, token_review)
    kmock[ACCESS_REVIEWS] << answer(kmock, access_review)
    return kmock


@pytest.fixture
async def client(cluster: km.KubernetesEmulator) -> AsyncIterator[AsyncClient]:
    api = client_for_url(str(cluster.url))
    yield api
    await api.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(client: AsyncClient, serving: certs.TLSBundle, clock: Clock) -> AsyncIterator[MetricsAPIServer]:
    config = await load_authentication_config(client)
    authenticator = DelegatedAuthenticator(client, config, clock=clock, refresh_interval=0)
    authorizer = DelegatedAuthorizer(client, clock=clock)
    api = MetricsAPIServer(
        OneMetric(), "127.0.0.1", 0, serving.ssl_context(), authenticator=authenticator, authorizer=authorizer
    )
    async with api:
        yield api


@contextlib.asynccontextmanager
async def session_as(
    serving: certs.TLSBundle, identity: certs.TLSBundle | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """A client trusting the server, presenting `identity`'s certificate when given."""
    context = certs.client_ssl_context(serving.ca_cert)
    if identity is not None:
        with pem_files(identity) as (cert_path, key_path):
            context.load_cert_chain(cert_path, key_path)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


@contextlib.contextmanager
def pem_files(bundle: certs.TLSBundle) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
        cert.write_bytes(bundle.cert)
        key.write_bytes(bundle.key)
        yield str(cert), str(key)


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    headers: Any = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    async with session.get(url, headers=headers, params=params) as response:
        text = await response.text()
        if response.content_type == "application/json":
            return response.status, json.loads(text)
        return response.status, text


def specs(cluster: km.KubernetesEmulator) -> list[dict[str, Any]]:
    return [request.data["spec"] for request in cluster[ACCESS_REVIEWS]]


# --- authentication -------------------------------------------------------------------------------------


async def test_front_proxy_certificate_vouches_for_the_headers_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    headers = CIMultiDict(
        [
            ("X-Remote-User", HPA_USER),
            ("X-Remote-Group", "system:serviceaccounts"),
            ("X-Remote-Group", "system:serviceaccounts:kube-system"),
            ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-name", "kcm-0"),
        ]
    )
    async with session_as(serving, front_proxy_client) as session:
        status, body = await fetch(session, server.url + METRIC_PATH, headers, SELECTOR)
    assert status == 200, body
    assert body["items"][0]["value"] == "7"
    assert specs(cluster) == [
        {
            "user": HPA_USER,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["kcm-0"]},
            # RequestInfo of a GET on a collection: verb list, the metric name as resource (KEDA's RBAC: list).
            "resourceAttributes": {
                "namespace": "team-a",
                "verb": "list",
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "resource": METRIC,
            },
        }
    ]
    assert len(cluster[TOKEN_REVIEWS]) == 0


async def test_front_proxy_certificate_with_another_cn_is_401_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_ca: Any
) -> None:
    impostor = certs.generate(["kubectl-proxy"], ca=front_proxy_ca, client_auth=True)
    async with session_as(serving, impostor) as session:
        status, body = await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": "system:admin"}, SELECTOR)
    assert status == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert len(cluster[ACCESS_REVIEWS]) == 0


async def test_front_proxy_certificate_without_a_user_header_is_401_against_fake_apiserver(
    server: MetricsAPIServer, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    async with session_as(serving, front_proxy_client) as session:
        status, _ = await fetch(session, server.url + METRIC_PATH, None, SELECTOR)
    assert status == 401


async def test_user_certificate_is_cn_and_organizations_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, client_ca: certs.TLSBundle
) -> None:
    carol = user_certificate(client_ca, "carol", ["ops", "team-a"])
    async with session_as(serving, carol) as session:
        # X-Remote-* headers mean nothing without the front proxy's certificate.
        status, body = await fetch(session, server.url + "/apis", {"X-Remote-User": "system:admin"})
    assert status == 200, body
    [spec] = specs(cluster)
    assert spec["user"] == "carol"
    assert spec["groups"] == ["ops", "team-a", "system:authenticated"]
    [credential] = spec["extra"]["authentication.kubernetes.io/credential-id"]
    assert credential.startswith("X509SHA256=")
    # Discovery is a non-resource request.
    assert spec["nonResourceAttributes"] == {"path": "/apis", "verb": "get"}


async def test_certificate_from_an_unknown_ca_is_refused_against_fake_apiserver(
    server: MetricsAPIServer, serving: certs.TLSBundle
) -> None:
    # Python's TLS layer checks client certificates in the handshake: an unknown CA ends the connection.
    mallory = certs.generate(["front-proxy-client"], client_auth=True, common_name="mallory")
    async with session_as(serving, mallory) as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": HPA_USER}, SELECTOR)


async def test_bearer_token_is_reviewed_once_then_cached_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, clock: Clock
) -> None:
    auth = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    async with session_as(serving) as session:
        first = await fetch(session, server.url + METRIC_PATH, auth, SELECTOR)
        second = await fetch(session, server.url + METRIC_PATH, auth, SELECTOR)
        assert first[0] == second[0] == 200
        assert len(cluster[TOKEN_REVIEWS]) == 1
        assert len(cluster[ACCESS_REVIEWS]) == 1  # the allow cache too
        assert cluster[TOKEN_REVIEWS][0].data["spec"] == {"token": GOOD_TOKEN}
        [spec] = specs(cluster)
        assert (spec["user"], spec["uid"], spec["groups"]) == ("alice", "u-1", ["team-a", "system:authenticated"])
        assert spec["extra"] == {"scopes": ["metrics"]}
        clock.now += 10.5  # past both 10 s TTLs
        status, _ = await fetch(session, server.url + METRIC_PATH, auth, SELECTOR)
    assert status == 200
    assert (len(cluster[TOKEN_REVIEWS]), len(cluster[ACCESS_REVIEWS])) == (2, 2)


async def test_rejected_token_is_401_and_cached_too_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle
) -> None:
    async with session_as(serving) as session:
        for _ in range(2):
            status, body = await fetch(session, server.url + METRIC_PATH, {"Authorization": f"Bearer {BAD_TOKEN}"})
            assert (status, body["reason"]) == (401, "Unauthorized")
        assert len(cluster[TOKEN_REVIEWS]) == 1
        # Not a bearer token at all: nothing to review.
        status, _ = await fetch(session, server.url + METRIC_PATH, {"Authorization": "Basic YWxpY2U6cHc="})
    assert status == 401
    assert len(cluster[TOKEN_REVIEWS]) == 1
    assert len(cluster[ACCESS_REVIEWS]) == 0


async def test_no_credentials_is_401_but_health_is_open_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle
) -> None:
    async with session_as(serving) as session:
        for path in ("/apis", METRIC_PATH, "/openapi/v2", "/no/such/path"):
            status, body = await fetch(session, server.url + path)
            assert (status, body["code"]) == (401, 401), path
        for path in ("/healthz", "/livez", "/readyz"):
            assert await fetch(session, server.url + path) == (200, "ok")
    assert len(cluster[TOKEN_REVIEWS]) == len(cluster[ACCESS_REVIEWS]) == 0


async def test_token_review_failure_is_401_and_not_cached_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle
) -> None:
    down = {"kind": "Status", "code": 503, "message": "etcd is down"}
    outage = cluster[TOKEN_REVIEWS][:2] ** 10 << 503 << answer(cluster, lambda _: down)
    async with session_as(serving) as session:
        auth = {"Authorization": f"Bearer {GOOD_TOKEN}"}
        assert (await fetch(session, server.url + METRIC_PATH, auth, SELECTOR))[0] == 401
        assert (await fetch(session, server.url + METRIC_PATH, auth, SELECTOR))[0] == 401
        assert len(outage) == 2
        # Once the API answers again, the token is reviewed again (failures are not cached).
        assert (await fetch(session, server.url + METRIC_PATH, auth, SELECTOR))[0] == 200
    assert len(cluster[TOKEN_REVIEWS]) == 3


# --- authorization --------------------------------------------------------------------------------------


async def test_denied_access_review_is_403_with_a_status_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    async with session_as(serving, front_proxy_client) as session:
        status, body = await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": "bob"}, SELECTOR)
        assert status == 403
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f'{METRIC}.external.metrics.k8s.io is forbidden: User "bob" cannot list resource "{METRIC}" '
            'in API group "external.metrics.k8s.io" in the namespace "team-a": no RBAC policy matched',
            "reason": "Forbidden",
            "details": {"group": "external.metrics.k8s.io", "kind": METRIC},
            "code": 403,
        }
        status, body = await fetch(session, server.url + "/apis", {"X-Remote-User": "bob"})
        assert (status, body["message"]) == (
            403,
            'forbidden: User "bob" cannot get path "/apis": no RBAC policy matched',
        )
        # The deny cache: asking again does not ask the API server again.
        status, _ = await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": "bob"}, SELECTOR)
    assert status == 403
    assert len(cluster[ACCESS_REVIEWS]) == 2


async def test_access_review_failure_is_500_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    refusal = {
        "kind": "Status",
        "code": 403,
        "message": "subjectaccessreviews.authorization.k8s.io is forbidden: User ebb cannot create",
    }
    cluster[ACCESS_REVIEWS] ** 10 << 403 << answer(cluster, lambda _: refusal)
    async with session_as(serving, front_proxy_client) as session:
        status, body = await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": HPA_USER}, SELECTOR)
    assert (status, body["reason"]) == (500, "InternalError")
    assert "SubjectAccessReview failed: HTTP 403" in body["message"]


async def test_system_masters_skip_the_access_review_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    headers = {"X-Remote-User": "kubernetes-admin", "X-Remote-Group": "system:masters"}
    async with session_as(serving, front_proxy_client) as session:
        status, _ = await fetch(session, server.url + METRIC_PATH, headers, SELECTOR)
    assert status == 200
    assert len(cluster[ACCESS_REVIEWS]) == 0


# --- secrets stay out of logs ---------------------------------------------------------------------------


async def test_tokens_and_certificates_never_reach_the_log_against_fake_apiserver(
    server: MetricsAPIServer,
    cluster: km.KubernetesEmulator,
    serving: certs.TLSBundle,
    front_proxy_client: certs.TLSBundle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    failure = {"kind": "Status", "code": 500, "message": "internal error"}
    cluster[TOKEN_REVIEWS][:1] ** 10 << 500 << answer(cluster, lambda _: failure)
    bodies = []
    async with session_as(serving) as session:
        for token in (GOOD_TOKEN, GOOD_TOKEN, BAD_TOKEN, ""):
            status, body = await fetch(session, server.url + METRIC_PATH, {"Authorization": f"Bearer {token}"})
            bodies.append(json.dumps(body))
        assert status == 401
    async with session_as(serving, front_proxy_client) as session:
        status, body = await fetch(session, server.url + METRIC_PATH, {"X-Remote-User": "bob"}, SELECTOR)
        bodies.append(json.dumps(body))
    assert status == 403
    assert "TokenReview failed: HTTP 500" in caplog.text  # the outage is reported...
    key_material = front_proxy_client.cert.decode().splitlines()[2]
    for secret in (GOOD_TOKEN, BAD_TOKEN, "good-token", "stolen-token", key_material):
        assert secret not in caplog.text  # ...without the credentials
        assert not any(secret in body for body in bodies)


# --- configuration --------------------------------------------------------------------------------------


async def test_config_map_is_parsed_against_fake_apiserver(
    client: AsyncClient, front_proxy_ca: certs.TLSBundle, client_ca: certs.TLSBundle
) -> None:
    config = await load_authentication_config(client)
    assert config is not None
    assert config.requestheader_cas == (x509.load_pem_x509_certificate(front_proxy_ca.ca_cert),)
    assert config.client_cas == (x509.load_pem_x509_certificate(client_ca.ca_cert),)
    assert config.allowed_names == ("front-proxy-client",)
    assert (config.username_headers, config.group_headers, config.extra_header_prefixes) == (
        ("X-Remote-User",),
        ("X-Remote-Group",),
        ("X-Remote-Extra-",),
    )
    assert config.uid_headers == ()  # absent: that header is not read


async def test_missing_config_map_leaves_bearer_tokens_against_fake_apiserver(
    cluster: km.KubernetesEmulator, client: AsyncClient, serving: certs.TLSBundle, client_ca: certs.TLSBundle
) -> None:
    del cluster.objects[CM_RES, "kube-system", CM_NAME]
    assert await load_authentication_config(client) is None
    authenticator, authorizer = await delegated_auth(client, refresh_interval=0)
    api = MetricsAPIServer(
        OneMetric(), "127.0.0.1", 0, serving.ssl_context(), authenticator=authenticator, authorizer=authorizer
    )
    async with api:
        async with session_as(serving) as session:
            auth = {"Authorization": f"Bearer {GOOD_TOKEN}"}
            assert (await fetch(session, api.url + METRIC_PATH, auth, SELECTOR))[0] == 200
        # No CA to check a client certificate against: the server does not even ask for one.
        async with session_as(serving, user_certificate(client_ca, "carol", [])) as session:
            assert (await fetch(session, api.url + "/apis"))[0] == 401


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("client-ca-file", "not a certificate", "client-ca-file is not a PEM certificate bundle"),
        ("requestheader-allowed-names", "front-proxy-client", "requestheader-allowed-names must be a JSON list"),
        ("requestheader-group-headers", '{"a": 1}', "requestheader-group-headers must be a JSON list"),
        ("requestheader-username-headers", '[" "]', "requestheader-username-headers lists an empty header"),
    ],
)
async def test_config_map_errors_name_the_key_against_fake_apiserver(
    cluster: km.KubernetesEmulator,
    client: AsyncClient,
    front_proxy_ca: certs.TLSBundle,
    key: str,
    value: str,
    message: str,
) -> None:
    put_config_map(cluster, config_map_data(front_proxy_ca, None) | {key: value})
    with pytest.raises(AuthConfigError, match=f"ConfigMap kube-system/extension-apiserver-authentication: {message}"):
        await load_authentication_config(client)


async def test_unreadable_config_map_fails_with_the_rbac_hint_against_fake_apiserver(
    cluster: km.KubernetesEmulator, client: AsyncClient
) -> None:
    cluster["get", CM_RES] << 403 << {"kind": "Status", "code": 403, "message": "configmaps is forbidden"}
    with pytest.raises(AuthConfigError, match="configmaps is forbidden; bind the Role kube-system/extension-apiser"):
        await delegated_auth(client)


async def test_refresh_picks_up_a_rotated_front_proxy_ca_against_fake_apiserver(
    server: MetricsAPIServer,
    cluster: km.KubernetesEmulator,
    serving: certs.TLSBundle,
    front_proxy_client: certs.TLSBundle,
    client_ca: certs.TLSBundle,
) -> None:
    new_ca = certs.generate(["front-proxy-ca-2"], common_name="front-proxy-2")
    new_client = certs.generate(["front-proxy-client"], ca=new_ca, client_auth=True)
    headers = {"X-Remote-User": HPA_USER}
    async with session_as(serving, new_client) as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            await fetch(session, server.url + METRIC_PATH, headers, SELECTOR)
    put_config_map(cluster, config_map_data(new_ca, client_ca))
    assert server.authenticator is not None
    await server.authenticator.refresh()
    async with session_as(serving, new_client) as session:
        assert (await fetch(session, server.url + METRIC_PATH, headers, SELECTOR))[0] == 200
    # The old CA still passes the handshake (OpenSSL cannot forget a CA) but no longer authenticates anyone.
    async with session_as(serving, front_proxy_client) as session:
        assert (await fetch(session, server.url + METRIC_PATH, headers, SELECTOR))[0] == 401


async def test_refresh_keeps_the_configuration_when_the_read_fails_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.authenticator is not None
    before = server.authenticator.config
    cluster["get", CM_RES] << 500 << {"kind": "Status", "code": 500, "message": "etcd is down"}
    await server.authenticator.refresh()
    assert server.authenticator.config is before
    assert "etcd is down; keeping the configuration loaded before" in caplog.text


async def test_expired_certificate_is_401_against_fake_apiserver(
    client: AsyncClient, serving: certs.TLSBundle, front_proxy_client: certs.TLSBundle
) -> None:
    # OpenSSL refuses expired certificates itself; the authenticator's own check uses its clock.
    config = await load_authentication_config(client)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    authenticator = DelegatedAuthenticator(client, config, refresh_interval=0, wall_clock=lambda: later)
    api = MetricsAPIServer(OneMetric(), "127.0.0.1", 0, serving.ssl_context(), authenticator=authenticator)
    async with api, session_as(serving, front_proxy_client) as session:
        status, _ = await fetch(session, api.url + METRIC_PATH, {"X-Remote-User": HPA_USER}, SELECTOR)
    assert status == 401


# --- plumbing -------------------------------------------------------------------------------------------


def test_authorizer_needs_an_authenticator_against_fake_apiserver(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="an authorizer needs an authenticator"):
        make_app(OneMetric(), authorizer=DelegatedAuthorizer(client))


def test_configuration_parses_without_a_cluster() -> None:
    assert AuthenticationConfig.from_config_map_data({}) == AuthenticationConfig()


E = "external.metrics.k8s.io"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/apis", {}, RequestAttributes("get", "/apis")),
        ("GET", f"/apis/{E}", {}, RequestAttributes("get", f"/apis/{E}")),
        ("GET", f"/apis/{E}/v1beta1", {}, RequestAttributes("get", f"/apis/{E}/v1beta1")),
        ("GET", "/openapi/v2", {}, RequestAttributes("get", "/openapi/v2")),
        ("POST", "/healthz", {}, RequestAttributes("post", "/healthz")),
        (
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/m",
            {"labelSelector": "a=b"},
            RequestAttributes("list", f"/apis/{E}/v1beta1/namespaces/ns/m", True, E, "v1beta1", "ns", "m"),
        ),
        (
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/m",
            {"watch": "true"},
            RequestAttributes("watch", f"/apis/{E}/v1beta1/namespaces/ns/m", True, E, "v1beta1", "ns", "m"),
        ),
        (
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/m",
            {"watch": "0"},
            RequestAttributes("list", f"/apis/{E}/v1beta1/namespaces/ns/m", True, E, "v1beta1", "ns", "m"),
        ),
        (
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/m/x",
            {},
            RequestAttributes("get", f"/apis/{E}/v1beta1/namespaces/ns/m/x", True, E, "v1beta1", "ns", "m", "", "x"),
        ),
        (
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/m",
            {"fieldSelector": "metadata.name=x"},
            RequestAttributes("list", f"/apis/{E}/v1beta1/namespaces/ns/m", True, E, "v1beta1", "ns", "m", "", "x"),
        ),
        (
            # "status" after a namespace is the Namespace's subresource, not a resource.
            "GET",
            f"/apis/{E}/v1beta1/namespaces/ns/status",
            {},
            RequestAttributes(
                "get", f"/apis/{E}/v1beta1/namespaces/ns/status", True, E, "v1beta1", "ns", "namespaces", "status", "ns"
            ),
        ),
        (
            "DELETE",
            f"/apis/{E}/v1beta1/namespaces/ns/m",
            {},
            RequestAttributes("deletecollection", f"/apis/{E}/v1beta1/namespaces/ns/m", True, E, "v1beta1", "ns", "m"),
        ),
        (
            "GET",
            f"/apis/{E}/v1beta1/watch/namespaces/ns/m",
            {},
            RequestAttributes("watch", f"/apis/{E}/v1beta1/watch/namespaces/ns/m", True, E, "v1beta1", "ns", "m"),
        ),
        ("GET", "/api/v1/pods", {}, RequestAttributes("list", "/api/v1/pods", True, "", "v1", "", "pods")),
    ],
)
def test_request_attributes_follow_the_apiservers_request_info(
    method: str, path: str, query: dict[str, str], expected: RequestAttributes
) -> None:
    assert request_attributes(method, path, query) == expected


async def test_concurrent_requests_share_one_access_review_against_fake_apiserver(
    server: MetricsAPIServer, cluster: km.KubernetesEmulator, serving: certs.TLSBundle, front_proxy_client: Any
) -> None:
    async with session_as(serving, front_proxy_client) as session:
        answers = await asyncio.gather(
            *(fetch(session, server.url + METRIC_PATH, {"X-Remote-User": HPA_USER}, SELECTOR) for _ in range(8))
        )
    assert [status for status, _ in answers] == [200] * 8
    assert len(cluster[ACCESS_REVIEWS]) == 1
