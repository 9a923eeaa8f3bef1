"""`ebb operator` end to end: the real `operator_main` (kopf, leader election, the metrics API) against an API server.

Each test runs twice. Against kmock (`[against_fake_apiserver]`, always, in CI): kmock fakes the Kubernetes API
server, with no kube-controller-manager (no garbage collector, no real HPA, no pods); kopf finds the CRDs by API
discovery, served from deploy/crds. Against a real cluster (`[against_real_apiserver]`) when EBB_TEST_KUBECONFIG
names a kubeconfig for one (with ebb's CRDs installed; cluster-admin or the like, since the tests create namespaces):
each test gets its own namespace, and its operators watch only that one. Skipped otherwise.

The operator logs in as it does on a machine, from a kubeconfig named by KUBECONFIG, both kopf and lightkube. The
tests act as `kubectl` through the API and assert on what the operator leaves in the cluster. The trigger is real:
a Redis list on the local server (127.0.0.1:6379, which the operators reach, as they run in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from lightkube.types import PatchType

from ebb.kube.client import (
    EVENT,
    HPA,
    SCALED_OBJECT,
    AsyncClient,
    client_for_url,
    default_client,
    global_resource,
    is_not_found,
    namespaced,
    to_dict,
)
from ebb.kube.leader import LEADER_LABEL, LEASE
from ebb.kube.runner import operator_main

from ._fakecluster import Cluster, eventually, use_kubeconfig

#: A kubeconfig for a real cluster: the tests then also run against it.
REAL_KUBECONFIG = os.environ.get("EBB_TEST_KUBECONFIG", "")
DEPLOYMENT = namespaced("apps", "v1", "Deployment", "deployments")
NAMESPACE = global_resource("", "v1", "Namespace", "namespaces")
POD = namespaced("", "v1", "Pod", "pods")
#: Short Lease timings so that a takeover happens within a second or two.
LEASE_TIMING = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}

pytestmark = pytest.mark.kmock(cls=Cluster)


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """A Deployment a real API server accepts (its pods stay Pending where no kubelet runs)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


@dataclass
class World:
    """The API server a test runs against, and how the test reaches it (as `kubectl` would)."""

    name: str
    #: The ScaledObjects' and Deployments' namespace; the Lease and ClusterTriggerAuthentication objects' too.
    ns: str
    client: AsyncClient
    #: What the operators watch: every namespace on kmock, the test's own on a shared real cluster.
    watch: list[str]
    fake: Cluster | None = None

    async def add_deployment(self, name: str, replicas: int) -> None:
        await self.client.create(DEPLOYMENT(deployment(name, self.ns, replicas)))

    async def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The live object, or KeyError while it does not exist."""
        try:
            return to_dict(await self.client.get(res, name, namespace=namespace or self.ns))
        except Exception as exc:
            if is_not_found(exc):
                raise KeyError(name) from None
            raise

    async def gone(self, res: Any, name: str) -> bool:
        try:
            await self.get(res, name)
        except KeyError:
            return True
        return False

    async def replicas(self, name: str = "web") -> int:
        value: int = (await self.get(DEPLOYMENT, name))["spec"]["replicas"]
        return value

    async def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        for cond in ((await self.get(SCALED_OBJECT, name)).get("status") or {}).get("conditions") or ():
            if cond["type"] == kind:
                return dict(cond)
        return {}

    async def events(self, name: str) -> list[str]:
        found = [to_dict(e) async for e in self.client.list(EVENT, namespace=self.ns)]
        return [e["reason"] for e in found if (e.get("involvedObject") or {}).get("name") == name]

    async def holder(self) -> str | None:
        try:
            value: str | None = (await self.get(LEASE, "ebb-operator"))["spec"].get("holderIdentity")
            return value
        except KeyError:
            return None


@pytest.fixture(
    params=[
        pytest.param("fake", id="against_fake_apiserver"),
        pytest.param("real", id="against_real_apiserver"),
    ]
)
async def world(
    request: pytest.FixtureRequest, kmock: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[World]:
    """The cluster with ebb's CRDs and two Deployments, web and api, at zero; KUBECONFIG naming it."""
    if request.param == "fake":
        kmock.serve("apps/v1/deployments", "autoscaling/v2/horizontalpodautoscalers", "v1/events", "v1/pods")
        kmock.serve("coordination.k8s.io/v1/leases", "v1/secrets", "v1/configmaps", "batch/v1/jobs")
        kmock.add_namespaces("ns")
        kmock.install_crds()
        use_kubeconfig(kmock, tmp_path, monkeypatch)
        client = client_for_url(str(kmock.url))
        world = World("fake", "ns", client, watch=[], fake=kmock)
        await world.add_deployment("web", 0)
        await world.add_deployment("api", 0)
        yield world
        await client.aclose()
        return
    if not REAL_KUBECONFIG:
        pytest.skip("EBB_TEST_KUBECONFIG names no real cluster's kubeconfig")
    monkeypatch.setenv("KUBECONFIG", REAL_KUBECONFIG)
    client = default_client()
    ns = f"ebb-e2e-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACE({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    world = World("real", ns, client, watch=[ns])
    try:
        await world.add_deployment("web", 0)
        await world.add_deployment("api", 0)
        yield world
    finally:
        # The operators are gone: drop KEDA's finalizer from what is left, or the namespace never goes.
        async for so in client.list(SCALED_OBJECT, namespace=ns):
            with contextlib.suppress(Exception):
                await client.patch(
                    SCALED_OBJECT,
                    so.metadata.name,
                    {"metadata": {"finalizers": None}},
                    namespace=ns,
                    patch_type=PatchType.MERGE,
                )
        await client.delete(NAMESPACE, ns)
        await client.aclose()


