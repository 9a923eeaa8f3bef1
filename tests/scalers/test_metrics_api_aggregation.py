"""metrics-api aggregateFromKubeServiceEndpoints, as KEDA's metrics_api_scaler.go.

The endpoint list is built from EndpointSlices exactly as KEDA builds it (table tests); the aggregation is run
against real HTTP servers on loopback addresses (127.0.0.2, .3, ... all answer on this machine), with the slices
served by a fake Kubernetes API server (kmock) through the operator's own lister.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import kmock as km
import pytest
from aiohttp import web
from yarl import URL

from ebb.errors import ScalerError, SpecError
from ebb.kube.client import client_for_url
from ebb.kube.endpoints import endpoint_slice_lister
from ebb.scalers import TriggerContext, build_scaler
from ebb.scalers.metrics_api import aggregate, endpoint_urls

SLICES_RES = km.resource("discovery.k8s.io/v1/endpointslices")
NS = "shop"


def endpoint_slice(
    name: str, service: str, endpoints: list[dict[str, Any]], ports: list[int], namespace: str = NS
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": f"p{port}", "port": port, "protocol": "TCP"} for port in ports],
    }


def ready(*addresses: str, is_ready: bool | None = True) -> dict[str, Any]:
    conditions = {} if is_ready is None else {"ready": is_ready}
    return {"addresses": list(addresses), "conditions": conditions}


# --- which endpoints, which URLs (KEDA's getEndpointsUrlsFromServiceURL) ---------------------------------


def urls(url: str, slices: list[dict[str, Any]], service: str = "api") -> list[str]:
    return [str(u) for u in endpoint_urls(URL(url), slices, service)]


def test_every_ready_address_with_the_url_port_and_path() -> None:
    slices = [endpoint_slice("api-1", "api", [ready("10.0.0.1"), ready("10.0.0.2")], [8080])]
    assert urls("http://api.shop.svc.cluster.local:8080/metrics?x=1", slices) == [
        "http://10.0.0.1:8080/metrics",  # KEDA keeps the path, not the query string
        "http://10.0.0.2:8080/metrics",
    ]


def test_not_ready_endpoints_are_left_out_and_unset_ready_counts_as_ready() -> None:
    slices = [
        endpoint_slice(
            "api-1",
            "api",
            [ready("10.0.0.1", is_ready=False), ready("10.0.0.2", is_ready=None), ready("10.0.0.3")],
            [80],
        )
    ]
    assert urls("http://api.shop/m", slices) == ["http://10.0.0.2/m", "http://10.0.0.3/m"]


def test_an_address_in_two_slices_is_queried_once() -> None:
    slices = [
        endpoint_slice("api-1", "api", [ready("10.0.0.1", "10.0.0.2")], [9000]),
        endpoint_slice("api-2", "api", [ready("10.0.0.2"), ready("10.0.0.3")], [9000]),
    ]
    assert urls("http://api.shop:9000/m", slices) == [
        "http://10.0.0.1:9000/m",
        "http://10.0.0.2:9000/m",
        "http://10.0.0.3:9000/m",
    ]


def test_a_port_the_slice_does_not_list_falls_back_to_the_scheme_default() -> None:
    """KEDA compares the url's port (80/443 when unset) with the slice's port numbers; no match, no port."""
    slices = [endpoint_slice("api-1", "api", [ready("10.0.0.1")], [8443])]
    assert urls("https://api.shop/m", slices) == ["https://10.0.0.1/m"]
    assert urls("https://api.shop:8443/m", slices) == ["https://10.0.0.1:8443/m"]
    assert urls("http://api.shop/m", [endpoint_slice("a", "api", [ready("10.0.0.1")], [80])]) == ["http://10.0.0.1/m"]


def test_slices_of_other_services_are_ignored() -> None:
    slices = [
        endpoint_slice("api-1", "api", [ready("10.0.0.1")], [80]),
        endpoint_slice("other-1", "other", [ready("10.0.0.99")], [80]),
    ]
    assert urls("http://api.shop/m", slices) == ["http://10.0.0.1/m"]


def test_ipv6_addresses_are_bracketed() -> None:
    slices = [endpoint_slice("api-1", "api", [ready("fd00::1")], [8080])]
    assert urls("http://api.shop:8080/m", slices) == ["http://[fd00::1]:8080/m"]


@pytest.mark.parametrize(("kind", "expected"), [("sum", 60.0), ("average", 20.0), ("max", 30.0), ("min", 10.0)])
def test_aggregation_types(kind: Any, expected: float) -> None:
    assert aggregate([10.0, 30.0, 20.0], kind) == expected


# --- the metadata ------------------------------------------------------------------------------------


def test_aggregation_type_defaults_to_average() -> None:
    async def no_slices(namespace: str, service: str) -> list[dict[str, Any]]:
        return []

    scaler = build_scaler(
        "metrics-api",
        {
            "url": "http://api.shop/m",
            "valueLocation": "v",
            "targetValue": "5",
            "aggregateFromKubeServiceEndpoints": "true",
        },
        ctx=TriggerContext(endpoint_slices=no_slices),
    )
    assert scaler.describe()["aggregationType"] == "average"


def test_locally_the_error_says_what_to_use_instead() -> None:
    with pytest.raises(SpecError) as err:
        build_scaler(
            "metrics-api",
            {
                "url": "http://api.shop/m",
                "valueLocation": "v",
                "targetValue": "5",
                "aggregateFromKubeServiceEndpoints": "1",
            },
            ctx=TriggerContext(namespace="shop", name="worker", trigger_index=2),
        )
    assert err.value.field == "spec.triggers[2].metadata.aggregateFromKubeServiceEndpoints"
    assert "ebb operator" in err.value.message
    assert "point url at one endpoint" in err.value.message
    assert "scalingModifiers.formula" in err.value.message


# --- against real endpoints, slices from a fake API server ---------------------------------------------


class Endpoint:
    """One pod's metrics endpoint on its own loopback address."""

    def __init__(self, address: str, value: Any, status: int = 200) -> None:
        self.address, self.value, self.status = address, value, status
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(str(request.rel_url))
        return web.json_response({"queue": {"depth": self.value}}, status=self.status)


