"""Helpers for runtime tests: a SQLite backlog, manifests around it, and an observer that records."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent

#: A worker that idles until SIGTERM; it exits at once when told to stop.
IDLE_WORKER = "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(3600)"


def make_backlog(path: Path, rows: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS work (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM work")
    conn.executemany("INSERT INTO work DEFAULT VALUES", [()] * rows)
    conn.commit()
    conn.close()


def scaled_group(
    name: str,
    db: Path,
    *,
    per_replica: int = 2,
    max_replicas: int = 4,
    cooldown: int = 1,
    polling: int = 1,
    extra_spec: str = "",
    annotations: str = "",
) -> str:
    """A ProcessGroup of idle workers and a ScaledObject scaling it on the row count of `db`."""
    return textwrap.dedent(f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata:
          name: {name}
        spec:
          command: [{sys.executable!r}, "-c", {IDLE_WORKER!r}]
          terminationGracePeriodSeconds: 2
        ---
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata:
          name: {name}
          annotations: {{{annotations}}}
        spec:
          scaleTargetRef:
            apiVersion: ebb.dev/v1alpha1
            kind: ProcessGroup
            name: {name}
          pollingInterval: {polling}
          cooldownPeriod: {cooldown}
          maxReplicaCount: {max_replicas}
          advanced:
            horizontalPodAutoscalerConfig:
              behavior:
                scaleDown:
                  stabilizationWindowSeconds: 0
        {textwrap.indent(extra_spec, "  ")}
          triggers:
            - type: sqlite
              metadata:
                databasePath: {str(db)!r}
                query: SELECT count(*) FROM work
                targetQueryValue: "{per_replica}"
        """)


class Recorder(Observer):
    def __init__(self) -> None:
        self.polls: list[PollRecord] = []
        self.events: list[tuple[ObjectRef, ScalingEvent]] = []
        self.problems: list[tuple[ObjectRef, str]] = []

    def poll(self, record: PollRecord) -> None:
        self.polls.append(record)

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        self.events.append((ref, event))

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        self.problems.append((ref, message))

    def reasons(self, name: str) -> list[str]:
        return [e.reason for ref, e in self.events if ref.name == name]


async def eventually(check: Callable[[], bool], within: float = 20.0, what: str = "condition") -> None:
    """Wait until `check()` holds; fail with `what` if it never does (a bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        await asyncio.sleep(0.05)