@pytest.fixture
async def redis_list() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    key = f"ebb-e2e-{uuid.uuid4().hex}"
    yield client, key
    await client.delete(key)
    await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def single_operator(namespace: str, **extra: Any) -> Replica:
    """One operator without leader election, its webhook or /metrics, watching `namespace` (unless `extra` says),
    scaling directly (unless `extra` says)."""
    options: dict[str, Any] = {
        "namespaces": [namespace],
        "scaling": "direct",
        "metrics_api_port": free_port(),
        "metrics_api_auth": "none",
        "cluster_object_namespace": namespace,
        "leader_election": False,
        "webhook_port": 0,
        "metrics_port": 0,
        **extra,
    }
    return Replica(options, namespace)


class Replica:
    """One operator pod: `operator_main` in a thread with its own event loop, `api` its metrics API.

    A thread, not a task beside the test's: kopf takes the event loop for its own, and when it stops it cancels
    every task started after it, which would include the other replica's and the test's own.
    """

    def __init__(self, options: dict[str, Any], namespace: str) -> None:
        self.api = f"http://127.0.0.1:{options['metrics_api_port']}"
        self.namespace = namespace
        self.error: BaseException | None = None
        self._running = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._run, args=(options,), name="ebb-operator", daemon=True)
        self._thread.start()

    def _run(self, options: dict[str, Any]) -> None:
        async def main() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            self._running.set()
            await operator_main(**options)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass  # stop()
        except BaseException as exc:
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def check(self) -> None:
        """Raise what ended the replica, if it ended on its own."""
        if self.error is not None:
            raise AssertionError(f"the operator failed: {self.error!r}") from self.error
        if not self.running:
            raise AssertionError("the operator stopped")

    async def readyz(self) -> int:
        async with aiohttp.ClientSession() as session, session.get(f"{self.api}/readyz") as response:
            return response.status

    async def metric(self, metric: str, scaled_object: str) -> tuple[int, dict[str, Any]]:
        url = f"{self.api}/apis/external.metrics.k8s.io/v1beta1/namespaces/{self.namespace}/{metric}"
        params = {"labelSelector": f"scaledobject.keda.sh/name={scaled_object}"}
        async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
            return response.status, await response.json(content_type=None)

    async def stop(self) -> None:
        """As on Ctrl+C: the operator's task is cancelled, it cleans up, and its thread ends."""
        await asyncio.to_thread(self._running.wait, 10)
        if self._loop is not None and self._task is not None and self.running:
            self._loop.call_soon_threadsafe(self._task.cancel)
        await asyncio.to_thread(self._thread.join, 15)
        assert not self.running, "the operator did not stop within 15 s"


