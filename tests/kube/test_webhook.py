"""The admission webhook over real HTTPS on loopback (certificate from ebb.kube.certs), answering AdmissionReview
bodies as the kube-apiserver sends them; the cluster it reads is kmock through `KubeCluster`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock as km
import pytest
from prometheus_client import CollectorRegistry

from ebb.kube import certs
from ebb.kube.admission import ConflictIndex
from ebb.kube.client import client_for_url
from ebb.kube.webhook import KubeCluster, WebhookMetrics, WebhookServer, load_conflicts

NS = "ns"
SO_PATH = "/validate-keda-sh-v1alpha1-scaledobject"
SO_RES = km.resource("keda.sh/v1alpha1/scaledobjects")
HPA_RES = km.resource("autoscaling/v2/horizontalpodautoscalers")
DEPLOY_RES = km.resource("apps/v1/deployments")
LIMIT_RES = km.resource("v1/limitranges")
UID = "b2c1e6a4-0d51-4a8e-9f7c-3e1f0a2b4c5d"
VAULT_TOKEN = "hvs.CAESIJ-s3cr3t-vault-token-9f8e7d"
CPU = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
REDIS = {"type": "redis", "metadata": {"listName": "jobs", "address": "redis:6379"}}


@pytest.fixture(scope="module")
def tls() -> certs.TLSBundle:
    return certs.generate(["localhost", "127.0.0.1"])


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator) -> km.KubernetesEmulator:
    for res in (SO_RES, HPA_RES, DEPLOY_RES, LIMIT_RES, km.resource("apps/v1/statefulsets")):
        kmock.resources[res] = {}
    kmock.objects[DEPLOY_RES, NS, "web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}},
    }
    return kmock


@pytest.fixture
async def webhook(
    cluster: km.KubernetesEmulator, tls: certs.TLSBundle
) -> AsyncIterator[tuple[WebhookServer, aiohttp.ClientSession, CollectorRegistry]]:
    client = client_for_url(str(cluster.url))
    registry = CollectorRegistry()
    index = ConflictIndex()
    index.replace([], [])
    server = WebhookServer(
        index,
        KubeCluster(client),
        host="127.0.0.1",
        port=0,
        ssl_context=tls.ssl_context(),
        metrics=WebhookMetrics(registry),
    )
    await server.start()
    connector = aiohttp.TCPConnector(ssl=certs.client_ssl_context(tls.ca_cert))
    async with aiohttp.ClientSession(base_url=server.url, connector=connector) as session:
        yield server, session, registry
    await server.stop()
    await client.aclose()


Served = tuple[WebhookServer, aiohttp.ClientSession, CollectorRegistry]


def scaled_object(name: str = "worker", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"scaleTargetRef": {"name": "web"}, "triggers": [REDIS], **spec},
    }


def admission_review(obj: dict[str, Any], *, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    kind = obj["kind"]
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID,
            "kind": {"group": "keda.sh", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "keda.sh", "version": "v1alpha1", "resource": f"{kind.lower()}s"},
            "requestKind": {"group": "keda.sh", "version": "v1alpha1", "kind": kind},
            "requestResource": {"group": "keda.sh", "version": "v1alpha1", "resource": f"{kind.lower()}s"},
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"].get("namespace", ""),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {
                "kind": "CreateOptions",
                "apiVersion": "meta.k8s.io/v1",
                "fieldManager": "kubectl-client-side-apply",
            },
        },
    }


async def post(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(path, data=data, headers={"Content-Type": "application/json"}) as response:
        text = await response.text()
        return response.status, (json.loads(text) if response.content_type == "application/json" else None), text


async def test_valid_scaled_object_is_allowed_against_fake_apiserver(webhook: Served) -> None:
    _, session, _ = webhook
    status, body, _ = await post(session, SO_PATH, admission_review(scaled_object()))
    assert status == 200
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": UID, "allowed": True, "status": {"code": 200}},
    }


async def test_index_entry_the_cluster_no_longer_has_is_not_believed_against_fake_apiserver(webhook: Served) -> None:
    server, session, _ = webhook
    assert server.index is not None
    server.index.upsert_hpa(
        {
            "metadata": {"name": "theirs", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
        }
    )
    # A watch that missed the deletion: the webhook reads the HPA before refusing, finds none, and corrects the index.
    status, body, _ = await post(session, SO_PATH, admission_review(scaled_object()))
    assert status == 200 and body["response"]["allowed"] is True
    assert len(server.index) == 0


async def test_conflict_confirmed_by_the_cluster_is_refused_and_counted_against_fake_apiserver(
    webhook: Served, cluster: km.KubernetesEmulator
) -> None:
    server, session, registry = webhook
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "theirs", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }
    cluster.objects[HPA_RES, NS, "theirs"] = hpa
    assert server.index is not None
    server.index.upsert_hpa(hpa)
    status, body, _ = await post(session, SO_PATH, admission_review(scaled_object()))
    assert status == 200
    assert body["response"] == {
        "uid": UID,
        "allowed": False,
        "status": {
            "code": 403,
            "reason": "Forbidden",
            "message": "ScaledObject ns/worker: spec.scaleTargetRef: the workload 'web' of type 'apps/v1.Deployment' "
            "is already managed by the hpa 'theirs'",
        },
    }
    labels = {"namespace": NS, "action": "create"}
    assert registry.get_sample_value("keda_webhook_scaled_object_validations_total", labels) == 1
    assert (
        registry.get_sample_value(
            "keda_webhook_scaled_object_validation_errors_total", {**labels, "reason": "other-hpa"}
        )
        == 1
    )


async def test_cpu_trigger_is_checked_against_the_deployment_in_the_cluster_against_fake_apiserver(
    webhook: Served, cluster: km.KubernetesEmulator
) -> None:
    _, session, registry = webhook
    so = scaled_object(triggers=[REDIS, CPU])
    status, body, _ = await post(session, SO_PATH, admission_review(so))
    assert status == 200 and body["response"]["allowed"] is False
    message = body["response"]["status"]["message"]
    assert message.startswith("ScaledObject ns/worker: spec.triggers[1]: the scaledobject has a cpu trigger")
    assert "container 'app' of Deployment 'web'" in message
    cluster.objects[LIMIT_RES, NS, "defaults"] = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "defaults", "namespace": NS},
        "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}}]},
    }
    status, body, _ = await post(session, SO_PATH, admission_review(so))
    assert body["response"]["allowed"] is True
    reason = {"namespace": NS, "action": "create", "reason": "missing-requests"}
    assert registry.get_sample_value("keda_webhook_scaled_object_validation_errors_total", reason) == 1


async def test_target_not_created_yet_is_not_read_for_requests_against_fake_apiserver(webhook: Served) -> None:
    _, session, _ = webhook
    so = scaled_object(triggers=[CPU], minReplicaCount=1)
    so["spec"]["scaleTargetRef"]["name"] = "not-yet"
    status, body, _ = await post(session, SO_PATH, admission_review(so))
    assert status == 200 and body["response"]["allowed"] is True


async def test_warnings_are_returned_against_fake_apiserver(webhook: Served) -> None:
    _, session, _ = webhook
    status, body, _ = await post(
        session, SO_PATH, admission_review(scaled_object(minReplicaCount=1, cooldownPeriod=60))
    )
    assert status == 200 and body["response"]["allowed"] is True
    assert body["response"]["warnings"] == [
        "ScaledObject ns/worker: spec.cooldownPeriod: has no effect: it only matters when minReplicaCount is 0 or "
        "idleReplicaCount is set"
    ]


async def test_finalizer_removal_is_let_through_uncounted_against_fake_apiserver(webhook: Served) -> None:
    _, session, registry = webhook
    old = scaled_object(minReplicaCount=9, maxReplicaCount=2)  # invalid, admitted before the webhook existed
    old["metadata"]["finalizers"] = ["finalizer.keda.sh"]
    new = json.loads(json.dumps(old))
    new["metadata"]["finalizers"] = []
    status, body, _ = await post(session, SO_PATH, admission_review(new, operation="UPDATE", old=old))
    assert status == 200 and body["response"]["allowed"] is True
    assert (
        registry.get_sample_value("keda_webhook_scaled_object_validations_total", {"namespace": NS, "action": "update"})
        is None
    )


@pytest.mark.parametrize(
    ("path", "obj", "allowed"),
    [
        (
            "/validate-keda-sh-v1alpha1-scaledjob",
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledJob",
                "metadata": {"name": "batch", "namespace": NS},
                "spec": {
                    "jobTargetRef": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
                    "triggers": [{**REDIS, "useCachedMetrics": True, "type": "cron"}],
                },
            },
            False,
        ),
        (
            "/validate-keda-sh-v1alpha1-triggerauthentication",
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": {"name": "auth", "namespace": NS},
                "spec": {"secretTargetRef": [{"parameter": "password", "name": "redis", "key": "password"}]},
            },
            True,
        ),
        (
            "/validate-keda-sh-v1alpha1-clustertriggerauthentication",
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ClusterTriggerAuthentication",
                "metadata": {"name": "auth"},
                "spec": {"podIdentity": {"provider": "aws", "externalID": "ext"}},
            },
            False,
        ),
        (
            "/validate-eventing-keda-sh-v1alpha1-cloudeventsource",
            {
                "apiVersion": "eventing.keda.sh/v1alpha1",
                "kind": "CloudEventSource",
                "metadata": {"name": "events", "namespace": NS},
                "spec": {
                    "destination": {"http": {"uri": "http://sink.shop/"}},
                    "eventSubscription": {
                        "includedEventTypes": ["keda.scaledobject.ready.v1"],
                        "excludedEventTypes": ["keda.scaledobject.failed.v1"],
                    },
                },
            },
            False,
        ),
        (
            "/validate-eventing-keda-sh-v1alpha1-clustercloudeventsource",
            {
                "apiVersion": "eventing.keda.sh/v1alpha1",
                "kind": "ClusterCloudEventSource",
                "metadata": {"name": "events"},
                "spec": {"destination": {"http": {"uri": "http://sink.shop/"}}},
            },
            True,
        ),
    ],
    ids=[
        "scaledjob",
        "triggerauthentication",
        "clustertriggerauthentication",
        "cloudeventsource",
        "clustercloudeventsource",
    ],
)
async def test_every_kind_has_its_path_against_fake_apiserver(
    webhook: Served, path: str, obj: dict[str, Any], allowed: bool
) -> None:
    _, session, _ = webhook
    status, body, _ = await post(session, path, admission_review(obj))
    assert status == 200 and body["response"]["uid"] == UID
    assert body["response"]["allowed"] is allowed
    if not allowed:
        assert body["response"]["status"]["message"].startswith(f"{obj['kind']} ")


async def test_inline_secret_never_leaves_the_webhook_against_fake_apiserver(
    webhook: Served, caplog: pytest.LogCaptureFixture
) -> None:
    _, session, _ = webhook
    auth = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "vault", "namespace": NS},
        "spec": {
            "hashiCorpVault": {
                "address": "https://vault:8200",
                "authentication": "token",
                "credential": {"token": VAULT_TOKEN},
                "secrets": [{"parameter": "password", "path": "kv/data/redis", "key": "pw", "type": 7}],
            }
        },
    }
    caplog.set_level(logging.DEBUG)
    path = "/validate-keda-sh-v1alpha1-triggerauthentication"
    status, body, text = await post(session, path, admission_review(auth))
    assert status == 200 and body["response"]["allowed"] is False
    assert "spec.hashiCorpVault.secrets[0].type" in body["response"]["status"]["message"]
    # A token of the wrong type: the message says what is wrong, never what was written.
    auth["spec"]["hashiCorpVault"]["secrets"][0]["type"] = "secretV2"
    auth["spec"]["hashiCorpVault"]["credential"]["token"] = 8675309123  # a numeric token, unquoted in YAML
    status, body, more = await post(session, path, admission_review(auth))
    assert body["response"]["status"]["message"] == (
        "TriggerAuthentication ns/vault: spec.hashiCorpVault.credential.token: expected a string, got an integer"
    )
    assert "8675309123" not in more
    auth["spec"]["hashiCorpVault"]["credential"]["token"] = VAULT_TOKEN
    status, body, valid = await post(session, path, admission_review(auth))
    assert body["response"]["allowed"] is True
    for seen in (text, more, valid, caplog.text):
        assert "s3cr3t" not in seen


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"apiVersion": "admission.k8s.io/v1", ', "the request body is not JSON"),
        (b"", "the request body is not JSON"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": UID}},
            "request.operation",
        ),
        ({"apiVersion": "v1", "kind": "Pod"}, "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview"),
        (admission_review({**scaled_object(), "kind": "ScaledJob"}), "this path validates ScaledObject objects"),
    ],
)
async def test_malformed_request_is_a_400_with_a_message_against_fake_apiserver(
    webhook: Served, body: Any, problem: str
) -> None:
    _, session, _ = webhook
    status, answer, text = await post(session, SO_PATH, body)
    assert status == 400
    assert answer["kind"] == "Status" and answer["code"] == 400
    assert answer["message"].startswith("not an AdmissionReview v1 request: ")
    assert problem in answer["message"]
    assert "Traceback" not in text


async def test_other_paths_and_methods_against_fake_apiserver(webhook: Served) -> None:
    _, session, _ = webhook
    status, _, _ = await post(session, "/validate-keda-sh-v1alpha1-scaledthing", admission_review(scaled_object()))
    assert status == 404
    async with session.get(SO_PATH) as response:
        assert response.status == 405


async def test_load_conflicts_reads_the_cluster_against_fake_apiserver(cluster: km.KubernetesEmulator) -> None:
    for namespace in (NS, "other"):
        cluster.objects[SO_RES, namespace, "first"] = {
            **scaled_object("first"),
            "metadata": {"name": "first", "namespace": namespace},
        }
    client = client_for_url(str(cluster.url))
    try:
        index = ConflictIndex()
        await load_conflicts(KubeCluster(client), index, [NS])
        assert index.ready and len(index) == 1
        assert index.covers(NS) and not index.covers("other")
        await load_conflicts(KubeCluster(client), index)  # every namespace
        assert len(index) == 2 and index.covers("other")
        assert await KubeCluster(client).get("apps/v1", "Deployment", NS, "missing") is None
    finally:
        await client.aclose()
