"""A Service's ready endpoints, from its EndpointSlices, as the interceptor's pool of replicas.

`service_target_port` finds which endpoint port an HTTPScaledObject's `scaleTargetRef.port` (or `portName`)
means: the Service port with that number (or name), then the EndpointSlice port of the same name, as
kube-proxy maps them. `ready_endpoints` reads the slices; `EndpointPool` gives the interceptor what a local
ReplicaPool gives it (ebb.http.upstream.UpstreamPool): the ready endpoint with the fewest requests in flight,
and a wait that ends as soon as one becomes ready.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ebb.http.pool import Replica

#: A refused endpoint is left out this long (seconds), unless its slice changes first.
REFUSED_PAUSE = 1.0


def service_port_name(service: Mapping[str, Any], port: int | None, port_name: str | None) -> str | None:
    """The name ("" when unnamed) of the Service port `port` or `portName`; None when the Service has no such port."""
    for entry in (service.get("spec") or {}).get("ports") or ():
        name = str(entry.get("name") or "")
        if port_name is not None and name == port_name:
            return name
        if port_name is None and port is not None and entry.get("port") == port:
            return name
    return None


def ready_endpoints(slices: Iterable[Mapping[str, Any]], port_name: str) -> list[tuple[str, int]]:
    """(address, port) of every ready endpoint in `slices` on the slice port named `port_name`.

    An endpoint whose `ready` condition is absent counts as ready (the EndpointSlice API's advice); a
    terminating one is not ready. IPv6 addresses come in brackets, ready for a URL.
    """
    found: list[tuple[str, int]] = []
    for piece in slices:
        number = None
        for entry in piece.get("ports") or ():
            if str(entry.get("name") or "") == port_name and entry.get("port") is not None:
                number = int(entry["port"])
        if number is None:
            continue
        ipv6 = piece.get("addressType") == "IPv6"
        for endpoint in piece.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False:
                continue
            for address in endpoint.get("addresses") or ():
                found.append((f"[{address}]" if ipv6 else str(address), number))
    return found


class EndpointPool:
    """The ready endpoints of one Service port; `update()` follows its slices."""

    def __init__(self) -> None:
        self.replicas: dict[tuple[str, int], Replica] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._rr = itertools.count()
        self._index = itertools.count()

    # --- following the slices --------------------------------------------------------------------------

    def update(self, endpoints: Sequence[tuple[str, int]]) -> None:
        """The ready endpoints now; those that went stop taking requests (the ones sent finish)."""
        wanted = set(endpoints)
        for key, replica in list(self.replicas.items()):
            if key not in wanted:
                replica.gone = True
                replica.ready = False
                del self.replicas[key]
        for host, port in endpoints:
            known = self.replicas.get((host, port))
            if known is None:
                self.replicas[(host, port)] = Replica(next(self._index), port, 0, host, ready=True)
            else:
                known.ready = True  # a slice change brings back a refused endpoint at once
        self._wake()

    def _wake(self) -> None:
        if self.ready_count():
            for waiter in list(self._waiters):
                if not waiter.done():
                    waiter.set_result(None)

    # --- for the interceptor (ebb.http.upstream.UpstreamPool) ------------------------------------------

    def pick(self) -> Replica | None:
        best: list[Replica] = []
        least = -1
        for replica in self.replicas.values():
            if not replica.ready:
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
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                return None
            finally:
                self._waiters.discard(waiter)

    def refused(self, replica: Replica) -> None:
        """Its pod is going (or not listening yet): out for REFUSED_PAUSE seconds, or until the slice changes."""
        replica.ready = False

        def back() -> None:
            if not replica.gone and self.replicas.get((replica.host, replica.port)) is replica:
                replica.ready = True
                self._wake()

        asyncio.get_running_loop().call_later(REFUSED_PAUSE, back)

    def ready_count(self) -> int:
        return sum(1 for r in self.replicas.values() if r.ready)

    def in_flight(self, from_index: int = 0) -> int:
        return sum(r.in_flight for r in self.replicas.values() if r.index >= from_index)

    @property
    def waiting(self) -> int:
        return len(self._waiters)
