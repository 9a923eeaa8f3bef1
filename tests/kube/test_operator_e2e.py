"""`ebb operator` end to end: the real `operator_main` (kopf, leader election, the metrics API) against kmock.

kmock fakes the Kubernetes API server (there is no kube-controller-manager: no real HPA, no pods). The operator
logs in as it does on a machine, from a kubeconfig named by KUBECONFIG, both kopf and lightkube; kopf finds
the CRDs by API discovery, served from deploy/crds. The tests act as `kubectl` through the API and assert on
what the operator leaves in the fake cluster. The trigger is real: a Redis list on the local server.
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
from pathlib import Path
from typing import Any

import aiohttp
import kmock as km
import pytest
import redis.asyncio as aioredis
from lightkube.types import PatchType

from ebb.kube.client import SCALED_OBJECT, AsyncClient, client_for_url
from ebb.kube.leader import LEASE
from ebb.kube.runner import operator_main

from ._fakecluster import Cluster, eventually, use_kubeconfig

NS = "ns"
LEASE_NS = "ebb"
SO_RES = km.resource("keda.sh/v1alpha1/scaledobjects")
DEPLOY_RES = km.resource("apps/v1/deployments")
HPA_RES = km.resource("autoscaling/v2/horizontalpodautoscalers")
EVENT_RES = km.resource("v1/events")
LEASE_RES = km.resource("coordination.k8s.io/v1/leases")
#: Short Lease timings so that a takeover happens within a second or two.
LEASE_TIMING = {"lease_duration": 2.0, "renew_deadline": 1.5, "retry_period": 0.2}

pytestmark = pytest.mark.kmock(cls=Cluster)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "app"}]}}},
        "status": {"replicas": replicas},
    }


@pytest.fixture
def cluster(kmock: Cluster) -> Cluster:
    """Built-in resources the operator uses, ebb's CRDs as a cluster serves them, and two Deployments."""
    kmock.serve(DEPLOY_RES, HPA_RES, EVENT_RES, LEASE_RES, "v1/secrets", "v1/configmaps", "batch/v1/jobs")
    kmock.add_namespaces(NS, LEASE_NS)
    kmock.install_crds()
    kmock.objects[DEPLOY_RES, NS, "web"] = deployment("web", 0)
    kmock.objects[DEPLOY_RES, NS, "api"] = deployment("api", 0)
    return kmock


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """How both kopf and lightkube log in on a workstation: KUBECONFIG naming a file."""
    return use_kubeconfig(cluster, tmp_path, monkeypatch)


@pytest.fixture
async def kubectl(cluster: Cluster) -> AsyncIterator[AsyncClient]:
    """The user's side: creates and deletes ScaledObjects through the API, as kubectl would."""
    client = client_for_url(str(cluster.url))
    yield client
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


