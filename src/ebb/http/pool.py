"""A ProcessGroup's replicas as the interceptor sees them: a port each, readiness, requests in flight.

Replica `i` of a group routed on port P listens on P + i (its environment says so: PORT and EBB_PORT). It is
ready once a TCP connect to that port succeeds, or, with a readiness path, once a GET of that path answers
below 400; it stops being ready when its process is no longer running or a connection to it is refused.
When the ProcessGroup declares a readinessProbe, the group's probe decides instead.
Requests go to the ready replica with the fewest requests in flight.

`DrainingTarget` wraps the group for the scaling loop: on scale-in, the replicas that will go stop receiving
new requests at once, and SIGTERM reaches them only when their in-flight requests have finished (or after
the group's terminationGracePeriodSeconds); a scale-out in the meantime takes them back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from ebb.targets.process import ProcessGroupTarget

log = logging.getLogger("ebb.http")

LOOPBACK = "127.0.0.1"
#: While a replica is starting (or a request waits), readiness is probed this often (seconds).
FAST_PROBE = 0.005
#: Otherwise the group's processes are looked at this often, to notice exits.
SLOW_PROBE = 0.2
PROBE_TIMEOUT = 1.0


@dataclass(eq=False)
class Replica:
    index: int
    port: int
    pid: int
    host: str = LOOPBACK
    ready: bool = False
    #: Gone: its process exited or was replaced; requests already sent to it finish, no new ones come.
    gone: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def acquire(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self.idle.set()


def replica_port(base_port: int, index: int) -> int:
    return base_port + index


def replica_env(base_port: int, index: int) -> Mapping[str, str]:
    """What a replica is told about its port."""
    port = str(replica_port(base_port, index))
    return {"PORT": port, "EBB_PORT": port}


class ReplicaPool:
    """Readiness and load of one group's replicas; `run()` probes until cancelled."""

    def __init__(
        self,
        group: ProcessGroupTarget,
        base_port: int,
        *,
        host: str = LOOPBACK,
        readiness_path: str | None = None,
    ) -> None:
        self.group = group
        self.base_port = base_port
        self.host = host
        self.readiness_path = readiness_path
        self.replicas: dict[int, Replica] = {}
        #: Replicas with an index at or above this take no new requests (they are being scaled in).
        self.limit: int | None = None
        self._changed = asyncio.Event()
        self._waiters: set[asyncio.Future[None]] = set()
        self._rr = itertools.count()
        self._session: aiohttp.ClientSession | None = None

    # --- for the interceptor ------------------------------------------------------------------------

    def _serving(self, replica: Replica) -> bool:
        return replica.ready and not replica.gone and (self.limit is None or replica.index < self.limit)

    def pick(self) -> Replica | None:
        """The ready replica with the fewest requests in flight (ties in turn), acquired; None if none is ready."""
        best: list[Replica] = []
        least = -1
        for replica in self.replicas.values():
            if not self._serving(replica):
                continue
            if not best or replica.in_flight < least:
                best, least = [replica], replica.in_flight
            elif replica.in_flight == least:
                best.append(replica)
        if not best:
            return None
        chosen = best[next(self._rr) % len(best)] if len(best) > 1 else best[0]
        chosen.acquire()
        return chosen

    async def wait(self, within: float | None) -> Replica | None:
        """A replica as soon as one is ready (acquired), or None after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while True:
            replica = self.pick()
            if replica is not None:
                return replica
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            self._changed.set()
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                return None
            finally:
                self._waiters.discard(waiter)

    def refused(self, replica: Replica) -> None:
        """A connection to `replica` was refused: it is not ready after all (probing finds it again)."""
        replica.ready = False
        self._changed.set()

    def ready_count(self) -> int:
        return sum(1 for r in self.replicas.values() if self._serving(r))

    def in_flight(self, from_index: int = 0) -> int:
        return sum(r.in_flight for r in self.replicas.values() if r.index >= from_index)

    def kick(self) -> None:
        self._changed.set()

    async def drained(self, from_index: int) -> None:
        """Until no replica at or above `from_index` has a request in flight."""
        while True:
            busy = [r for r in self.replicas.values() if r.index >= from_index and r.in_flight > 0]
            if not busy:
                return
            await asyncio.gather(*(r.idle.wait() for r in busy))

    # --- probing -----------------------------------------------------------------------------------

    def _wake_waiters(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)

    def sync(self) -> None:
        """Follow the group's processes: a new process is a new replica, not ready until probed."""
        running: dict[int, int] = {}
        for status in self.group.status():
            if status.state == "running" and status.pid is not None:
                running[status.index] = status.pid
        for index, replica in list(self.replicas.items()):
            if running.get(index) != replica.pid:
                replica.gone = True
                replica.ready = False
                del self.replicas[index]
        for index, pid in running.items():
            if index not in self.replicas:
                self.replicas[index] = Replica(index, replica_port(self.base_port, index), pid, self.host)

    async def _probe(self, replica: Replica) -> bool:
        if self.readiness_path is None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    _, writer = await asyncio.open_connection(replica.host, replica.port)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT))
        try:
            async with self._session.get(replica.url + self.readiness_path, allow_redirects=False) as response:
                return response.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def probe_once(self) -> bool:
        """Sync with the group and probe every replica not ready yet; True if any is still starting.

        A group with a readinessProbe of its own decides readiness: the pool follows it, both ways."""
        self.sync()
        if self.group.readiness_probe is not None:
            became_ready = False
            for replica in self.replicas.values():
                ready = self.group.worker_ready(replica.index) and not replica.gone
                became_ready |= ready and not replica.ready
                replica.ready = ready
            if became_ready:
                self._wake_waiters()
            return any(not r.ready for r in self.replicas.values())
        pending = [r for r in self.replicas.values() if not r.ready]
        if pending:
            results = await asyncio.gather(*(self._probe(r) for r in pending))
            became_ready = False
            for replica, ok in zip(pending, results, strict=True):
                if ok and not replica.gone:
                    replica.ready = True
                    became_ready = True
            if became_ready:
                self._wake_waiters()
        return any(not r.ready for r in self.replicas.values())

    async def run(self) -> None:
        try:
            while True:
                self._changed.clear()
                starting = await self.probe_once()
                fast = starting or bool(self._waiters)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FAST_PROBE if fast else SLOW_PROBE):
                        await self._changed.wait()
        finally:
            if self._session is not None:
                await self._session.close()