@pytest.fixture
async def operators(world: World) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    """Starts operator replicas as `ebb operator` runs them (leader election on); stops them after the test."""
    started: list[Replica] = []

    async def start(**extra: Any) -> Replica:
        options: dict[str, Any] = {
            "namespaces": world.watch,
            "scaling": "hpa",
            "metrics_api_port": free_port(),
            "metrics_api_auth": "none",
            "cluster_object_namespace": world.ns,
            "leader_election": True,
            "leader_election_namespace": world.ns,
            "webhook_port": 0,  # off: the replicas would share 9443
            **{f"leader_election_{k}": v for k, v in LEASE_TIMING.items()},
            **extra,
        }
        replica = Replica(options, world.ns)
        started.append(replica)

        async def answers() -> int:
            replica.check()
            return await replica.readyz()

        await eventually(answers, "the metrics API to answer", ok=lambda status: status in (200, 503))
        return replica

    yield start
    for replica in started:
        await replica.stop()
    errors = [replica.error for replica in started if replica.error is not None]
    assert not errors, f"operators failed: {errors!r}"


def scaled_object(name: str, target: str, key: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "pollingInterval": 1,
            "cooldownPeriod": 0,
            "triggers": [
                {"type": "redis", "metadata": {"address": "127.0.0.1:6379", "listName": key, "listLength": "5"}}
            ],
            **spec,
        },
    }


async def create(world: World, body: dict[str, Any]) -> None:
    body["metadata"]["namespace"] = world.ns
    await world.client.create(SCALED_OBJECT(body))


async def leader_and_follower(world: World, a: Replica, b: Replica) -> tuple[Replica, Replica]:
    """Waits until one of the two leads; returns (leader, follower) as their readiness tells."""
    await eventually(world.holder, "a replica to take the Lease")
    statuses = await eventually(
        lambda: asyncio.gather(a.readyz(), b.readyz()),
        "exactly one replica ready",
        ok=lambda s: sorted(s) == [200, 503],
    )
    return (a, b) if statuses[0] == 200 else (b, a)


