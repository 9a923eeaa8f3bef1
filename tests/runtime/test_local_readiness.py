"""Under the local runtime, a ProcessGroup's readinessProbe decides `ready` in what the scaling loop records."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import textwrap
from pathlib import Path

from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text

from ._support import Recorder, eventually, make_backlog

# Listens on $PORT 1.5 s after it starts: spawned at once, ready only then.
SLOW_LISTENER = (
    "import os, socket, time; time.sleep(1.5); s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(os.environ['PORT']))); "
    "s.listen(); time.sleep(3600)"
)


def free_base(span: int) -> int:
    for _ in range(200):
        base = random.randrange(20000, 32000)  # below the ephemeral range, where TIME_WAIT blocks listening
        sockets = []
        try:
            for port in range(base, base + span):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


def manifest(db: Path, port: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata: {{name: web}}
        spec:
          command: [{sys.executable!r}, "-c", {SLOW_LISTENER!r}]
          ports: [{{name: http, containerPort: {port}}}]
          readinessProbe: {{tcpSocket: {{port: http}}, periodSeconds: 0.2}}
          terminationGracePeriodSeconds: 1
        ---
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {{name: web}}
        spec:
          scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: web}}
          pollingInterval: 1
          maxReplicaCount: 2
          triggers:
            - type: sqlite
              metadata: {{databasePath: {str(db)!r}, query: SELECT count(*) FROM work, targetQueryValue: "1"}}
        """)


async def test_ready_in_the_loops_records_means_probe_ready(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=2)
    rec = Recorder()
    loaded = load_text(manifest(db, free_base(4)))
    assert not loaded.errors, loaded.errors
    runtime = LocalRuntime(loaded, rec, RuntimeOptions(state_path=None, output=lambda n, line: None))
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: any(p.desired_replicas == 2 for p in rec.polls), what="scaled to 2")
        first = next(p for p in rec.polls if p.desired_replicas == 2)
        # Both processes were spawned before this record; neither listened yet.
        assert first.ready_replicas == 0
        assert first.reason is not None and first.reason.startswith("web-0: ")
        await eventually(lambda: rec.polls[-1].ready_replicas == 2, what="both ready once listening")
        assert rec.polls[-1].reason is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