class DrainingTarget:
    """The ProcessGroup, as the scaling loop sets it: scale-in waits for in-flight requests before SIGTERM."""

    def __init__(self, group: ProcessGroupTarget, pool: ReplicaPool) -> None:
        self.group = group
        self.pool = pool
        self.name = group.name
        self._desired: int | None = None
        self._draining: asyncio.Task[None] | None = None
        if group.busy_probe is not None:
            # The group drains by its busyProbe (idle replicas first, busy ones once idle): this target defers to
            # it; a draining replica leaves the pool as soon as the group says so.
            group.listeners.append(pool.sync)

    async def get_replicas(self) -> int:
        return self._desired if self._desired is not None else await self.group.get_replicas()

    async def set_replicas(self, n: int) -> None:
        self._desired = n
        if self._draining is not None:
            self._draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._draining
            self._draining = None
        current = await self.group.get_replicas()
        if self.group.busy_probe is not None:
            self.pool.limit = None
            await self.group.set_replicas(n)
            self.pool.sync()
            self.pool.kick()
            return
        if n >= current:
            self.pool.limit = None
            await self.group.set_replicas(n)
            self.pool.kick()
            return
        self.pool.limit = n
        self._draining = asyncio.create_task(self._scale_in(n), name=f"ebb-http-drain-{self.name}")

    async def _scale_in(self, n: int) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.group.termination_grace_period):
                await self.pool.drained(n)
        await self.group.set_replicas(n)
        # The stopped replicas leave the pool before the limit goes: none of them can be picked in between.
        self.pool.sync()
        self.pool.limit = None
        self.pool.kick()

    def ready_replicas(self) -> int:
        return self.pool.ready_count()

    async def cancel(self) -> None:
        """Forget a scale-in under way (the runtime is stopping every replica anyway)."""
        if self._draining is not None:
            self._draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._draining
            self._draining = None

    async def close(self) -> None:
        await self.cancel()
        await self.group.close()
