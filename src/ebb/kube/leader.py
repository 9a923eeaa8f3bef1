"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it.

One operator replica holds the Lease and runs the scaling loops; the others keep checking and take over when
the holder stops renewing. A follower judges expiry by its own clock, from when it last saw the Lease change
(not from the holder's renewTime), so clock skew between nodes does not matter. Writes carry the
resourceVersion read before: the API server answers 409 Conflict when someone else wrote first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lightkube.types import PatchType

from ebb.kube.client import API_ERRORS, POD, AsyncClient, api_message, is_not_found, namespaced, status_code, to_dict

log = logging.getLogger("ebb.leader")

LEASE = namespaced("coordination.k8s.io", "v1", "Lease", "leases")
#: The label the leader puts on its own pod: the chart's Service selects it, so that the API aggregator and the
#: API server's webhook calls reach the leader while every replica is Ready (a rolling update can proceed).
LEADER_LABEL = "ebb.dev/leader"
DEFAULT_LEASE_NAME = "ebb-operator"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

T = TypeVar("T")


def default_namespace() -> str:
    """POD_NAMESPACE, else the service account's namespace, else "default"."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        text = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if text:
            return text
    return "default"


def default_identity() -> str:
    """The pod's name (POD_NAME, else the hostname) and a random suffix, unique per process."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"


def micro_time(t: float) -> str:
    """A Kubernetes MicroTime."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires and renews one Lease. `step()` is one attempt; `run()` repeats it every `retry_period`.

    The leader gives up when it has not renewed for `renew_deadline` (shorter than `lease_duration`, so it
    stops before anyone else may start), or at once when a write conflicts (someone else won).
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        name: str = DEFAULT_LEASE_NAME,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self._resigned = False
        #: One read-and-write of the Lease at a time: a renew under way when `resign()` is called finishes before
        #: the release reads the Lease (else the release's write conflicts with it, or the renew takes the
        #: released Lease back; seen on v1.28.0 and on the fake API server).
        self._lock = asyncio.Lock()
        #: The attempt under way at `resign()` took or kept the Lease (the release hands it back all the same).
        self._held_at_resign = False

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def resigned(self) -> bool:
        """True after `resign()`: this elector will not lead again."""
        return self._resigned

    @property
    def holder(self) -> str | None:
        """Who holds the Lease, as last seen."""
        return (self._observed or {}).get("holderIdentity") or None

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()

    def _set_leading(self, leading: bool, *, released: bool = False) -> None:
        if leading == self.is_leader:
            return
        if leading:
            log.info("%s: acquired the lease %s/%s", self.identity, self.namespace, self.name)
            self._following.clear()
            self._leading.set()
        else:
            if released:  # handed back on shutdown: nothing went wrong
                log.info("%s: releasing the lease %s/%s", self.identity, self.namespace, self.name)
            else:
                log.warning("%s: lost the lease %s/%s", self.identity, self.namespace, self.name)
            self._leading.clear()
            self._following.set()

    def _record(self, now: float, previous: dict[str, Any] | None) -> dict[str, Any]:
        mine = previous is not None and previous.get("holderIdentity") == self.identity
        transitions = int((previous or {}).get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": (previous or {}).get("acquireTime") if mine else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions if mine or previous is None else transitions + 1,
        }

    def _observe(self, spec: dict[str, Any], now: float) -> None:
        if spec != self._observed:
            self._observed = spec
            self._observed_at = now

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease. True when this elector holds it afterwards."""
        now = self.clock()
        try:
            lease = to_dict(await self.client.get(LEASE, self.name, namespace=self.namespace))
        except API_ERRORS as exc:
            if not is_not_found(exc):
                raise
            spec = self._record(now, None)
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
            body["metadata"] = {"name": self.name, "namespace": self.namespace}
            try:
                await self.client.create(LEASE(body))
            except API_ERRORS as create_exc:
                if status_code(create_exc) == 409:  # another replica created it first
                    return False
                raise
            self._observe(spec, now)
            return True
        spec = dict(lease.get("spec") or {})
        self._observe(spec, now)
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > now:
            return False
        new = self._record(now, spec)
        patch = {"metadata": {"resourceVersion": (lease.get("metadata") or {}).get("resourceVersion")}, "spec": new}
        try:
            await self.client.patch(LEASE, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)
        except API_ERRORS as exc:
            if status_code(exc) == 409:  # someone else wrote the Lease since we read it
                return False
            raise
        self._observe(new, now)
        return True

    async def step(self) -> bool:
        """`try_acquire_or_renew` plus the leading state: a conflict or an expired renew deadline ends leading."""
        async with self._lock:
            if self._resigned:
                return False
            held: bool | None
            try:
                held = await self.try_acquire_or_renew()
            except Exception as exc:  # API or network trouble: try again next period, the deadline decides
                message = api_message(exc) if isinstance(exc, API_ERRORS) else repr(exc)
                log.warning("%s: lease %s/%s: %s", self.identity, self.namespace, self.name, message)
                held = None
            if self._resigned:  # resigned while this attempt ran: the release that waits for it hands it back
                self._held_at_resign = bool(held)
                return False
            return self._after_attempt(held)

    def _after_attempt(self, held: bool | None) -> bool:
        now = self.clock()
        if held:
            self._renewed_at = now
            self._set_leading(True)
        else:
            overdue = self._renewed_at is None or now - self._renewed_at > self.renew_deadline
            if held is False or overdue:
                self._set_leading(False)
        return self.is_leader

    async def run(self) -> None:
        """Keep trying every `retry_period` until cancelled; the leader then hands the Lease back."""
        try:
            while True:
                await self.step()
                await asyncio.sleep(self.retry_period)
        finally:
            if self.is_leader:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.release())

    async def resign(self) -> None:
        """Hand the Lease back now and never take it again (a clean shutdown, once the work has stopped): the
        others take over at their next check, not after the rest of the shutdown."""
        self._resigned = True
        await self.release()

    async def release(self) -> None:
        """Give the Lease up (holder cleared, 1 s duration) so a follower takes over without waiting."""
        async with self._lock:
            await self._release()

    async def _release(self) -> None:
        was_leader = self.is_leader or self._held_at_resign
        self._held_at_resign = False
        self._set_leading(False, released=True)
        if not was_leader:
            return
        try:
            lease = to_dict(await self.client.get(LEASE, self.name, namespace=self.namespace))
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = self.clock()
            patch = {
                "metadata": {"resourceVersion": (lease.get("metadata") or {}).get("resourceVersion")},
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time(now)},
            }
            await self.client.patch(LEASE, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)
        except API_ERRORS as exc:
            log.warning("%s: cannot release the lease: %s", self.identity, api_message(exc))


