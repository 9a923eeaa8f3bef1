"""What the interceptor needs from a route's replicas, wherever they run.

`ReplicaPool` (local processes, pool.py) and `EndpointPool` (a Service's ready endpoints on Kubernetes,
kube/http_endpoints.py) both provide it.
"""

from __future__ import annotations

from typing import Protocol

from ebb.http.pool import Replica


class UpstreamPool(Protocol):
    def pick(self) -> Replica | None:
        """The ready replica with the fewest requests in flight, acquired; None if none is ready."""

    async def wait(self, within: float | None) -> Replica | None:
        """A replica as soon as one is ready (acquired), or None after `within` seconds."""

    def refused(self, replica: Replica) -> None:
        """A connection to `replica` was refused before anything was sent."""

    def ready_count(self) -> int: ...

    def in_flight(self, from_index: int = 0) -> int: ...
