"""What a scale target is: somewhere replicas live (a local process group, a Kubernetes /scale subresource).

The runtime only needs to read the desired count, set it and see how many replicas are ready; everything
else (how replicas start, stop and restart) belongs to the target.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

#: Receives one line of a replica's output (or one of ebb's own lines about it) and the replica's name.
OutputSink = Callable[[str, str], None]
#: Receives what a target wants users to see in `ebb events`: (reason, message, type "Normal"|"Warning").
EventSink = Callable[[str, str, Literal["Normal", "Warning"]], None]


@dataclass(frozen=True)
class ChildRecord:
    """One live child process, as the state file records it so that a later ebb can find leftovers."""

    pid: int
    #: The kernel's start time (psutil create_time): a reused pid has another one.
    create_time: float | None


@runtime_checkable
class ScaleTarget(Protocol):
    async def get_replicas(self) -> int:
        """The desired replica count (like /scale .spec.replicas), not how many run now."""
        ...

    async def set_replicas(self, n: int) -> int | None:
        """Ask for `n` replicas. Returns once the change is under way, not when it has converged; a target that
        applied another count (a Kubernetes scale-in held back for busy pods) returns it."""
        ...

    def ready_replicas(self) -> int:
        """How many replicas are running now (terminating and restarting ones excluded)."""
        ...

    async def close(self) -> None:
        """Release the target; a local target stops its replicas gracefully."""
        ...


def write_stdout(name: str, line: str) -> None:
    """The default sink: `[name] line` on standard output."""
    # sys.stdout is looked up per call so that redirection (and pytest's capture) applies.
    sys.stdout.write(f"[{name}] {line}\n")
    sys.stdout.flush()
