"""Helpers for the interceptor's tests: free ports, manifests around examples/http/app.py, a running `ebb run`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ebb.http.local import HTTPFrontend, HTTPOptions
from ebb.observe.services import Services
from ebb.runtime.local import LocalRuntime, RuntimeOptions
from ebb.spec.loader import load_text
from ebb.targets.base import OutputSink
from tests.runtime._support import Recorder, eventually

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    """`ebb run` with its outputs: the interceptor, /metrics and /api/routes, the event log."""

    services: Services
    frontend: HTTPFrontend
    state_dir: Path

    @property
    def url(self) -> str:
        assert self.frontend.interceptor is not None
        return f"http://127.0.0.1:{self.frontend.interceptor.bound_port}"

    @property
    def admin(self) -> str:
        assert self.services.served is not None
        return self.services.served.url

    def reasons(self) -> list[tuple[str, str, str]]:
        path = self.state_dir / "events.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [(e["kind"], e["reason"], e["message"]) for e in lines]

    async def samples(self) -> dict[tuple[str, str], float]:
        async with aiohttp.ClientSession() as http, http.get(self.admin + "/metrics") as resp:
            text = await resp.text()
        return {
            (s.name, s.labels.get("name", "") + ("" if "le" not in s.labels else "@" + s.labels["le"])): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("ebb_http_")
        }


@contextlib.asynccontextmanager
async def ebb_run(tmp_path: Path, *docs: str) -> AsyncIterator[Run]:
    """What `ebb run` wires: Services (metrics, event log, API) and the HTTP frontend, on free ports."""
    loaded = load_text("---\n".join(docs))
    assert not loaded.errors, [str(e) for e in loaded.errors]
    state_dir = tmp_path / ".ebb"
    services = Services(state_dir, metrics_port=free_port(), dashboard=True, history=True)
    frontend = HTTPFrontend(HTTPOptions(port=0))
    services.http_routes = frontend.route_infos
    observer = services.observers(Recorder(), [*loaded.resources.scaled_objects()])
    runtime = LocalRuntime(loaded, observer, RuntimeOptions(state_path=None, output=None), [frontend])
    await services.start()
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: frontend.interceptor is not None and frontend.interceptor._listener is not None,
                         what="interceptor listening")  # fmt: skip
        yield Run(services, frontend, state_dir)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await services.stop()