async def test_one_of_two_replicas_leads_and_scales(
    world: World, operators: Callable[..., Awaitable[Replica]], redis_list: tuple[aioredis.Redis, str]
) -> None:
    redis, key = redis_list
    a, b = await operators(), await operators()
    leader, follower = await leader_and_follower(world, a, b)
    await create(world, scaled_object("worker", "web", key))

    hpa = await eventually(lambda: world.get(HPA, "keda-hpa-worker"), "the HPA")
    so = await world.get(SCALED_OBJECT, "worker")
    assert "finalizer.keda.sh" in so["metadata"]["finalizers"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == f"s0-redis-{key}"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == so["metadata"]["uid"]
    await eventually(lambda: world.condition("worker"), "Ready=True", ok=lambda c: c.get("status") == "True")
    fallback = await world.condition("worker", "Fallback")
    assert (fallback["status"], fallback["reason"]) == ("False", "NoFallbackFound")
    await eventually(
        lambda: world.events("worker"), "the KEDAScalersStarted Event", ok=lambda e: "KEDAScalersStarted" in e
    )

    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    await eventually(world.replicas, "the Deployment to scale 0 -> 1", ok=lambda n: n == 1)
    await eventually(lambda: world.condition("worker", "Active"), "Active=True", ok=lambda c: c.get("status") == "True")

    # Only the leader runs the loops: it serves the value to the HPA, the follower knows no such metric.
    status, body = await leader.metric(f"s0-redis-{key}", "worker")
    assert (status, body["items"][0]["value"]) == (200, "12")
    status, _ = await follower.metric(f"s0-redis-{key}", "worker")
    assert status == 404
    assert (await leader.readyz(), await follower.readyz()) == (200, 503)
    a.check()
    b.check()


async def test_follower_takes_over_and_keeps_scaling_when_the_leader_stops(
    world: World,
    operators: Callable[..., Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, key = redis_list
    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    a, b = await operators(), await operators()
    leader, follower = await leader_and_follower(world, a, b)
    first = await world.holder()
    await create(world, scaled_object("worker", "web", key))
    await eventually(world.replicas, "the leader to scale 0 -> 1", ok=lambda n: n == 1)

    await leader.stop()  # it hands the Lease back on the way out
    await eventually(world.holder, "the follower to take the Lease", ok=lambda h: h not in (None, first))
    assert (await world.get(LEASE, "ebb-operator"))["spec"]["leaseTransitions"] == 1
    # A handover, not a loss: nothing to warn about.
    assert not [r.getMessage() for r in caplog.records if r.name == "ebb.leader" and r.levelno >= logging.WARNING]
    await eventually(follower.readyz, "the new leader to report ready", ok=lambda status: status == 200)

    # kopf resumes the existing object on the new leader: its loop scales back in once the list is empty ...
    await redis.delete(key)
    await eventually(world.replicas, "the new leader to scale 1 -> 0", ok=lambda n: n == 0)
    # ... and a ScaledObject created after the takeover is reconciled by it.
    await create(world, scaled_object("api-worker", "api", key))
    hpa = await eventually(lambda: world.get(HPA, "keda-hpa-api-worker"), "the new object's HPA")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api"
    follower.check()


async def test_deleted_scaled_object_restores_replicas_and_goes(
    world: World, operators: Callable[..., Awaitable[Replica]], redis_list: tuple[aioredis.Redis, str]
) -> None:
    _, key = redis_list
    await world.client.patch(
        DEPLOYMENT, "web", {"spec": {"replicas": 3}}, namespace=world.ns, patch_type=PatchType.MERGE
    )
    replica = await operators()
    await create(world, scaled_object("worker", "web", key, advanced={"restoreToOriginalReplicaCount": True}))
    await eventually(lambda: world.get(HPA, "keda-hpa-worker"), "the HPA")
    await eventually(world.replicas, "the empty list to scale 3 -> 0", ok=lambda n: n == 0)
    assert (await world.get(SCALED_OBJECT, "worker"))["status"]["originalReplicaCount"] == 3
    status, _ = await replica.metric(f"s0-redis-{key}", "worker")
    assert status == 200

    await world.client.delete(SCALED_OBJECT, "worker", namespace=world.ns)
    # The API server only marks it (deletionTimestamp) while the finalizer holds it; the operator's delete handler
    # restores the count and removes the finalizer, and then the object is gone, and its HPA with it (the garbage
    # collector, by ownerReference).
    await eventually(lambda: world.gone(SCALED_OBJECT, "worker"), "the ScaledObject to go (finalizer removed)")
    assert await world.replicas() == 3
    await eventually(lambda: world.gone(HPA, "keda-hpa-worker"), "the HPA to be collected")
    assert "ScaledObjectDeleted" in await world.events("worker")
    status, _ = await replica.metric(f"s0-redis-{key}", "worker")
    assert status == 404
    replica.check()


async def test_broken_scaled_object_does_not_stop_a_good_one(
    world: World, operators: Callable[..., Awaitable[Replica]], redis_list: tuple[aioredis.Redis, str]
) -> None:
    redis, key = redis_list
    replica = await operators()
    broken = scaled_object("broken", "api", key)
    broken["spec"]["triggers"][0]["type"] = "no-such-scaler"
    await create(world, broken)
    await create(world, scaled_object("worker", "web", key))

    ready = await eventually(
        lambda: world.condition("broken"), "Ready=False on the broken object", ok=lambda c: c.get("status") == "False"
    )
    assert ready["reason"] == "ScaledObjectCheckFailed"
    assert "spec.triggers[0].type" in ready["message"]
    assert "no-such-scaler" in ready["message"]
    await eventually(
        lambda: world.events("broken"), "a Warning Event on it", ok=lambda e: "ScaledObjectCheckFailed" in e
    )
    assert await world.gone(HPA, "keda-hpa-broken")

    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    await eventually(world.replicas, "the good object to scale 0 -> 1", ok=lambda n: n == 1)
    assert (await world.condition("worker"))["status"] == "True"
    assert await world.replicas("api") == 0
    replica.check()


async def test_scaled_object_applied_before_its_deployment_becomes_ready_on_its_own(
    world: World, operators: Callable[..., Awaitable[Replica]], redis_list: tuple[aioredis.Redis, str]
) -> None:
    """Regression (real cluster): a failed reconcile was never tried again, so an object applied before its
    workload stayed Ready=False until edited. kopf now retries it with backoff (1 s, 2 s, 4 s ...)."""
    _, key = redis_list
    replica = await operators()
    await create(world, scaled_object("early", "later", key))
    ready = await eventually(lambda: world.condition("early"), "Ready=False", ok=lambda c: c.get("status") == "False")
    assert "later" in ready["message"]
    await world.add_deployment("later", 0)
    await eventually(lambda: world.condition("early"), "Ready=True, unedited", ok=lambda c: c.get("status") == "True")
    await eventually(lambda: world.get(HPA, "keda-hpa-early"), "its HPA")
    replica.check()


async def test_removing_the_pause_annotation_unpauses(
    world: World, operators: Callable[..., Awaitable[Replica]], redis_list: tuple[aioredis.Redis, str]
) -> None:
    """Regression (real cluster): Paused stayed True after the annotation went."""
    _, key = redis_list
    replica = await operators()
    body = scaled_object("worker", "web", key)
    body["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "2"}
    await create(world, body)
    await eventually(lambda: world.condition("worker", "Paused"), "Paused=True", ok=lambda c: c.get("status") == "True")
    await eventually(world.replicas, "the paused replica count", ok=lambda n: n == 2)
    patch = {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": None}}}
    await world.client.patch(SCALED_OBJECT, "worker", patch, namespace=world.ns, patch_type=PatchType.MERGE)
    paused = await eventually(
        lambda: world.condition("worker", "Paused"), "Paused=False", ok=lambda c: c.get("status") == "False"
    )
    assert paused["reason"] == "ScaledObjectUnpaused"
    await eventually(world.replicas, "the empty list to scale 2 -> 0", ok=lambda n: n == 0)
    assert "pausedReplicaCount" not in (await world.get(SCALED_OBJECT, "worker"))["status"]
    replica.check()


async def test_every_replica_is_ready_and_the_leader_labels_its_pod(
    world: World,
    operators: Callable[..., Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --leader-pod-label (the chart's), followers are Ready (a rolling update can proceed) and the chart's
    Service selects the leader by its pod's label."""
    for name in ("op-a", "op-b"):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": world.ns, "labels": {"app": "ebb"}},
            "spec": {"containers": [{"name": "operator", "image": "registry.invalid/ebb:1"}]},
        }
        # A new namespace's default ServiceAccount (which the API server checks a pod for) comes a moment later.
        await eventually(lambda body=pod: world.client.create(POD(body)), f"pod {name} created", ok=lambda _: True)
    monkeypatch.setenv("POD_NAMESPACE", world.ns)
    replicas = {}
    for name in ("op-a", "op-b"):
        monkeypatch.setenv("POD_NAME", name)
        replicas[name] = await operators(leader_pod_label=True)
        await eventually(world.holder, "a leader")  # op-a leads: the first to start

    async def leaders() -> list[str]:
        pods = [to_dict(p) async for p in world.client.list(POD, namespace=world.ns)]
        return sorted(p["metadata"]["name"] for p in pods if (p["metadata"].get("labels") or {}).get(LEADER_LABEL))

    assert await eventually(leaders, "the leader's pod labelled", ok=lambda names: len(names) == 1) == ["op-a"]
    assert [await r.readyz() for r in replicas.values()] == [200, 200]
    await replicas["op-a"].stop()
    await eventually(leaders, "the label on the new leader's pod", ok=lambda names: names == ["op-b"])


async def test_replica_that_loses_the_lease_stops_and_heeds_signals_again(
    world: World, redis_list: tuple[aioredis.Redis, str]
) -> None:
    """In the main thread, as `ebb operator` runs: kopf, while it runs, handles SIGINT/SIGTERM itself.

    kopf shares the test's event loop here: when it stops it cancels the tasks started after it, which in this
    loop are only kmock's connection handlers (the clients connect again).
    """
    redis, key = redis_list
    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    port = free_port()
    replica = asyncio.create_task(operator_main(**main_thread_options(world, port)))
    api = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    try:
        await create(world, scaled_object("worker", "web", key))
        await eventually(world.replicas, "the leader to scale 0 -> 1", ok=lambda n: n == 1)
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # kopf's, while it runs

        # Someone else takes the Lease (as after a long pause of this replica): kopf and the loops stop.
        lease = {"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 60}}
        await world.client.patch(LEASE, "ebb-operator", lease, namespace=world.ns, patch_type=PatchType.MERGE)
        await eventually(lambda: http_status(f"{api}/readyz"), "not ready", ok=lambda status: status == 503)
        metric = f"{api}/apis/external.metrics.k8s.io/v1beta1/namespaces/{world.ns}/s0-redis-{key}"
        url = f"{metric}?labelSelector=scaledobject.keda.sh/name=worker"
        await eventually(lambda: http_status(url), "the loops to stop", ok=lambda status: status == 404)
        # kopf is gone, and so are its signal handlers: SIGTERM ends the process again (as on any follower).
        await eventually(lambda: signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "SIGTERM's default handling")
        assert not replica.done()
    finally:
        replica.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replica
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # whatever a failure left behind


async def test_sigterm_hands_the_lease_over_before_the_shutdown_ends(world: World) -> None:
    """Regression (real cluster): a clean handover took ~9 s. The leader handed the Lease back only after kopf had
    waited 5 s for leftover tasks (an open metrics API connection, as the aggregator keeps one). Now it hands it
    back as soon as its loops have stopped. In the main thread, where kopf handles SIGTERM itself."""
    port = free_port()
    replica = asyncio.create_task(operator_main(**main_thread_options(world, port)))
    loop = asyncio.get_running_loop()
    api = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: http_status(f"{api}/readyz"), "the leader ready", ok=lambda s: s == 200)
            await eventually(lambda: signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "kopf's SIGTERM handler")
            async with session.get(f"{api}/readyz") as response:  # a keep-alive connection stays open
                assert response.status == 200
            os.kill(os.getpid(), signal.SIGTERM)
            started = loop.time()
            await eventually(world.holder, "the Lease handed back", ok=lambda h: h is None, within=10)
            assert loop.time() - started < 2.5
            assert not replica.done()  # kopf is still waiting for the open connection's task
        await asyncio.wait_for(replica, 15)
    finally:
        replica.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replica
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main_thread_options(world: World, port: int) -> dict[str, Any]:
    return {
        "namespaces": world.watch,
        "scaling": "hpa",
        "metrics_api_port": port,
        "metrics_api_auth": "none",
        "cluster_object_namespace": world.ns,
        "leader_election_namespace": world.ns,
        "webhook_port": 0,
        **{f"leader_election_{k}": v for k, v in LEASE_TIMING.items()},
    }


async def http_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status