def shared_port() -> int:
    """A port free on 127.0.0.1; the other loopback addresses are almost surely free on it too."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def pods() -> AsyncIterator[tuple[int, list[Endpoint]]]:
    port = shared_port()
    endpoints = [
        Endpoint("127.0.0.2", 10),
        Endpoint("127.0.0.3", 30),
        Endpoint("127.0.0.4", "20"),  # a quantity string, as KEDA reads it
        Endpoint("127.0.0.5", 1000),  # not ready: must never be asked
        Endpoint("127.0.0.6", 7, status=500),  # failing: left out of the aggregate
        Endpoint("127.0.0.9", 5000),  # another Service's pod
        Endpoint("127.0.0.10", 9000),  # this Service's name, another namespace
    ]
    runners: list[web.AppRunner] = []
    for endpoint in endpoints:
        app = web.Application()
        app.router.add_get("/metrics", endpoint.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, endpoint.address, port).start()
        runners.append(runner)
    yield port, endpoints
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]]) -> km.KubernetesEmulator:
    port, _ = pods
    kmock.resources[SLICES_RES] = {}
    kmock.objects[SLICES_RES, NS, "api-abc"] = endpoint_slice(
        "api-abc", "api", [ready("127.0.0.2"), ready("127.0.0.5", is_ready=False)], [port]
    )
    kmock.objects[SLICES_RES, NS, "api-def"] = endpoint_slice(
        "api-def", "api", [ready("127.0.0.3", "127.0.0.2"), ready("127.0.0.4", is_ready=None)], [port]
    )
    kmock.objects[SLICES_RES, NS, "other-xyz"] = endpoint_slice("other-xyz", "other", [ready("127.0.0.9")], [port])
    kmock.objects[SLICES_RES, "elsewhere", "api-ghi"] = endpoint_slice(
        "api-ghi", "api", [ready("127.0.0.10")], [port], namespace="elsewhere"
    )
    return kmock


async def read_aggregate(cluster: km.KubernetesEmulator, url: str, **extra: str) -> float:
    client = client_for_url(str(cluster.url))
    scaler = build_scaler(
        "metrics-api",
        {
            "url": url,
            "valueLocation": "queue.depth",
            "targetValue": "5",
            "aggregateFromKubeServiceEndpoints": "true",
            **extra,
        },
        ctx=TriggerContext(namespace=NS, name="worker", endpoint_slices=endpoint_slice_lister(client)),
    )
    try:
        return (await scaler.get_metric_and_activity()).value
    finally:
        await scaler.close()
        await client.aclose()


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [({}, 20.0), ({"aggregationType": "average"}, 20.0), ({"aggregationType": "sum"}, 60.0),
     ({"aggregationType": "max"}, 30.0), ({"aggregationType": "min"}, 10.0)],
)  # fmt: skip
async def test_aggregates_every_ready_endpoint_against_fake_apiserver(
    cluster: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]], aggregation: dict[str, str], expected: float
) -> None:
    port, endpoints = pods
    # The slices of another Service, and of this one in another namespace, are served too and must not count.
    value = await read_aggregate(cluster, f"http://api.{NS}.svc.cluster.local:{port}/metrics", **aggregation)
    assert value == expected
    asked = {e.address: len(e.requests) for e in endpoints}
    assert asked == {
        "127.0.0.2": 1,
        "127.0.0.3": 1,
        "127.0.0.4": 1,
        "127.0.0.5": 0,
        "127.0.0.6": 0,
        "127.0.0.9": 0,
        "127.0.0.10": 0,
    }
    assert endpoints[0].requests == ["/metrics"]


async def test_a_failing_endpoint_is_left_out_against_fake_apiserver(
    cluster: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]]
) -> None:
    port, endpoints = pods
    cluster.objects[SLICES_RES, NS, "api-failing"] = endpoint_slice("api-failing", "api", [ready("127.0.0.6")], [port])
    value = await read_aggregate(cluster, f"http://api.{NS}:{port}/metrics", aggregationType="average")
    assert value == 20.0  # (10 + 30 + 20) / 3: the failed endpoint neither adds nor counts
    assert len(endpoints[4].requests) == 1


async def test_all_endpoints_failing_is_an_error_against_fake_apiserver(
    cluster: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]]
) -> None:
    port, _ = pods
    for key in list(cluster.objects):
        if key[0] == SLICES_RES:
            del cluster.objects[key]
    cluster.objects[SLICES_RES, NS, "api-failing"] = endpoint_slice("api-failing", "api", [ready("127.0.0.6")], [port])
    with pytest.raises(ScalerError) as err:
        await read_aggregate(cluster, f"http://api.{NS}:{port}/metrics")
    assert "could not get any metric from the 1 endpoints of Service shop/api" in err.value.message
    assert "HTTP 500" in err.value.message


async def test_a_service_without_ready_endpoints_is_an_error_against_fake_apiserver(
    cluster: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]]
) -> None:
    port, _ = pods
    with pytest.raises(ScalerError) as err:
        await read_aggregate(cluster, f"http://nothing.{NS}:{port}/metrics")
    assert "Service shop/nothing has no ready endpoints" in err.value.message


async def test_the_operator_serves_the_aggregate_against_fake_apiserver(
    cluster: km.KubernetesEmulator, pods: tuple[int, list[Endpoint]]
) -> None:
    """The ScaledObject controller gives its metrics-api scalers the cluster's EndpointSlices."""
    from ebb.kube.operator import OperatorOptions, ScaledObjectController

    port, _ = pods
    deployments = km.resource("apps/v1/deployments")
    for res in ("keda.sh/v1alpha1/scaledobjects", "autoscaling/v2/horizontalpodautoscalers", "v1/events"):
        cluster.resources[km.resource(res)] = {}
    cluster.resources[deployments] = {}
    cluster.objects[deployments, NS, "web"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app"}]}}},
        "status": {"replicas": 1},
    }
    body = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "worker", "namespace": NS, "uid": "uid-agg"},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "triggers": [
                {
                    "type": "metrics-api",
                    "metadata": {
                        "url": f"http://api.{NS}.svc:{port}/metrics",
                        "valueLocation": "queue.depth",
                        "targetValue": "5",
                        "aggregateFromKubeServiceEndpoints": "true",
                        "aggregationType": "sum",
                    },
                }
            ],
        },
    }
    cluster.objects[km.resource("keda.sh/v1alpha1/scaledobjects"), NS, "worker"] = body
    client = client_for_url(str(cluster.url))
    controller = ScaledObjectController(client, OperatorOptions())
    controller.autostart = False
    try:
        await controller.reconcile(body)
        assert (NS, "worker") in controller.runtimes, "the ScaledObject was not reconciled"
        metric = controller.runtimes[NS, "worker"].specs[0].name
        values = await controller.get_metric(NS, metric, {"scaledobject.keda.sh/name": "worker"})
        assert [v.value for v in values] == [60.0]
    finally:
        await controller.close()
        await client.aclose()
