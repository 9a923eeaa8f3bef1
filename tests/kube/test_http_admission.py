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
        return None  # a ScaledObject's workload: not in the cluster (its requests are not checked then)

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        if self.failing:
            raise ClusterUnavailable("cannot list HTTPScaledObject in any namespace: connection refused")
        if kind in ("ScaledObject", "HorizontalPodAutoscaler", "LimitRange"):
            return [o for o in self.objects if o.get("kind") == kind and o["metadata"]["namespace"] == namespace]
        assert (api_version, kind) in (
            ("http.keda.sh/v1alpha1", "HTTPScaledObject"),
            ("http.keda.sh/v1beta1", "InterceptorRoute"),
        )
        return [
            o
            for o in self.objects
            if o.get("kind", "HTTPScaledObject") == kind and namespace in ("*", o["metadata"]["namespace"])
        ]


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


# --- InterceptorRoutes (http.keda.sh/v1beta1), and one scaler per workload ---------------------------------


def ir(name: str, namespace: str = "shop", rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1beta1",
        "kind": "InterceptorRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": {"service": name, "port": 80},
            "rules": rules or [],
            "scalingMetric": {"concurrency": {"targetValue": 10}},
        },
    }


def ir_admission(obj: dict[str, Any]) -> dict[str, Any]:
    body = admission(obj)
    body["request"]["kind"] = {"group": "http.keda.sh", "version": "v1beta1", "kind": "InterceptorRoute"}
    return body


def scaled_object(name: str, target: str, namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"scaleTargetRef": {"name": target}, "triggers": [{"type": "cron", "metadata": CRON}]},
    }