class Replica:
    """One operator pod: `operator_main` in a thread with its own event loop, `api` its metrics API.

    A thread, not a task beside the test's: kopf takes the event loop for its own, and when it stops it cancels
    every task started after it, which would include the other replica's and the test's own.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.api = f"http://127.0.0.1:{options['metrics_api_port']}"
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
        url = f"{self.api}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{metric}"
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
async def operators(kubeconfig: Path) -> AsyncIterator[Callable[[], Awaitable[Replica]]]:
    """Starts operator replicas as `ebb operator` runs them (leader election on); stops them after the test."""
    started: list[Replica] = []

    async def start() -> Replica:
        options: dict[str, Any] = {
            "namespaces": [],
            "scaling": "hpa",
            "metrics_api_port": free_port(),
            "metrics_api_auth": "none",
            "cluster_object_namespace": LEASE_NS,
            "leader_election": True,
            "leader_election_namespace": LEASE_NS,
            "webhook_port": 0,  # off: the replicas would share 9443
            **{f"leader_election_{k}": v for k, v in LEASE_TIMING.items()},
        }
        replica = Replica(options)
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


def obj(cluster: Cluster, res: km.resource, name: str, namespace: str | None = NS) -> dict[str, Any]:
    """The live object, or KeyError while it does not exist."""
    found = cluster.objects[res, namespace, name]
    if found.deleted:
        raise KeyError(name)
    return dict(found.raw)


def gone(cluster: Cluster, res: km.resource, name: str) -> bool:
    return (res, NS, name) not in cluster.objects or cluster.objects[res, NS, name].deleted


def replicas(cluster: Cluster, name: str = "web") -> int:
    value: int = obj(cluster, DEPLOY_RES, name)["spec"]["replicas"]
    return value


def condition(cluster: Cluster, name: str, kind: str = "Ready") -> dict[str, Any]:
    for cond in (obj(cluster, SO_RES, name).get("status") or {}).get("conditions") or ():
        if cond["type"] == kind:
            return dict(cond)
    return {}


def events(cluster: Cluster, name: str) -> list[str]:
    return [
        o.raw["reason"]
        for (res, _, _), o in cluster.objects.items()
        if res == EVENT_RES and not o.deleted and o.raw["involvedObject"]["name"] == name
    ]


def holder(cluster: Cluster) -> str | None:
    try:
        value: str | None = obj(cluster, LEASE_RES, "ebb-operator", LEASE_NS)["spec"].get("holderIdentity")
        return value
    except KeyError:
        return None


def scaled_object(name: str, target: str, key: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": NS},
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


async def create(kubectl: AsyncClient, body: dict[str, Any]) -> None:
    await kubectl.create(SCALED_OBJECT(body))


async def leader_and_follower(cluster: Cluster, a: Replica, b: Replica) -> tuple[Replica, Replica]:
    """Waits until one of the two leads; returns (leader, follower) as their readiness tells."""
    await eventually(lambda: holder(cluster), "a replica to take the Lease")
    statuses = await eventually(
        lambda: asyncio.gather(a.readyz(), b.readyz()),
        "exactly one replica ready",
        ok=lambda s: sorted(s) == [200, 503],
    )
    return (a, b) if statuses[0] == 200 else (b, a)


async def test_one_of_two_replicas_leads_and_scales_against_fake_apiserver(
    cluster: Cluster,
    kubectl: AsyncClient,
    operators: Callable[[], Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    redis, key = redis_list
    a, b = await operators(), await operators()
    leader, follower = await leader_and_follower(cluster, a, b)
    await create(kubectl, scaled_object("worker", "web", key))

    hpa = await eventually(lambda: obj(cluster, HPA_RES, "keda-hpa-worker"), "the HPA")
    so = obj(cluster, SO_RES, "worker")
    assert "finalizer.keda.sh" in so["metadata"]["finalizers"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == f"s0-redis-{key}"
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == so["metadata"]["uid"]
    await eventually(lambda: condition(cluster, "worker").get("status") == "True", "Ready=True")
    await eventually(lambda: "KEDAScalersStarted" in events(cluster, "worker"), "the KEDAScalersStarted Event")

    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    await eventually(lambda: replicas(cluster) == 1, "the Deployment to scale 0 -> 1")
    await eventually(lambda: condition(cluster, "worker", "Active").get("status") == "True", "Active=True")

    # Only the leader runs the loops: it serves the value to the HPA, the follower knows no such metric.
    status, body = await leader.metric(f"s0-redis-{key}", "worker")
    assert (status, body["items"][0]["value"]) == (200, "12")
    status, _ = await follower.metric(f"s0-redis-{key}", "worker")
    assert status == 404
    assert (await leader.readyz(), await follower.readyz()) == (200, 503)
    a.check()
    b.check()


async def test_follower_takes_over_and_keeps_scaling_when_the_leader_stops_against_fake_apiserver(
    cluster: Cluster,
    kubectl: AsyncClient,
    operators: Callable[[], Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis, key = redis_list
    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    a, b = await operators(), await operators()
    leader, follower = await leader_and_follower(cluster, a, b)
    first = holder(cluster)
    await create(kubectl, scaled_object("worker", "web", key))
    await eventually(lambda: replicas(cluster) == 1, "the leader to scale 0 -> 1")

    await leader.stop()  # it hands the Lease back on the way out
    await eventually(lambda: holder(cluster) not in (None, first), "the follower to take the Lease")
    assert obj(cluster, LEASE_RES, "ebb-operator", LEASE_NS)["spec"]["leaseTransitions"] == 1
    # A handover, not a loss: nothing to warn about.
    assert not [r.getMessage() for r in caplog.records if r.name == "ebb.leader" and r.levelno >= logging.WARNING]
    await eventually(lambda: follower.readyz(), "the new leader to report ready", ok=lambda status: status == 200)

    # kopf resumes the existing object on the new leader: its loop scales back in once the list is empty ...
    await redis.delete(key)
    await eventually(lambda: replicas(cluster) == 0, "the new leader to scale 1 -> 0")
    # ... and a ScaledObject created after the takeover is reconciled by it.
    await create(kubectl, scaled_object("api-worker", "api", key))
    hpa = await eventually(lambda: obj(cluster, HPA_RES, "keda-hpa-api-worker"), "the new object's HPA")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api"
    follower.check()


async def test_deleted_scaled_object_restores_replicas_and_goes_against_fake_apiserver(
    cluster: Cluster,
    kubectl: AsyncClient,
    operators: Callable[[], Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    _, key = redis_list
    cluster.objects[DEPLOY_RES, NS, "web"].patch({"spec": {"replicas": 3}, "status": {"replicas": 3}})
    replica = await operators()
    await create(kubectl, scaled_object("worker", "web", key, advanced={"restoreToOriginalReplicaCount": True}))
    await eventually(lambda: obj(cluster, HPA_RES, "keda-hpa-worker"), "the HPA")
    await eventually(lambda: replicas(cluster) == 0, "the empty list to scale 3 -> 0")
    assert obj(cluster, SO_RES, "worker")["status"]["originalReplicaCount"] == 3
    status, _ = await replica.metric(f"s0-redis-{key}", "worker")
    assert status == 200

    await kubectl.delete(SCALED_OBJECT, "worker", namespace=NS)
    # kmock only marks it (deletionTimestamp) while the finalizer holds it; the operator's delete handler
    # restores the count and removes the finalizer, and then the object is gone, and its HPA with it.
    await eventually(lambda: gone(cluster, SO_RES, "worker"), "the ScaledObject to go (finalizer removed)")
    assert replicas(cluster) == 3
    assert gone(cluster, HPA_RES, "keda-hpa-worker")
    assert "ScaledObjectDeleted" in events(cluster, "worker")
    status, _ = await replica.metric(f"s0-redis-{key}", "worker")
    assert status == 404
    replica.check()


async def test_broken_scaled_object_does_not_stop_a_good_one_against_fake_apiserver(
    cluster: Cluster,
    kubectl: AsyncClient,
    operators: Callable[[], Awaitable[Replica]],
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    redis, key = redis_list
    replica = await operators()
    broken = scaled_object("broken", "api", key)
    broken["spec"]["triggers"][0]["type"] = "no-such-scaler"
    await create(kubectl, broken)
    await create(kubectl, scaled_object("worker", "web", key))

    ready = await eventually(
        lambda: condition(cluster, "broken"),
        "Ready=False on the broken object",
        ok=lambda c: c.get("status") == "False",
    )
    assert ready["reason"] == "ScaledObjectCheckFailed"
    assert "spec.triggers[0].type" in ready["message"]
    assert "no-such-scaler" in ready["message"]
    await eventually(lambda: "ScaledObjectCheckFailed" in events(cluster, "broken"), "a Warning Event on it")
    assert gone(cluster, HPA_RES, "keda-hpa-broken")

    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    await eventually(lambda: replicas(cluster, "web") == 1, "the good object to scale 0 -> 1")
    assert condition(cluster, "worker")["status"] == "True"
    assert replicas(cluster, "api") == 0
    replica.check()


async def test_replica_that_loses_the_lease_stops_and_heeds_signals_again_against_fake_apiserver(
    cluster: Cluster,
    kubectl: AsyncClient,
    kubeconfig: Path,
    redis_list: tuple[aioredis.Redis, str],
) -> None:
    """In the main thread, as `ebb operator` runs: kopf, while it runs, handles SIGINT/SIGTERM itself.

    kopf shares the test's event loop here: when it stops it cancels the tasks started after it, which in this
    loop are only kmock's connection handlers (the clients connect again).
    """
    redis, key = redis_list
    await redis.rpush(key, *[f"job{i}" for i in range(12)])
    port = free_port()
    replica = asyncio.create_task(
        operator_main(
            namespaces=[],
            scaling="hpa",
            metrics_api_port=port,
            metrics_api_auth="none",
            cluster_object_namespace=LEASE_NS,
            leader_election_namespace=LEASE_NS,
            webhook_port=0,
            **{f"leader_election_{k}": v for k, v in LEASE_TIMING.items()},
        )
    )
    api = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    try:
        await create(kubectl, scaled_object("worker", "web", key))
        await eventually(lambda: replicas(cluster) == 1, "the leader to scale 0 -> 1")
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # kopf's, while it runs

        # Someone else takes the Lease (as after a long pause of this replica): kopf and the loops stop.
        lease = {"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 60}}
        await kubectl.patch(LEASE, "ebb-operator", lease, namespace=LEASE_NS, patch_type=PatchType.MERGE)
        await eventually(lambda: http_status(f"{api}/readyz"), "not ready", ok=lambda status: status == 503)
        metric = f"{api}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/s0-redis-{key}"
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


async def http_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def test_sigterm_hands_the_lease_over_before_the_shutdown_ends_against_fake_apiserver(
    cluster: Cluster, kubeconfig: Path
) -> None:
    """Regression (real cluster): a clean handover took ~9 s. The leader handed the Lease back only after kopf had
    waited 5 s for leftover tasks (an open metrics API connection, as the aggregator keeps one). Now it hands it
    back as soon as its loops have stopped. In the main thread, where kopf handles SIGTERM itself."""
    port = free_port()
    replica = asyncio.create_task(
        operator_main(
            namespaces=[],
            scaling="hpa",
            metrics_api_port=port,
            metrics_api_auth="none",
            cluster_object_namespace=LEASE_NS,
            leader_election_namespace=LEASE_NS,
            webhook_port=0,
            **{f"leader_election_{k}": v for k, v in LEASE_TIMING.items()},
        )
    )
    loop = asyncio.get_running_loop()
    api = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            status = await eventually(lambda: http_status(f"{api}/readyz"), "the leader ready", ok=lambda s: s == 200)
            assert status == 200
            await eventually(lambda: signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "kopf's SIGTERM handler")
            async with session.get(f"{api}/readyz") as response:  # a keep-alive connection stays open
                assert response.status == 200
            os.kill(os.getpid(), signal.SIGTERM)
            started = loop.time()
            await eventually(lambda: holder(cluster) is None, "the Lease handed back", within=10)
            assert loop.time() - started < 2.5
            assert not replica.done()  # kopf is still waiting for the open connection's task
        await asyncio.wait_for(replica, 15)
    finally:
        replica.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replica
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
