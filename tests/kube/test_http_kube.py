"""HTTPScaledObjects on Kubernetes, against the fake API server (kmock: no kubelet, no kube-proxy, no pods).

What is real: `ebb interceptor` (KubeInterceptor, watching the fake server), `ebb operator` (operator_main with
kopf, in a thread), the HTTP app (a `python -m http.server` process on 127.0.0.2 standing in for a pod) and every
HTTP hop. What the test does in place of the cluster: it writes the EndpointSlices that the endpoints controller
would write (the app's address once "ready", the interceptor's admin port), and nothing starts pods when the
operator scales the Deployment through /scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lightkube.types import PatchType

from ebb.kube.client import (
    EVENT,
    SCALED_OBJECT,
    AsyncClient,
    client_for_url,
    default_client,
    global_resource,
    namespaced,
    to_dict,
)
from ebb.kube.endpoints import ENDPOINT_SLICE
from ebb.kube.http_feed import InterceptorFeed
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT, SERVICE, InterceptorOptions, KubeInterceptor, KubeRoutes
from ebb.kube.http_operator import HTTPScaledObjectController
from ebb.kube.operator import OperatorOptions, ScaledObjectController

from ._fakecluster import Cluster, eventually, use_kubeconfig
from .test_operator_e2e import Replica, free_port, single_operator

pytestmark = pytest.mark.kmock(cls=Cluster)

NS = "ns"
DEPLOYMENT = namespaced("apps", "v1", "Deployment", "deployments")
#: Where the app (the "pod") listens, and the interceptors' admin servers (their "pod IP"). A real API server
#: refuses loopback addresses in an EndpointSlice (kmock does not), so against one both are this host's own
#: non-loopback address (EBB_TEST_POD_IP, else found from the routing table).
APP_HOST = "127.0.0.2"
ADMIN_HOST = "127.0.0.1"
#: What the operator and the interceptors watch: every namespace on kmock, the test's own on a real cluster.
WATCH: list[str] = []


def own_address() -> str:
    """This host's address on its default route (no packet is sent)."""
    if os.environ.get("EBB_TEST_POD_IP"):
        return os.environ["EBB_TEST_POD_IP"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        address: str = sock.getsockname()[0]
        return address


def free_port_on(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


#: A kubeconfig for a real cluster (see test_operator_e2e): the tests marked `real` then also run against it.
REAL_KUBECONFIG = os.environ.get("EBB_TEST_KUBECONFIG", "")
NAMESPACE = global_resource("", "v1", "Namespace", "namespaces")


@pytest.fixture(
    params=[
        pytest.param("fake", id="against_fake_apiserver"),
        pytest.param("real", id="against_real_apiserver"),
    ]
)
async def client(
    request: pytest.FixtureRequest, kmock: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    """The API server: kmock, or (`real`, with EBB_TEST_KUBECONFIG) a real one, in a namespace of the test's own.

    On a real cluster NS is that namespace and the operator and interceptors watch only it; no kubelet is needed
    (the Deployments' pods stay Pending, the test writes the EndpointSlices that ready pods would get).
    """
    if request.param == "fake":
        kmock.serve("apps/v1/deployments", "autoscaling/v2/horizontalpodautoscalers", "v1/events", "v1/pods")
        kmock.serve("coordination.k8s.io/v1/leases", "v1/secrets", "v1/configmaps", "batch/v1/jobs", "v1/services")
        kmock.serve("discovery.k8s.io/v1/endpointslices")
        kmock.add_namespaces(NS)
        kmock.install_crds()
        use_kubeconfig(kmock, tmp_path, monkeypatch)
        api = client_for_url(str(kmock.url))
        yield api
        await api.aclose()
        return
    if not REAL_KUBECONFIG:
        pytest.skip("EBB_TEST_KUBECONFIG names no real cluster's kubeconfig")
    monkeypatch.setenv("KUBECONFIG", REAL_KUBECONFIG)
    api = default_client()
    ns = f"ebb-http-{uuid.uuid4().hex[:8]}"
    # This module's settings for a real cluster, and those of every test module that took them by value
    # (`from .test_http_kube import NS`, test_http_routes, test_http_observability).
    real = {"NS": ns, "WATCH": [ns], "APP_HOST": own_address(), "ADMIN_HOST": own_address()}
    package = f"{__package__}."
    for module in [m for m in list(sys.modules.values()) if getattr(m, "__name__", "").startswith(package)]:
        for name, value in real.items():
            if name in vars(module):
                monkeypatch.setattr(module, name, value)
    await api.create(NAMESPACE({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    try:
        yield api
    finally:
        # The operator is gone: drop finalizers from what is left, or the namespace never goes.
        for res in (HTTP_SCALED_OBJECT, SCALED_OBJECT):
            async for obj in api.list(res, namespace=ns):
                with contextlib.suppress(Exception):
                    await api.patch(
                        res,
                        obj.metadata.name,
                        {"metadata": {"finalizers": None}},
                        namespace=ns,
                        patch_type=PatchType.MERGE,
                    )
        await api.delete(NAMESPACE, ns)
        await api.aclose()


@pytest.fixture
def app(tmp_path: Path, client: AsyncClient) -> Iterator[int]:
    """A real HTTP server process on APP_HOST (the pod): serves hello.txt."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello from the pod\n")
    port = free_port_on(APP_HOST)
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", APP_HOST, "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def add_deployment(api: AsyncClient, name: str, replicas: int) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }
    await api.create(DEPLOYMENT(body))


async def add_service(api: AsyncClient, name: str, port: int = 80, port_name: str = "http") -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"name": port_name, "port": port, "targetPort": 8080}]},
    }
    await api.create(SERVICE(body))


async def set_endpoints(api: AsyncClient, service: str, port_name: str, port: int, addresses: list[str]) -> None:
    """What the endpoints controller writes for `service`: one slice with these addresses, ready."""
    name = f"{service}-slice"
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }
    try:
        await api.get(ENDPOINT_SLICE, name, namespace=NS)
    except Exception:
        await api.create(ENDPOINT_SLICE(body))
        return
    await api.patch(ENDPOINT_SLICE, name, body, namespace=NS, patch_type=PatchType.MERGE)


def http_scaled_object(name: str, host: str, service: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": name, "namespace": NS, "annotations": {"ebb.dev/polling-interval": "300"}},
        "spec": {
            "hosts": [host],
            "scaleTargetRef": {
                "name": name,
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "service": service,
                "port": 80,
            },
            "replicas": {"min": 0, "max": 5},
            "scalingMetric": {"concurrency": {"targetValue": 10}},
            **spec,
        },
    }


@contextlib.asynccontextmanager
async def interceptor(api: AsyncClient) -> AsyncIterator[KubeInterceptor]:
    options = InterceptorOptions(
        host="127.0.0.1", port=0, admin_host=ADMIN_HOST, admin_port=0, condition_wait=60, namespaces=list(WATCH)
    )
    running = KubeInterceptor(api, options)
    await running.start()
    try:
        await eventually(lambda: running.routes.synced, "the interceptor's first listings")
        yield running
    finally:
        await running.stop()


async def get(port: int, host: str, path: str = "/hello.txt") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}) as response,
    ):
        return response.status, await response.text()


async def replicas(api: AsyncClient, name: str) -> int:
    value: int = to_dict(await api.get(DEPLOYMENT, name, namespace=NS))["spec"]["replicas"]
    return value


async def ready_condition(api: AsyncClient, name: str) -> dict[str, Any]:
    body = to_dict(await api.get(HTTP_SCALED_OBJECT, name, namespace=NS))
    for cond in (body.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


async def event_reasons(api: AsyncClient, name: str) -> list[str]:
    found = [to_dict(e) async for e in api.list(EVENT, namespace=NS)]
    return [e["reason"] for e in found if (e.get("involvedObject") or {}).get("name") == name]


def start_operator() -> Replica:
    return single_operator(NS, namespaces=list(WATCH), scaling="hpa", interceptor_namespace=NS)


async def test_a_request_held_at_zero_is_served_once_the_operator_scales_up(client: AsyncClient, app: int) -> None:
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    async with interceptor(client) as proxy:
        await set_endpoints(client, "ebb-interceptor-admin", "admin", proxy.admin.port, [ADMIN_HOST])
        operator = start_operator()
        try:
            await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
            ready = await eventually(
                lambda: ready_condition(client, "web"), "Ready=True", ok=lambda c: c.get("status") == "True"
            )
            assert ready["reason"] == "Reconciled"
            # metav1.Condition, as the add-on writes it (its CRD requires lastTransitionTime).
            assert ready["lastTransitionTime"]
            status = to_dict(await client.get(HTTP_SCALED_OBJECT, "web", namespace=NS))["status"]
            assert status["targetWorkload"] == "apps/v1/Deployment/web"
            assert status["targetService"] == "web:80"
            await eventually(lambda: proxy.routes.routes, "the interceptor to route web.test")

            request = asyncio.create_task(get(proxy.port, "web.test"))
            # Polling is every 300 s: only the push from the interceptor can scale this up within the deadline.
            await eventually(lambda: replicas(client, "web"), "the operator to scale web 0 -> 1", ok=lambda n: n == 1)
            await asyncio.sleep(0.2)
            assert not request.done(), "the request must be held while no endpoint is ready"
            assert proxy.routes.routes[(NS, "web")].held == 1

            await set_endpoints(client, "web", "http", app, [APP_HOST])  # the pod became ready
            status_code, text = await asyncio.wait_for(request, 30)
            assert (status_code, text) == (200, "hello from the pod\n")
            await eventually(
                lambda: event_reasons(client, "web"),
                "the scale-up Event on the HTTPScaledObject",
                ok=lambda reasons: "KEDAScaleTargetActivated" in reasons,
            )
            operator.check()
        finally:
            await operator.stop()
        assert operator.error is None


async def test_a_route_whose_service_is_missing_gets_a_condition_and_an_event_others_work(
    client: AsyncClient, app: int
) -> None:
    await add_deployment(client, "web", 1)
    await add_deployment(client, "ghost", 0)
    await add_service(client, "web")
    await set_endpoints(client, "web", "http", app, [APP_HOST])
    async with interceptor(client) as proxy:
        await set_endpoints(client, "ebb-interceptor-admin", "admin", proxy.admin.port, [ADMIN_HOST])
        operator = start_operator()
        try:
            await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
            await client.create(HTTP_SCALED_OBJECT(http_scaled_object("ghost", "ghost.test", "nothing-here")))
            cond = await eventually(
                lambda: ready_condition(client, "ghost"), "Ready=False", ok=lambda c: c.get("status") == "False"
            )
            assert cond["reason"] == "ServiceNotFound"
            assert f"Service {NS}/nothing-here does not exist" in cond["message"]
            await eventually(
                lambda: event_reasons(client, "ghost"), "a ServiceNotFound Event", ok=lambda r: "ServiceNotFound" in r
            )
            await eventually(
                lambda: ready_condition(client, "web"), "web Ready=True", ok=lambda c: c.get("status") == "True"
            )
            await eventually(lambda: len(proxy.routes.routes) == 2, "both routes in the interceptor")
            status_code, text = await get(proxy.port, "ghost.test")
            assert status_code == 503 and f"Service {NS}/nothing-here does not exist" in text
            assert await get(proxy.port, "web.test") == (200, "hello from the pod\n")

            # A route change reaches the interceptor through its watch, without a restart.
            await client.patch(
                HTTP_SCALED_OBJECT,
                "web",
                {"spec": {"hosts": ["web2.test"]}},
                namespace=NS,
                patch_type=PatchType.MERGE,
            )
            await eventually(lambda: get(proxy.port, "web2.test"), "web2.test routed", ok=lambda r: r[0] == 200)
            assert (await get(proxy.port, "web.test"))[0] == 404
            operator.check()
        finally:
            await operator.stop()
        assert operator.error is None


async def test_the_operator_feed_sums_several_interceptor_replicas(client: AsyncClient) -> None:
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
    async with interceptor(client) as first, interceptor(client) as second:
        await eventually(lambda: len(first.routes.routes) + len(second.routes.routes) == 2, "both routing web.test")
        # Two interceptor pods behind the admin Service, both at ADMIN_HOST (their "pod IP"), each on the port it
        # bound (one slice each: a slice has one port per name).
        feed = InterceptorFeed(client, NS)
        woken: list[str] = []
        feed.listen(f"{NS}/web", lambda: woken.append(f"{NS}/web"))
        await feed.start()
        try:
            body = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "admin-1",
                    "namespace": NS,
                    "labels": {"kubernetes.io/service-name": "ebb-interceptor-admin"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "admin", "port": first.admin.port}],
                "endpoints": [{"addresses": [ADMIN_HOST], "conditions": {"ready": True}}],
            }
            await client.create(ENDPOINT_SLICE(body))
            body2 = {
                **body,
                "metadata": {**body["metadata"], "name": "admin-2"},
                "ports": [{"name": "admin", "port": second.admin.port}],
            }
            await client.create(ENDPOINT_SLICE(body2))
            await eventually(lambda: feed.connected == 2, "the feed to follow both interceptors")
            held = [
                asyncio.create_task(get(first.port, "web.test")),
                asyncio.create_task(get(second.port, "web.test")),
                asyncio.create_task(get(second.port, "web.test")),
            ]
            await eventually(lambda: feed.concurrency(f"{NS}/web"), "three held requests summed", ok=lambda n: n == 3)
            assert woken, "a held request wakes the route's listeners"
            # One interceptor goes away: its counts stop counting.
            await client.delete(ENDPOINT_SLICE, "admin-2", namespace=NS)
            await eventually(lambda: feed.concurrency(f"{NS}/web"), "only the first one's request", ok=lambda n: n == 1)
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
        finally:
            await feed.stop()


async def test_the_ebb_interceptor_command_follows_the_cluster_and_stops_on_sigterm(
    client: AsyncClient, app: int
) -> None:
    """`ebb interceptor` as a process, logged in through KUBECONFIG as on a workstation."""
    await add_deployment(client, "web", 1)
    await add_service(client, "web")
    await set_endpoints(client, "web", "http", app, [APP_HOST])
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
    port, admin = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ebb.cli",
        "interceptor",
        "--host=127.0.0.1",
        f"--port={port}",
        "--admin-host=127.0.0.1",
        f"--admin-port={admin}",
        *(f"--namespace={ns}" for ns in WATCH),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def readyz() -> int:
            assert process.returncode is None, "ebb interceptor exited"
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{admin}/readyz") as r:
                return r.status

        await eventually(readyz, "ebb interceptor to load its listings", ok=lambda s: s == 200)
        assert await get(port, "web.test") == (200, "hello from the pod\n")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = (await process.stdout.read()).decode() if process.stdout is not None else ""
    assert code == 0, output
    assert "Traceback" not in output


def user_scaled_object(target: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "mine", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": target},
            "triggers": [
                {
                    "type": "cron",
                    "metadata": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 9 * * *", "desiredReplicas": "1"},
                }
            ],
        },
    }


async def reconciled(api: AsyncClient, manifest: dict[str, Any]) -> tuple[bool, HTTPScaledObjectController]:
    controller = HTTPScaledObjectController(api, InterceptorFeed(None, NS))
    controller.autostart = False
    await api.create(HTTP_SCALED_OBJECT(manifest))
    body = to_dict(await api.get(HTTP_SCALED_OBJECT, manifest["metadata"]["name"], namespace=NS))
    return await controller.reconcile(body), controller


async def http_status(api: AsyncClient, name: str) -> dict[str, Any]:
    return to_dict(await api.get(HTTP_SCALED_OBJECT, name, namespace=NS))


async def so_body(api: AsyncClient, name: str) -> dict[str, Any]:
    return to_dict(await api.get(SCALED_OBJECT, name, namespace=NS))


def so_ready(body: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")


def so_controller(api: AsyncClient) -> ScaledObjectController:
    controller = ScaledObjectController(api, OperatorOptions(cluster_object_namespace=NS))
    controller.autostart = False
    return controller


async def warnings(api: AsyncClient, name: str) -> list[str]:
    found = [to_dict(e) async for e in api.list(EVENT, namespace=NS)]
    return [
        e["reason"] for e in found if (e.get("involvedObject") or {}).get("name") == name and e["type"] == "Warning"
    ]


async def test_a_scaled_object_created_first_keeps_scaling_and_a_later_http_scaled_object_is_refused(
    client: AsyncClient,
) -> None:
    """Both made while the webhook was off: the operator refuses the second to arrive (creationTimestamp, then
    name: "mine" is created first and sorts first), whichever it reconciles first, and says so once."""
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    await client.create(SCALED_OBJECT(user_scaled_object("web")))
    ok, controller = await reconciled(client, http_scaled_object("web", "web.test", "web"))
    assert not ok and not controller.runtimes
    cond = await ready_condition(client, "web")
    assert (cond["status"], cond["reason"]) == ("False", "CreateError")
    assert cond["message"] == (
        f"spec.scaleTargetRef: the workload Deployment 'web' is already scaled by ScaledObject {NS}/mine, created "
        f"before HTTPScaledObject {NS}/web (which therefore does not scale it); one workload has one scaler (delete "
        "that ScaledObject, or give this object the annotation httpscaledobject.keda.sh/skip-scaledobject-creation: "
        '"true" to route only)'
    )
    assert await warnings(client, "web") == ["CreateError"]
    # Retried (kopf's backoff, with the status it wrote): still refused, no second Event.
    assert not await controller.reconcile(await http_status(client, "web"))
    assert await warnings(client, "web") == ["CreateError"]
    # The ScaledObject is not refused by the HTTPScaledObject that came after it.
    scaled = so_controller(client)
    try:
        assert await scaled.reconcile(await so_body(client, "mine"))
        assert so_ready(await so_body(client, "mine"))["status"] == "True"
        assert (NS, "mine") in scaled.runtimes
    finally:
        await scaled.close()
        await controller.close()


async def test_an_http_scaled_object_created_first_keeps_scaling_and_a_later_scaled_object_is_refused(
    client: AsyncClient,
) -> None:
    """The other way round: the HTTPScaledObject "app" scales, the ScaledObject "later" does not (reconciled first,
    as after an operator restart, and again), and scales once "app" is gone; a ScaledObject on another workload
    is not concerned."""
    await add_deployment(client, "app", 0)
    await add_deployment(client, "api", 1)
    await add_service(client, "app")
    manifest = http_scaled_object("app", "app.test", "app")
    await client.create(HTTP_SCALED_OBJECT(manifest))
    await client.create(SCALED_OBJECT({**user_scaled_object("app"), "metadata": {"name": "later", "namespace": NS}}))
    await client.create(SCALED_OBJECT({**user_scaled_object("api"), "metadata": {"name": "other", "namespace": NS}}))
    scaled = so_controller(client)
    http = HTTPScaledObjectController(client, InterceptorFeed(None, NS))
    http.autostart = False
    try:
        assert not await scaled.reconcile(await so_body(client, "later"))
        ready = so_ready(await so_body(client, "later"))
        assert (ready["status"], ready["reason"]) == ("False", "ScaledObjectCheckFailed")
        assert ready["message"] == (
            f"spec.scaleTargetRef: the workload Deployment 'app' is already scaled by HTTPScaledObject {NS}/app, "
            f"created before ScaledObject {NS}/later (which therefore does not scale it); one workload has one "
            "scaler (give the HTTPScaledObject the annotation httpscaledobject.keda.sh/skip-scaledobject-creation: "
            '"true" and scale it with this ScaledObject\'s external-push trigger, or migrate it to an InterceptorRoute)'
        )
        assert (NS, "later") not in scaled.runtimes
        assert await scaled.reconcile(await so_body(client, "other"))
        assert await http.reconcile(await http_status(client, "app"))
        assert (NS, "app") in http.runtimes
        assert (await ready_condition(client, "app"))["reason"] == "Reconciled"
        assert not await scaled.reconcile(await so_body(client, "later"))
        assert await warnings(client, "later") == ["ScaledObjectCheckFailed"]  # once, not every retry
        assert so_ready(await so_body(client, "other"))["status"] == "True"

        body = await http_status(client, "app")
        await client.delete(HTTP_SCALED_OBJECT, "app", namespace=NS)
        await http.delete(body)
        await eventually_gone(client, "app")
        assert await scaled.reconcile(await so_body(client, "later"))
        assert so_ready(await so_body(client, "later"))["status"] == "True"
    finally:
        await scaled.close()
        await http.close()


async def eventually_gone(api: AsyncClient, name: str) -> None:
    """Deleted (a real API server keeps it until the finalizers, none here, are done)."""
    for _ in range(100):
        try:
            await api.get(HTTP_SCALED_OBJECT, name, namespace=NS)
        except Exception:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"HTTPScaledObject {NS}/{name} was not deleted")


async def test_skip_scaledobject_creation_routes_only_and_leaves_the_target_to_the_users_own(
    client: AsyncClient,
) -> None:
    await add_deployment(client, "web", 2)
    await add_service(client, "web")
    await client.create(SCALED_OBJECT(user_scaled_object("web")))
    manifest = http_scaled_object("web", "web.test", "web")
    manifest["metadata"]["annotations"]["httpscaledobject.keda.sh/skip-scaledobject-creation"] = "true"
    ok, controller = await reconciled(client, manifest)
    assert ok and not controller.runtimes  # no scaling loop: the user's ScaledObject scales the target
    cond = await ready_condition(client, "web")
    assert (cond["status"], cond["reason"]) == ("True", "Reconciled")
    assert "routing only" in cond["message"]
    await controller.delete(to_dict(await client.get(HTTP_SCALED_OBJECT, "web", namespace=NS)))
    assert await replicas(client, "web") == 2


def test_a_route_listed_before_the_services_is_not_reported_missing(caplog: pytest.LogCaptureFixture) -> None:
    """Regression (real cluster, v1.28.0): `ebb interceptor` logged "Service ... does not exist" at start for a
    Service that existed, when its HTTPScaledObjects' listing came in before the Services'."""
    routes = KubeRoutes(client_for_url("http://127.0.0.1:9"), InterceptorOptions())  # informers not started
    (objects,) = routes.informers["HTTPScaledObjects"]
    (services,) = routes.informers["Services"]
    objects.objects = {(NS, "web"): http_scaled_object("web", "web.test", "web")}
    objects.synced.set()
    routes.rebuild()  # the Services not listed yet
    assert "does not exist" not in caplog.text
    service = {
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    services.objects = {(NS, "web"): service}
    for informer in (i for group in routes.informers.values() for i in group):
        informer.synced.set()  # every first listing in
    routes.rebuild()
    assert "does not exist" not in caplog.text
    assert routes.routes[(NS, "web")].broken is None
    # A Service that is really missing, once everything is listed, is reported.
    services.objects = {}
    routes.rebuild()
    assert f"HTTPScaledObject {NS}/web: Service {NS}/web does not exist" in caplog.text


def shared_controllers(api: AsyncClient) -> tuple[ScaledObjectController, HTTPScaledObjectController]:
    """Both controllers over one OperatorOptions, as operator_main builds them (one re-queue for both kinds)."""
    scaled = so_controller(api)
    http = HTTPScaledObjectController(api, InterceptorFeed(None, NS), scaled.options)
    http.autostart = False
    return scaled, http


async def test_two_http_scaled_objects_on_one_workload_the_first_scales_and_the_second_once_it_is_deleted(
    client: AsyncClient,
) -> None:
    """Made while the webhook was off (other hosts, one workload): "web-v2" (created second) is refused, once,
    whichever is reconciled first; deleting "web" makes it scale at once, not at its next retry."""
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
    second = http_scaled_object("web-v2", "v2.web.test", "web")
    second["spec"]["scaleTargetRef"]["name"] = "web"
    await client.create(HTTP_SCALED_OBJECT(second))
    scaled, http = shared_controllers(client)
    try:
        assert not await http.reconcile(await http_status(client, "web-v2"))
        assert await http.reconcile(await http_status(client, "web"))
        assert not await http.reconcile(await http_status(client, "web-v2"))
        cond = await ready_condition(client, "web-v2")
        assert (cond["status"], cond["reason"]) == ("False", "CreateError")
        assert cond["message"] == (
            f"spec.scaleTargetRef: the workload Deployment 'web' is already scaled by HTTPScaledObject {NS}/web, "
            f"created before HTTPScaledObject {NS}/web-v2 (which therefore does not scale it); one workload has one "
            "scaler (delete one of them, or give one the annotation httpscaledobject.keda.sh/skip-scaledobject-"
            'creation: "true" to route only)'
        )
        assert await warnings(client, "web-v2") == ["CreateError"]
        assert list(http.runtimes) == [(NS, "web")]
        body = await http_status(client, "web")
        await client.delete(HTTP_SCALED_OBJECT, "web", namespace=NS)
        await http.delete(body)
        await eventually(lambda: (NS, "web-v2") in http.runtimes, "web-v2 to scale")
        await eventually(lambda: ready_condition(client, "web-v2"), "Ready", ok=lambda c: c["status"] == "True")
    finally:
        await scaled.close()
        await http.close()


async def test_deleting_the_scaled_object_that_came_first_lets_the_http_scaled_object_scale_at_once(
    client: AsyncClient,
) -> None:
    await add_deployment(client, "web", 0)
    await add_service(client, "web")
    await client.create(SCALED_OBJECT(user_scaled_object("web")))
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("web", "web.test", "web")))
    scaled, http = shared_controllers(client)
    try:
        assert not await http.reconcile(await http_status(client, "web"))
        assert await scaled.reconcile(await so_body(client, "mine"))
        body = await so_body(client, "mine")
        await client.delete(SCALED_OBJECT, "mine", namespace=NS)
        await scaled.delete(body)
        await eventually(lambda: (NS, "web") in http.runtimes, "the HTTPScaledObject to scale")
        await eventually(lambda: ready_condition(client, "web"), "Ready", ok=lambda c: c["reason"] == "Reconciled")
    finally:
        await scaled.close()
        await http.close()


async def test_deleting_the_http_scaled_object_that_came_first_lets_the_scaled_object_scale_at_once(
    client: AsyncClient,
) -> None:
    await add_deployment(client, "app", 0)
    await add_service(client, "app")
    await client.create(HTTP_SCALED_OBJECT(http_scaled_object("app", "app.test", "app")))
    await client.create(SCALED_OBJECT({**user_scaled_object("app"), "metadata": {"name": "later", "namespace": NS}}))
    scaled, http = shared_controllers(client)
    try:
        assert not await scaled.reconcile(await so_body(client, "later"))
        assert await http.reconcile(await http_status(client, "app"))
        body = await http_status(client, "app")
        await client.delete(HTTP_SCALED_OBJECT, "app", namespace=NS)
        await http.delete(body)
        await eventually(lambda: (NS, "later") in scaled.runtimes, "the ScaledObject to scale")
        await eventually(lambda: so_body(client, "later"), "Ready", ok=lambda b: so_ready(b)["status"] == "True")
    finally:
        await scaled.close()
        await http.close()