class LeaderPodLabel:
    """Marks the leader's pod with LEADER_LABEL=true while it leads, and no other pod of its namespace."""

    def __init__(self, client: AsyncClient, *, namespace: str, pod: str) -> None:
        self.client = client
        self.namespace = namespace
        self.pod = pod

    async def _set(self, name: str, value: str | None) -> None:
        patch = {"metadata": {"labels": {LEADER_LABEL: value}}}
        await self.client.patch(POD, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE)

    async def mark(self) -> None:
        """Take the label from any other pod (a leader that lost the Lease without noticing), then put it on
        this one. Failures are logged: the Lease, not the label, decides who scales."""
        try:
            async for other in self.client.list(POD, namespace=self.namespace, labels={LEADER_LABEL: "true"}):
                name = str(to_dict(other).get("metadata", {}).get("name") or "")
                if name and name != self.pod:
                    await self._set(name, None)
            await self._set(self.pod, "true")
        except API_ERRORS as exc:
            log.warning("cannot label pod %s/%s as the leader: %s", self.namespace, self.pod, api_message(exc))

    async def unmark(self) -> None:
        try:
            await self._set(self.pod, None)
        except API_ERRORS as exc:
            if not is_not_found(exc):
                log.warning("cannot unlabel pod %s/%s: %s", self.namespace, self.pod, api_message(exc))


async def run_as_leader(
    elector: LeaderElector,
    work: Callable[[asyncio.Event], Awaitable[T]],
    *,
    on_lost: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Run `work(stop_flag)` whenever `elector` leads. When the Lease is lost: `on_lost()`, set the stop flag,
    wait for `work` to end, and wait to lead again. Returns what `work` returns when it ends on its own."""
    election = asyncio.create_task(elector.run(), name="ebb:leader-election")
    task: asyncio.Future[T] | None = None
    try:
        while True:
            leading = asyncio.create_task(elector.wait_leading())
            await asyncio.wait({leading, election}, return_when=asyncio.FIRST_COMPLETED)
            if election.done():
                leading.cancel()
                election.result()  # raises what ended it
                raise RuntimeError("leader election stopped")
            stop = asyncio.Event()
            task = asyncio.ensure_future(work(stop))
            lost = asyncio.create_task(elector.wait_following())
            await asyncio.wait({task, lost, election}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            if task.done():
                return task.result()
            if on_lost is not None:
                await on_lost()
            stop.set()
            result = await task
            task = None
            if elector.resigned:  # handed over on the way out: done, not waiting to lead again
                return result
    finally:
        # The work stops before the Lease is handed back, so two replicas never run it at once.
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election
