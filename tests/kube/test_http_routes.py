"""InterceptorRoutes (http.keda.sh/v1beta1) on Kubernetes, against the fake API server (kmock).

Real: `ebb interceptor` (KubeInterceptor watching the fake server), the app (a `python -m http.server` process on
127.0.0.2 standing in for a pod) and every HTTP hop; the test writes the EndpointSlices the endpoints controller
would write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lightkube.types import PatchType

from ebb.errors import SpecError
from ebb.kube.auth import PrefetchedStore
from ebb.kube.client import EVENT, SCALED_OBJECT, AsyncClient, client_for_url, namespaced, to_dict
from ebb.kube.http_feed import InterceptorFeed, InterceptorFeedScaler, interceptor_scalers
from ebb.kube.http_interceptor import (
    HTTP_SCALED_OBJECT,
    INTERCEPTOR_ROUTE,
    InterceptorOptions,
    KubeRoutes,
)
from ebb.kube.http_routes import InterceptorRouteController
from ebb.runtime.build import build_scalers
from ebb.spec.models import ScaledObject

from . import test_http_kube
from ._fakecluster import Cluster, eventually
from .test_http_kube import (
    APP_HOST,
    NS,
    add_deployment,
    add_service,
    get,
    http_scaled_object,
    interceptor,
    replicas,
    set_endpoints,
    start_operator,
)

pytestmark = pytest.mark.kmock(cls=Cluster)

# The fixtures of test_http_kube: the fake API server's client, and the app process standing in for a pod.
client = test_http_kube.client
app = test_http_kube.app

CONFIG_MAP = namespaced("", "v1", "ConfigMap", "configmaps")


def interceptor_route(name: str, host: str, service: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1beta1",
        "kind": "InterceptorRoute",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "target": {"service": service, "port": 80},
            "rules": [{"hosts": [host]}],
            "scalingMetric": {"concurrency": {"targetValue": 10}},
            **spec,
        },
    }


async def add_config_map(api: AsyncClient, name: str, data: dict[str, str], labelled: bool = True) -> None:
    labels = {"http.keda.sh/response-body": "true"} if labelled else {}
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, "labels": labels}}
    await api.create(CONFIG_MAP({**body, "data": data}))


async def test_the_interceptor_routes_an_interceptor_route_and_follows_its_edits_against_fake_apiserver(
    client: AsyncClient, app: int
) -> None:
    await add_service(client, "web")
    await add_config_map(client, "warming", {"index.html": "<p>warming up</p>"})
    await add_config_map(client, "unlabelled", {"index.html": "never served"}, labelled=False)
    route = interceptor_route(
        "web",
        "web.test",
        "web",
        coldStart={"placeholder": {"response": {"bodyFromConfigMap": {"name": "warming"}}}},
        staticRoutes=[
            {
                "rules": [{"paths": [{"value": "/robots.txt"}]}],
                "response": {"body": "User-agent: *\n"},
                "responseMode": "Always",
            },
            {
                "rules": [{"paths": [{"value": "/hidden"}]}],
                "response": {"bodyFromConfigMap": {"name": "unlabelled", "key": "index.html"}},
                "responseMode": "Always",
            },
        ],
    )
    async with interceptor(client) as proxy:
        await client.create(INTERCEPTOR_ROUTE(route))
        await eventually(lambda: proxy.routes.routes, "the interceptor to route web.test")
        # No ready endpoint: the placeholder answers from the labelled ConfigMap (503 by default).
        assert await get(proxy.port, "web.test", "/") == (503, "<p>warming up</p>")
        assert await get(proxy.port, "web.test", "/robots.txt") == (200, "User-agent: *\n")
        # A ConfigMap without the label is never read (the add-on's rule): a 500 that says why.
        status, text = await get(proxy.port, "web.test", "/hidden")
        assert status == 500 and "http.keda.sh/response-body" in text and "never served" not in text
        assert proxy.routes.snapshot()["ns/web"]["concurrency"] == 1, "a placeholder answer still asks for a replica"

        await set_endpoints(client, "web", "http", app, [APP_HOST])
        await eventually(lambda: get(proxy.port, "web.test"), "the pod to serve", ok=lambda r: r[0] == 200)
        assert await get(proxy.port, "web.test") == (200, "hello from the pod\n")

        # An HTTPScaledObject of the same name is shadowed by the route (the add-on's migration path).
        await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "old.test", "web")))
        await asyncio.sleep(0.3)
        assert (await get(proxy.port, "old.test"))[0] == 404
        assert proxy.routes.kinds[(NS, "web")] == "InterceptorRoute"

        # An edit applies without a restart.
        patch = {"spec": {"rules": [{"hosts": ["new.test"]}]}}
        await client.patch(INTERCEPTOR_ROUTE, "web", patch, namespace=NS, patch_type=PatchType.MERGE)
        await eventually(lambda: get(proxy.port, "new.test"), "new.test routed", ok=lambda r: r[0] == 200)
        await eventually(lambda: get(proxy.port, "web.test"), "web.test no longer routed", ok=lambda r: r[0] == 404)

        # Deleting the route: the HTTPScaledObject it shadowed routes again.
        await client.delete(INTERCEPTOR_ROUTE, "web", namespace=NS)
        await eventually(lambda: get(proxy.port, "old.test"), "old.test routed by the HSO", ok=lambda r: r[0] == 200)
        assert proxy.routes.kinds[(NS, "web")] == "HTTPScaledObject"


async def test_a_held_request_on_an_interceptor_route_reaches_the_operator_feed_at_once_against_fake_apiserver(
    client: AsyncClient,
) -> None:
    await add_service(client, "web")
    await client.create(INTERCEPTOR_ROUTE(interceptor_route("web", "web.test", "web")))
    async with interceptor(client) as proxy:
        await eventually(lambda: proxy.routes.routes, "the interceptor to route web.test")
        feed = InterceptorFeed(None, NS)
        woken = asyncio.Event()
        feed.listen("ns/web", woken.set)
        feed.follow(f"http://127.0.0.1:{proxy.admin.port}")
        try:
            await eventually(lambda: feed.connected, "the feed to connect")
            held = asyncio.create_task(get(proxy.port, "web.test"))
            await asyncio.wait_for(woken.wait(), 5)
            assert feed.concurrency("ns/web") == 1
            held.cancel()
            await asyncio.gather(held, return_exceptions=True)
        finally:
            await feed.stop()


def _routes_with(n: int) -> KubeRoutes:
    routes = KubeRoutes(client_for_url("http://127.0.0.1:9"), InterceptorOptions())  # informers not started
    for i in range(n):
        name = f"web-{i}"
        routes.informers["HTTPScaledObjects"][0].objects[(NS, name)] = {
            **http_scaled_object(name, f"{name}.test", name),
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
        }
        routes.informers["Services"][0].objects[(NS, name)] = {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
    routes.rebuild()
    return routes


def _slice(service: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{service}-x", "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def test_an_endpoint_slice_event_updates_only_its_services_pools() -> None:
    routes = _routes_with(3)
    table = routes.interceptor.table
    pools = {key: route.pool for key, route in routes.routes.items()}
    for i in range(3):
        routes.slice_event((NS, f"web-{i}-x"), _slice(f"web-{i}", [f"10.0.0.{i}"]))
    other = pools[(NS, "web-0")]
    assert other is not None
    before = dict(other.replicas)  # type: ignore[attr-defined]

    routes.slice_event((NS, "web-1-x"), _slice("web-1", ["10.0.1.1", "10.0.1.2"]))
    pool = routes.routes[(NS, "web-1")].pool
    assert pool is not None and pool.ready_count() == 2
    assert routes.interceptor.table is table, "no rebuild of the routing table"
    assert {key: route.pool for key, route in routes.routes.items()} == pools
    assert other.replicas == before  # type: ignore[attr-defined]

    routes.slice_event((NS, "web-1-x"), None)  # deleted
    assert pool.ready_count() == 0
    # A slice moving to another Service (relabelled) leaves the first one's pool.
    routes.slice_event((NS, "web-2-x"), _slice("web-0", ["10.0.9.9"]))
    assert routes.routes[(NS, "web-2")].pool.ready_count() == 0  # type: ignore[union-attr]
    assert other.ready_count() == 2


def test_a_relisting_reindexes_every_slice() -> None:
    routes = _routes_with(2)
    held = routes.informers["EndpointSlices"][0].objects
    held[(NS, "web-0-x")] = _slice("web-0", ["10.0.0.1"])
    held[(NS, "web-1-x")] = _slice("web-1", ["10.0.0.2", "10.0.0.3"])
    routes._slices_listed()
    counts = [routes.routes[(NS, f"web-{i}")].pool.ready_count() for i in range(2)]  # type: ignore[union-attr]
    assert counts == [1, 2]


async def ready(api: AsyncClient, name: str) -> dict[str, Any]:
    body = to_dict(await api.get(INTERCEPTOR_ROUTE, name, namespace=NS))
    return next((c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), {})


async def test_the_route_controller_sets_ready_and_events_against_fake_apiserver(client: AsyncClient) -> None:
    controller = InterceptorRouteController(client)
    await client.create(INTERCEPTOR_ROUTE(interceptor_route("web", "web.test", "web")))
    body = to_dict(await client.get(INTERCEPTOR_ROUTE, "web", namespace=NS))
    assert await controller.reconcile(body) is False, "retried until the Service exists"
    condition = await ready(client, "web")
    assert (condition["status"], condition["reason"]) == ("False", "ServiceNotFound")
    assert "spec.target.service: Service ns/web does not exist" in condition["message"]
    events = [to_dict(e) async for e in client.list(EVENT, namespace=NS)]
    assert [e["reason"] for e in events if e["involvedObject"]["name"] == "web"] == ["ServiceNotFound"]

    await add_service(client, "web", port=8080)  # not port 80
    body = to_dict(await client.get(INTERCEPTOR_ROUTE, "web", namespace=NS))
    assert await controller.reconcile(body) is False
    condition = await ready(client, "web")
    assert condition["reason"] == "CreateError"
    assert condition["message"] == "spec.target.port: Service ns/web has no port 80"

    await client.patch(
        INTERCEPTOR_ROUTE, "web", {"spec": {"target": {"port": 8080}}}, namespace=NS, patch_type=PatchType.MERGE
    )
    body = to_dict(await client.get(INTERCEPTOR_ROUTE, "web", namespace=NS))
    assert await controller.reconcile(body) is True
    condition = await ready(client, "web")
    assert (condition["status"], condition["reason"]) == ("True", "Reconciled")
    assert "no ScaledObject reads it yet" in condition["message"]


def scaled_object(trigger_metadata: dict[str, str]) -> ScaledObject:
    body = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "triggers": [
                {
                    "type": "external-push",
                    "metadata": {"scalerAddress": "keda-add-ons-http-external-scaler.keda:9090", **trigger_metadata},
                }
            ],
        },
    }
    return ScaledObject.model_validate(body)


async def test_an_external_push_trigger_naming_a_route_reads_the_feed_under_the_add_ons_metric_names_against_fake_apiserver(  # noqa: E501
    client: AsyncClient,
) -> None:
    feed = InterceptorFeed(None, NS)
    both = {"concurrency": {"targetValue": 10}, "requestRate": {"targetValue": 50}}
    await client.create(INTERCEPTOR_ROUTE(interceptor_route("web", "web.test", "web", scalingMetric=both)))
    so = scaled_object({"interceptorRoute": "web"})
    scalers = await interceptor_scalers(client, so, build_scalers(so, PrefetchedStore(), None), feed)
    assert [s.metric_spec().name for s in scalers] == ["s0-http_web_concurrency", "s0-http_web_rate"]
    assert [s.metric_spec().target for s in scalers] == [10, 50]
    assert all(isinstance(s, InterceptorFeedScaler) and s.route == "ns/web" for s in scalers)

    # A line from an interceptor: the scalers read it (the rate as it is, as the add-on's scaler reports it).
    feed.apply("http://i1", {"routes": {"ns/web": {"concurrency": 3, "rate": 2.5, "requests": 7}}})
    readings = [await s.read() for s in scalers]
    assert [r.value for r in readings] == [3, 2.5] and all(r.active for r in readings)
    # Idle, but requests were served since the last read: still active (sparse traffic resets the cooldown) ...
    feed.apply("http://i1", {"routes": {"ns/web": {"concurrency": 0, "rate": 0, "requests": 9}}})
    assert (await scalers[0].read()).active
    # ... and not once nothing new was served, nor when an interceptor restarts (its count starts again at 0).
    assert not (await scalers[0].read()).active
    feed.apply("http://i1", {"routes": {"ns/web": {"concurrency": 0, "rate": 0, "requests": 0}}})
    assert not (await scalers[0].read()).active
    # A scaler built after traffic (an operator restart) does not take the past requests for new ones.
    (fresh, _) = await interceptor_scalers(client, so, build_scalers(so, PrefetchedStore(), None), feed)
    feed.apply("http://i1", {"routes": {"ns/web": {"concurrency": 0, "rate": 0, "requests": 40}}})
    assert not (await fresh.read()).active

    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("old", "old.test", "old")))
    so = scaled_object({"httpScaledObject": "old"})
    (scaler,) = await interceptor_scalers(client, so, build_scalers(so, PrefetchedStore(), None), feed)
    assert scaler.metric_spec().name == "s0-http-ns_002Fold"

    so = scaled_object({"interceptorRoute": "missing"})
    with pytest.raises(SpecError) as caught:
        await interceptor_scalers(client, so, build_scalers(so, PrefetchedStore(), None), feed)
    assert caught.value.field == "spec.triggers[0].metadata.interceptorRoute"
    assert "InterceptorRoute ns/missing does not exist" in str(caught.value)


async def test_a_scaled_object_reading_an_interceptor_route_scales_from_zero_on_a_held_request_against_fake_apiserver(
    client: AsyncClient, app: int
) -> None:
    """The add-on's v1beta1 pairing, unchanged: an InterceptorRoute and a ScaledObject whose external-push trigger
    names it (scalerAddress as the add-on's chart writes it; ebb's operator does not dial it)."""
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    so = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "minReplicaCount": 0,
            "maxReplicaCount": 3,
            # Polling every 300 s: only the interceptor's push can scale this up within the deadline.
            "pollingInterval": 300,
            "triggers": [
                {
                    "type": "external-push",
                    "metadata": {
                        "scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
                        "interceptorRoute": "web",
                    },
                }
            ],
        },
    }
    async with interceptor(client) as proxy:
        await set_endpoints(client, "ebb-interceptor-admin", "admin", proxy.admin.port, ["127.0.0.1"])
        operator = start_operator()
        try:
            await client.create(INTERCEPTOR_ROUTE(interceptor_route("web", "web.test", "web")))
            await client.create(SCALED_OBJECT(so))
            await eventually(lambda: ready(client, "web"), "the route Ready", ok=lambda c: c.get("status") == "True")
            assert (await ready(client, "web"))["message"] == "InterceptorRoute reconciled"
            await eventually(lambda: proxy.routes.routes, "the interceptor to route web.test")
            await eventually(
                lambda: client.get(SCALED_OBJECT, "web", namespace=NS),
                "the ScaledObject reconciled with the add-on's metric name",
                ok=lambda o: "s0-http_web_concurrency" in str(to_dict(o).get("status", {}).get("externalMetricNames")),
            )

            request = asyncio.create_task(get(proxy.port, "web.test"))
            await eventually(lambda: replicas(client, "web"), "the operator to scale web 0 -> 1", ok=lambda n: n == 1)
            assert not request.done(), "held while no endpoint is ready"
            await set_endpoints(client, "web", "http", app, [APP_HOST])  # the pod became ready
            assert await asyncio.wait_for(request, 30) == (200, "hello from the pod\n")
            operator.check()
        finally:
            await operator.stop()
        assert operator.error is None


async def test_an_interceptor_routes_fallback_goes_through_its_service_and_a_missing_target_service_is_said() -> None:
    routes = KubeRoutes(client_for_url("http://127.0.0.1:9"), InterceptorOptions())  # informers not started
    route = interceptor_route(
        "web", "web.test", "web", coldStart={"fallback": {"service": {"name": "static", "portName": "http"}}}
    )
    routes.informers["InterceptorRoutes"][0].objects[(NS, "web")] = {
        **route,
        "metadata": {**route["metadata"], "resourceVersion": "1"},
    }
    routes.informers["Services"][0].objects[(NS, "static")] = {
        "metadata": {"name": "static", "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": 8081}]},
    }
    routes.rebuild()
    served = routes.routes[(NS, "web")]
    assert served.failover == "http://static.ns.svc:8081"
    assert served.condition_wait == 30.0, "with a fallback, readiness defaults to 30 s (the add-on's)"
    assert served.broken == "Service ns/web does not exist" and served.pool is None
