"""Helpers for the interceptor's tests: free ports, manifests around examples/http/app.py, a running `ebb run`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ebb.http.local import HTTPFrontend, HTTPOptions
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from ebb.targets.base import OutputSink
from tests.runtime._support import Recorder

APP = Path(__file__).resolve().parents[2] / "examples" / "http" / "app.py"


def free_ports(count: int) -> int:
    """A base port with `count` consecutive free ports above it (loopback)."""
    for _ in range(200):
        # Below the ephemeral range (32768+): there, clients' connections in TIME_WAIT block listening.
        base = random.randrange(20000, 32000)
        if base + count >= 65000:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                # As the apps and the interceptor bind: a port some closed test connection left in TIME_WAIT
                # is free for them.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def group(name: str, *, grace: int = 10, env: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata:
          name: {name}
        spec:
          command: [{sys.executable!r}, {str(APP)!r}]
          terminationGracePeriodSeconds: {grace}
          env: [{env}]
        """)


def httpso(
    name: str,
    port: int,
    *,
    spec: str = "",
    min_replicas: int = 0,
    max_replicas: int = 4,
    polling: float = 0.3,
    annotations: str = "",
    target: str | None = None,
) -> str:
    return textwrap.dedent(f"""\
        apiVersion: http.keda.sh/v1alpha1
        kind: HTTPScaledObject
        metadata:
          name: {name}
          annotations: {{"ebb.dev/polling-interval": "{polling}"{annotations}}}
        spec:
          scaleTargetRef: {{name: {target or name}, kind: ProcessGroup, service: {name}, port: {port}}}
          replicas: {{min: {min_replicas}, max: {max_replicas}}}
        """) + textwrap.indent(textwrap.dedent(spec), "  ")


@dataclass
class Running:
    runtime: LocalRuntime
    frontend: HTTPFrontend
    recorder: Recorder

    @property
    def url(self) -> str:
        assert self.frontend.interceptor is not None
        return f"http://127.0.0.1:{self.frontend.interceptor.bound_port}"

    def ready(self, name: str) -> int:
        """Replicas that answer on their port (for a routed group), else running ones."""
        for target in self.frontend.targets:
            if target.name == name:
                return target.ready_replicas()
        target = self.runtime.targets.get(("default", name))
        return target.ready_replicas() if target is not None else 0


@contextlib.asynccontextmanager
async def running(*docs: str, max_held: int = 10_000, output: OutputSink | None = None) -> AsyncIterator[Running]:
    loaded = load_text("---\n".join(docs))
    assert not loaded.errors, [str(e) for e in loaded.errors]
    recorder = Recorder()
    frontend = HTTPFrontend(HTTPOptions(port=0, max_held=max_held))
    runtime = LocalRuntime(
        loaded, recorder, RuntimeOptions(state_path=None, output=output or (lambda n, line: None)), [frontend]
    )
    task = asyncio.create_task(runtime.run())
    try:
        while frontend.interceptor is None or frontend.interceptor._listener is None:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield Running(runtime, frontend, recorder)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