CRON = {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": "2"}


async def test_an_interceptor_route_claiming_an_http_scaled_objects_route_is_refused_naming_the_rule_field() -> None:
    existing = hso("api", hosts=["shop.test"], pathPrefixes=["/api"])
    rules = [{"hosts": ["other.test"]}, {"hosts": ["shop.test"], "paths": [{"value": "/web"}, {"value": "/api/"}]}]
    outcome = await review(
        ir_admission(ir("api-v2", rules=rules)), kind="InterceptorRoute", cluster=HTTPObjects(existing)
    )
    assert not outcome.allowed and outcome.reason == "conflicting-route"
    assert outcome.message == (
        "InterceptorRoute shop/api-v2: spec.rules[1].paths[1].value: host 'shop.test' and path prefix '/api' is "
        "already routed by HTTPScaledObject shop/api (spec.pathPrefixes[0]); two routes (HTTPScaledObjects or "
        "InterceptorRoutes) cannot claim the same host and path prefix (give one another host, prefix or headers)"
    )


async def test_an_http_scaled_object_claiming_an_interceptor_routes_route_is_refused() -> None:
    existing = ir("web", "team-a", rules=[{"hosts": ["x.test"], "headers": [{"name": "X-V", "value": "1"}]}])
    mine = hso("b", "team-b", hosts=["x.test"], headers=[{"name": "x-v", "value": "1"}])
    outcome = await check(mine, existing)
    assert not outcome.allowed
    assert "already routed by InterceptorRoute team-a/web (spec.rules[0].hosts[0])" in outcome.message
    assert outcome.message.startswith("HTTPScaledObject team-b/b: spec.hosts[0]:")
    # Other headers: another route.
    assert (await check(hso("b", "team-b", hosts=["x.test"]), existing)).allowed


async def test_an_interceptor_route_and_an_http_scaled_object_of_the_same_name_may_overlap_the_migration_path() -> None:
    existing = hso("web", hosts=["x.test"])
    outcome = await review(
        ir_admission(ir("web", rules=[{"hosts": ["x.test"]}])), kind="InterceptorRoute", cluster=HTTPObjects(existing)
    )
    assert outcome.allowed, outcome.message
    assert (await check(hso("web", hosts=["x.test"]), ir("web", rules=[{"hosts": ["x.test"]}]))).allowed


async def test_two_interceptor_routes_on_one_route_are_refused() -> None:
    existing = ir("a", rules=[{"paths": [{"value": "/x"}]}])
    outcome = await review(
        ir_admission(ir("b", rules=[{"paths": [{"value": "/x/"}]}])),
        kind="InterceptorRoute",
        cluster=HTTPObjects(existing),
    )
    assert not outcome.allowed and "every host and path prefix '/x'" in outcome.message
    assert "InterceptorRoute shop/a (spec.rules[0].paths[0].value)" in outcome.message


async def test_a_scaled_object_on_a_workload_an_http_scaled_object_scales_is_refused_naming_the_field() -> None:
    cluster = HTTPObjects(hso("web", hosts=["x.test"]))
    body = admission(scaled_object("mine", "web"))
    body["request"]["kind"] = {"group": "keda.sh", "version": "v1alpha1", "kind": "ScaledObject"}
    outcome = await review(body, kind="ScaledObject", cluster=cluster)
    assert not outcome.allowed and outcome.reason == "other-scaled-object"
    assert outcome.message.startswith(
        "ScaledObject shop/mine: spec.scaleTargetRef: the workload Deployment 'web' is already scaled by "
        "HTTPScaledObject shop/web"
    )
    # Routing only (the add-on's annotation): the user's ScaledObject scales it.
    routing = hso("web", hosts=["x.test"])
    routing["metadata"]["annotations"] = {"httpscaledobject.keda.sh/skip-scaledobject-creation": "true"}
    assert (await review(body, kind="ScaledObject", cluster=HTTPObjects(routing))).allowed


async def test_an_http_scaled_object_on_a_workload_a_scaled_object_scales_is_refused_naming_the_field() -> None:
    outcome = await check(hso("web", hosts=["x.test"]), scaled_object("mine", "web"))
    assert not outcome.allowed and outcome.reason == "other-scaled-object"
    assert outcome.message.startswith(
        "HTTPScaledObject shop/web: spec.scaleTargetRef: the workload Deployment 'web' is already scaled by "
        "ScaledObject shop/mine"
    )
    assert (await check(hso("web", hosts=["x.test"]), scaled_object("mine", "other"))).allowed


async def test_the_addons_scaled_object_of_the_same_name_is_refused_and_told_to_be_deleted() -> None:
    """The add-on's operator creates a ScaledObject of the HTTPScaledObject's name on its target; ebb scales the
    HTTPScaledObject itself, so that ScaledObject (left behind by a migration) would be a second loop: refused
    either way round, with the fix for this case."""
    outcome = await check(hso("web", hosts=["x.test"]), scaled_object("web", "web"))
    assert not outcome.allowed and outcome.reason == "other-scaled-object"
    assert "is the one the KEDA HTTP add-on's operator creates for it" in outcome.message
    assert "delete that ScaledObject" in outcome.message
    body = admission(scaled_object("web", "web"))
    body["request"]["kind"] = {"group": "keda.sh", "version": "v1alpha1", "kind": "ScaledObject"}
    refused = await review(body, kind="ScaledObject", cluster=HTTPObjects(hso("web", hosts=["x.test"])))
    assert not refused.allowed
    assert refused.message.startswith(
        "ScaledObject shop/web: spec.scaleTargetRef: the workload Deployment 'web' is already scaled by "
        "HTTPScaledObject shop/web; one workload has one scaler (a ScaledObject of the HTTPScaledObject's own name"
    )


def created(body: dict[str, Any], at: str) -> dict[str, Any]:
    body["metadata"]["creationTimestamp"] = at
    return body


async def test_an_update_is_refused_only_to_the_object_that_arrived_second_as_the_operator_decides() -> None:
    """A pair made while the webhook was off: the operator scales the first (creationTimestamp, then name); an
    edit of it is let through, an edit of the second is refused (a create is refused whatever the times)."""
    older = created(hso("web", hosts=["x.test"]), "2026-01-01T00:00:00Z")
    newer = created(scaled_object("mine", "web"), "2026-01-01T00:05:00Z")

    async def review_so(operation: str) -> Any:
        body = admission(newer, operation)
        body["request"]["kind"] = {"group": "keda.sh", "version": "v1alpha1", "kind": "ScaledObject"}
        body["request"]["oldObject"] = {**newer, "spec": {**newer["spec"], "minReplicaCount": 3}}
        return await review(body, kind="ScaledObject", cluster=HTTPObjects(older))

    refused = await review_so("UPDATE")
    assert not refused.allowed and refused.reason == "other-scaled-object"
    assert refused.message.startswith(
        "ScaledObject shop/mine: spec.scaleTargetRef: the workload Deployment 'web' is already scaled by "
        "HTTPScaledObject shop/web, created before ScaledObject shop/mine (which therefore does not scale it); "
    )
    update = admission(older, "UPDATE")
    update["request"]["oldObject"] = {**older, "spec": {**older["spec"], "hosts": ["y.test"]}}
    assert (await review(update, kind="HTTPScaledObject", cluster=HTTPObjects(newer))).allowed
    # A create of the older-looking object is refused all the same: it is the one arriving now.
    assert not (await check(older, newer)).allowed
    # Same second: the name decides ("mine" before "web").
    same = created(scaled_object("mine", "web"), "2026-01-01T00:00:00Z")
    update["request"]["object"] = older
    outcome = await review(update, kind="HTTPScaledObject", cluster=HTTPObjects(same))
    assert not outcome.allowed and "created before HTTPScaledObject shop/web" in outcome.message


def on(body: dict[str, Any], workload: str) -> dict[str, Any]:
    body["spec"]["scaleTargetRef"] = {"name": workload, "service": body["metadata"]["name"], "port": 80}
    return body


SKIP = {"httpscaledobject.keda.sh/skip-scaledobject-creation": "true"}


async def test_a_second_http_scaled_object_on_one_workload_is_refused_unless_one_only_routes() -> None:
    """Other hosts, so no route conflict: the workload conflict (ebb check and ebb run refuse it too)."""
    first = on(hso("web", hosts=["a.test"]), "web")
    second = on(hso("web-v2", hosts=["b.test"]), "web")
    outcome = await check(second, first)
    assert not outcome.allowed and outcome.reason == "other-scaled-object"
    assert outcome.message == (
        "HTTPScaledObject shop/web-v2: spec.scaleTargetRef: the workload Deployment 'web' is already scaled by "
        "HTTPScaledObject shop/web; one workload has one scaler (delete one of them, or give one the annotation "
        'httpscaledobject.keda.sh/skip-scaledobject-creation: "true" to route only)'
    )
    routing = copy.deepcopy(second)
    routing["metadata"]["annotations"] = dict(SKIP)
    assert (await check(routing, first)).allowed
    routed = copy.deepcopy(first)
    routed["metadata"]["annotations"] = dict(SKIP)
    assert (await check(second, routed)).allowed
    assert (await check(on(hso("api", hosts=["b.test"]), "api"), first)).allowed
    going = copy.deepcopy(first)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert (await check(second, going)).allowed
    assert (await check(on(hso("web", "other", hosts=["c.test"]), "web"), first)).allowed  # another namespace


async def test_an_update_of_the_first_of_two_http_scaled_objects_is_allowed_of_the_second_refused() -> None:
    older = created(on(hso("web", hosts=["a.test"]), "web"), "2026-01-01T00:00:00Z")
    newer = created(on(hso("api", hosts=["b.test"]), "web"), "2026-01-01T00:05:00Z")

    async def update(body: dict[str, Any], other: dict[str, Any]) -> Any:
        request = admission(body, "UPDATE")
        request["request"]["oldObject"] = {**body, "spec": {**body["spec"], "hosts": ["z.test"]}}
        return await review(request, kind="HTTPScaledObject", cluster=HTTPObjects(other))

    assert (await update(older, newer)).allowed
    refused = await update(newer, older)
    assert not refused.allowed
    assert "already scaled by HTTPScaledObject shop/web, created before HTTPScaledObject shop/api" in refused.message
    assert not (await check(older, newer)).allowed  # a create: whatever the times
