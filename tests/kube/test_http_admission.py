"""The admission webhook's route check for HTTPScaledObjects: one host + path prefix (+ headers) per object."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from ebb.kube.admission import Cluster, ClusterUnavailable, review
from ebb.kube.webhook import WebhookServer


class HTTPObjects(Cluster):
    """HTTPScaledObjects in every namespace, listed as the webhook lists them (namespace "*")."""

    def __init__(self, *objects: Mapping[str, Any], failing: bool = False) -> None:
        self.objects = list(objects)
        self.failing = failing

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        raise AssertionError("the route check lists; it reads no single object")

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        if self.failing:
            raise ClusterUnavailable("cannot list HTTPScaledObject in any namespace: connection refused")
        assert (api_version, kind, namespace) == ("http.keda.sh/v1alpha1", "HTTPScaledObject", "*")
        return self.objects


def hso(name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"scaleTargetRef": {"name": name, "service": name, "port": 80}, **spec},
    }


def admission(obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "http.keda.sh", "version": "v1alpha1", "kind": "HTTPScaledObject"},
            "namespace": obj["metadata"]["namespace"],
            "operation": operation,
            "object": obj,
        },
    }


async def check(obj: dict[str, Any], *others: dict[str, Any]) -> Any:
    return await review(admission(obj), kind="HTTPScaledObject", cluster=HTTPObjects(*others))


async def test_same_host_and_prefix_in_another_object_is_refused_naming_both_and_the_field() -> None:
    existing = hso("api", hosts=["shop.example.com"], pathPrefixes=["/", "/api"])
    outcome = await check(
        hso("api-v2", hosts=["other.example.com", "Shop.Example.com:8080"], pathPrefixes=["/api/"]), existing
    )
    assert not outcome.allowed
    assert outcome.reason == "conflicting-route"
    assert outcome.message == (
        "HTTPScaledObject shop/api-v2: spec.pathPrefixes[0]: host 'shop.example.com' and path prefix '/api' is "
        "already routed by HTTPScaledObject shop/api (spec.pathPrefixes[1]); two HTTPScaledObjects cannot claim "
        "the same host and path prefix (give one another host, prefix or headers)"
    )
    assert outcome.response()["response"]["status"]["code"] == 403


async def test_objects_in_other_namespaces_conflict_too_hosts_are_cluster_wide() -> None:
    outcome = await check(hso("b", "team-b", hosts=["x.test"]), hso("a", "team-a", hosts=["x.test"]))
    assert not outcome.allowed and "HTTPScaledObject team-a/a" in outcome.message
    assert "spec.hosts[0]" in outcome.message


async def test_no_hosts_means_every_host_and_conflicts_with_another_catch_all() -> None:
    outcome = await check(hso("b", pathPrefixes=["/b"]), hso("a", pathPrefixes=["/b"]))
    assert not outcome.allowed and "every host and path prefix '/b'" in outcome.message


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(hso("a", hosts=["x.test"], pathPrefixes=["/a"]), id="another-prefix"),
        pytest.param(hso("a", hosts=["y.test"], pathPrefixes=["/b"]), id="another-host"),
        pytest.param(hso("a", hosts=["x.test"], pathPrefixes=["/bb"]), id="segments-not-characters"),
        pytest.param(
            hso("a", hosts=["x.test"], pathPrefixes=["/b"], headers=[{"name": "X-Version", "value": "2"}]),
            id="same-route-other-headers",
        ),
        pytest.param(hso("b", hosts=["x.test"], pathPrefixes=["/b"]), id="itself-on-update"),
        pytest.param({**hso("a"), "spec": {"hosts": ["x.test"]}}, id="an-object-that-does-not-parse-routes-nothing"),
    ],
)
async def test_routes_that_do_not_conflict(other: dict[str, Any]) -> None:
    outcome = await check(hso("b", hosts=["x.test"], pathPrefixes=["/b"]), other)
    assert outcome.allowed, outcome.message


async def test_same_headers_in_any_case_conflict() -> None:
    mine = hso("b", hosts=["x.test"], headers=[{"name": "X-Version", "value": "2"}])
    theirs = hso("a", hosts=["x.test"], headers=[{"name": "x-version", "value": "2"}])
    outcome = await check(mine, theirs)
    assert not outcome.allowed and "with headers x-version=2" in outcome.message


async def test_an_object_being_deleted_no_longer_claims_its_routes() -> None:
    going = copy.deepcopy(hso("a", hosts=["x.test"]))
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert (await check(hso("b", hosts=["x.test"]), going)).allowed


async def test_an_unreadable_cluster_lets_the_object_through_with_a_warning() -> None:
    outcome = await review(
        admission(hso("b", hosts=["x.test"])), kind="HTTPScaledObject", cluster=HTTPObjects(failing=True)
    )
    assert outcome.allowed
    assert outcome.warnings == (
        "HTTPScaledObject shop/b: routes not checked against the cluster: cannot list HTTPScaledObject in any "
        "namespace: connection refused",
    )


async def test_field_errors_are_refused_before_the_route_check() -> None:
    bad = hso("b", hosts=["x.test"], replicas={"min": 3, "max": 1})
    outcome = await check(bad)
    assert not outcome.allowed and "spec.replicas.min" in outcome.message


async def test_the_webhook_serves_the_http_keda_sh_path() -> None:
    cluster = HTTPObjects(hso("a", hosts=["x.test"]))
    server = WebhookServer(None, cluster, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{server.url}/validate-http-keda-sh-v1alpha1-httpscaledobject",
                json=admission(hso("b", hosts=["x.test"])),
            ) as response,
        ):
            body = await response.json()
    finally:
        await server.stop()
    assert response.status == 200
    assert body["response"]["allowed"] is False
    assert "already routed by HTTPScaledObject shop/a" in body["response"]["status"]["message"]
