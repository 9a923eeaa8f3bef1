"""Leader election over a Lease, against kmock (a fake Kubernetes API server).

kmock does not implement optimistic concurrency, so a small subclass does what the API server does for
Leases: every write gets a new resourceVersion, and a write carrying an older one is refused with 409.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import kmock as km
import pytest

from ebb.kube.client import AsyncClient, client_for_url
from ebb.kube.leader import LEADER_LABEL, LeaderElector, LeaderPodLabel, run_as_leader

LEASE_RES = km.resource("coordination.k8s.io/v1/leases")
POD_RES = km.resource("v1/pods")
NS = "ebb"


class VersionedEmulator(km.KubernetesEmulator):
    """kmock plus resourceVersion preconditions on Leases."""

    _versions = itertools.count(1)
    #: Seconds each of the next writes of a Lease is held before it is applied (a slow API server), in order.
    write_delays: list[float] = []

    async def _handle(self, request: km.Request) -> Any:
        writes = (km.action.CREATE, km.action.UPDATE)
        if request.resource == LEASE_RES and request.action in writes and self.write_delays:
            await asyncio.sleep(self.write_delays.pop(0))
        if request.resource == LEASE_RES and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == km.action.UPDATE:
                key = (LEASE_RES, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    current = (self.objects[key].raw.get("metadata") or {}).get("resourceVersion")
                    if meta.get("resourceVersion") not in (None, current):
                        raise km.KubernetesError(status=409, reason="Conflict", message="the object has been modified")
            if request.action in (km.action.CREATE, km.action.UPDATE):
                meta["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)


pytestmark = pytest.mark.kmock(cls=VersionedEmulator)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cluster(kmock: km.KubernetesEmulator) -> km.KubernetesEmulator:
    kmock.resources[LEASE_RES] = {}
    kmock.resources[POD_RES] = {}
    return kmock


@pytest.fixture
async def clients(cluster: km.KubernetesEmulator) -> AsyncIterator[list[AsyncClient]]:
    made = [client_for_url(str(cluster.url)) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


def electors(clients: list[AsyncClient], clock: Clock, **kwargs: Any) -> tuple[LeaderElector, LeaderElector]:
    options = {"lease_duration": 15.0, "renew_deadline": 10.0, "retry_period": 5.0, **kwargs}
    a = LeaderElector(clients[0], namespace=NS, identity="a", clock=clock, **options)
    b = LeaderElector(clients[1], namespace=NS, identity="b", clock=clock, **options)
    return a, b


def lease(cluster: km.KubernetesEmulator) -> dict[str, Any]:
    return dict(cluster.objects[LEASE_RES, NS, "ebb-operator"].raw)


async def test_only_one_of_two_electors_leads_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, b = electors(clients, clock)
    assert await a.step()
    assert not await b.step()
    for _ in range(3):
        clock.now += 5
        assert await a.step()
        assert not await b.step()
    spec = lease(cluster)["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["renewTime"] == "2023-11-14T22:13:35.000000Z"
    assert b.holder == "a"


async def test_follower_takes_over_after_the_lease_expires_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, b = electors(clients, clock)
    assert await a.step()
    assert not await b.step()  # b first sees the Lease now
    clock.now += 14
    assert not await b.step()  # a stopped renewing, but 15 s have not passed since b saw it change
    clock.now += 2
    assert await b.step()
    spec = lease(cluster)["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    # a comes back: the Lease is b's and freshly renewed, so a is no longer the leader.
    assert not await a.step()
    assert not a.is_leader and b.is_leader


async def test_conflicting_write_means_someone_else_won_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, b = electors(clients, clock)
    assert await a.step()
    assert not await b.step()
    clock.now += 16  # from b's point of view the Lease has expired
    real_get = clients[1].get

    async def get_then_a_renews(*args: Any, **kwargs: Any) -> Any:
        found = await real_get(*args, **kwargs)
        assert await a.step()  # a renews between b's read and b's write
        return found

    clients[1].get = get_then_a_renews  # type: ignore[method-assign]
    assert not await b.step()
    assert lease(cluster)["spec"]["holderIdentity"] == "a"
    assert a.is_leader and not b.is_leader


async def test_leader_that_cannot_renew_steps_down_after_the_deadline_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, _ = electors(clients, clock)
    assert await a.step()
    cluster["get", LEASE_RES] << 500 << {"kind": "Status", "code": 500, "message": "etcd is down"}
    clock.now += 5
    assert await a.step()  # one failed renewal: still within renewDeadline
    clock.now += 6
    assert not await a.step()


async def test_released_lease_is_taken_at_once_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, b = electors(clients, clock)
    assert await a.step()
    assert not await b.step()
    await a.release()
    assert not a.is_leader
    assert "holderIdentity" not in lease(cluster)["spec"]
    assert await b.step()


async def test_resigned_elector_hands_the_lease_over_and_never_takes_it_again_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a, b = electors(clients, clock)
    assert await a.step()
    await a.resign()
    assert (a.is_leader, a.resigned) == (False, True)
    assert "holderIdentity" not in lease(cluster)["spec"]
    clock.now += 60
    assert not await a.step()  # the Lease is free, but a is on its way out
    assert await b.step()


@pytest.mark.parametrize("leading", [True, False])
async def test_resign_during_a_renew_waits_for_it_then_hands_the_lease_back_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient], caplog: pytest.LogCaptureFixture, leading: bool
) -> None:
    """A renew (or a first acquire) whose write is still on its way when the operator shuts down: the release
    waits for it, then hands the Lease back; it never conflicts with it, and the renew never takes the Lease back
    (seen on v1.28.0: "cannot release the lease: the object has been modified", the holder kept)."""
    clock = Clock()
    a, b = electors(clients, clock)
    if leading:
        assert await a.step()
    assert isinstance(cluster, VersionedEmulator)
    # The attempt's write lands at 0.3 s; the release's, read before that without the lock, lands after it.
    cluster.write_delays = [0.3, 0.5]
    attempt = asyncio.create_task(a.step())
    await asyncio.sleep(0.1)  # the attempt has read the Lease and its write is held by the server
    with caplog.at_level(logging.INFO, logger="ebb.leader"):
        await a.resign()
        assert not await attempt
    assert not a.is_leader
    assert "holderIdentity" not in lease(cluster)["spec"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [r for r in caplog.records if "acquired" in r.getMessage()]
    assert await b.step()  # taken over at once


async def test_run_as_leader_returns_when_the_work_resigns_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    """A clean shutdown hands the Lease over from inside the work (kopf's cleanup), before the work ends."""
    elector = LeaderElector(
        clients[0], namespace=NS, identity="a", lease_duration=0.6, renew_deadline=0.4, retry_period=0.05
    )
    released = asyncio.Event()

    async def work(stop: asyncio.Event) -> str:
        await elector.resign()
        released.set()
        await asyncio.sleep(0.2)  # the rest of the shutdown
        return "done"

    task = asyncio.create_task(run_as_leader(elector, work))
    await asyncio.wait_for(released.wait(), 5)
    assert "holderIdentity" not in lease(cluster)["spec"]
    assert await asyncio.wait_for(task, 5) == "done"


async def test_run_as_leader_runs_the_work_on_one_replica_and_hands_over_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    fast = {"lease_duration": 0.6, "renew_deadline": 0.4, "retry_period": 0.05}
    a = LeaderElector(clients[0], namespace=NS, identity="a", **fast)
    b = LeaderElector(clients[1], namespace=NS, identity="b", **fast)
    running: set[str] = set()
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def work(name: str) -> Any:
        async def run(stop: asyncio.Event) -> None:
            running.add(name)
            started[name].set()
            try:
                await stop.wait()
            finally:
                running.discard(name)

        return run

    task_a = asyncio.create_task(run_as_leader(a, work("a")))
    await asyncio.wait_for(started["a"].wait(), 5)
    task_b = asyncio.create_task(run_as_leader(b, work("b")))
    for _ in range(5):
        await asyncio.sleep(0.05)
        assert running == {"a"}
    task_a.cancel()  # a shuts down and releases the Lease
    with pytest.raises(asyncio.CancelledError):
        await task_a
    await asyncio.wait_for(started["b"].wait(), 5)
    assert running == {"b"}
    task_b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task_b


async def test_run_as_leader_stops_the_work_when_the_lease_is_lost_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    clock = Clock()
    a = LeaderElector(clients[0], namespace=NS, identity="a", clock=clock, retry_period=0.01)
    stopped = asyncio.Event()
    lost_called = asyncio.Event()

    async def work(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.set()

    async def on_lost() -> None:
        lost_called.set()

    task = asyncio.create_task(run_as_leader(a, work, on_lost=on_lost))
    await asyncio.wait_for(a.wait_leading(), 5)
    # Someone else takes the Lease (as after a long pause of this replica).
    cluster.objects[LEASE_RES, NS, "ebb-operator"].patch({"spec": {"holderIdentity": "intruder"}})
    await asyncio.wait_for(stopped.wait(), 5)
    assert lost_called.is_set() and not a.is_leader
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_durations_must_nest() -> None:
    with pytest.raises(ValueError, match="retry_period < renew_deadline < lease_duration"):
        LeaderElector(None, namespace=NS, lease_duration=5, renew_deadline=10)  # type: ignore[arg-type]


async def test_leader_labels_its_own_pod_and_no_other_against_fake_apiserver(
    cluster: km.KubernetesEmulator, clients: list[AsyncClient]
) -> None:
    """The chart's Service selects the leader's pod by this label, so every replica can be Ready (a rolling
    update then works with leader election). A label left on a pod whose process lost the Lease is taken away."""
    for name, labels in (("op-old", {LEADER_LABEL: "true", "app": "ebb"}), ("op-new", {"app": "ebb"})):
        cluster.objects[POD_RES, NS, name] = {"metadata": {"name": name, "namespace": NS, "labels": labels}}
    labeler = LeaderPodLabel(clients[0], namespace=NS, pod="op-new")

    def labels(name: str) -> dict[str, str]:
        return dict(cluster.objects[POD_RES, NS, name].raw["metadata"].get("labels") or {})

    await labeler.mark()
    assert labels("op-new") == {"app": "ebb", LEADER_LABEL: "true"}
    assert labels("op-old") == {"app": "ebb"}
    await labeler.unmark()
    assert labels("op-new") == {"app": "ebb"}
