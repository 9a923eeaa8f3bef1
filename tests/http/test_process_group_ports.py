"""A ProcessGroup's own ports and readinessProbe behind an HTTPScaledObject (portName, readiness from the group)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import aiohttp

from tests.runtime._support import eventually

from ._support import APP, free_ports, running


def declared_group(name: str, port: int, *, probe: str = "", extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata: {{name: {name}}}
        spec:
          command: [{sys.executable!r}, {str(APP)!r}]
          env: [{{name: APP_START_DELAY, value: "0.8"}}]
          ports: [{{name: http, containerPort: {port}}}, {{name: metrics, containerPort: {port + 4}}}]
        """) + textwrap.indent(textwrap.dedent(probe + extra), "  ")


def routed(name: str, port_name: str, min_replicas: int = 0) -> str:
    return textwrap.dedent(f"""\
        apiVersion: http.keda.sh/v1alpha1
        kind: HTTPScaledObject
        metadata: {{name: {name}, annotations: {{"ebb.dev/polling-interval": "0.3"}}}}
        spec:
          hosts: [{name}.local]
          scaleTargetRef: {{name: {name}, kind: ProcessGroup, service: {name}, portName: {port_name}}}
          replicas: {{min: {min_replicas}, max: 3}}
        """)


async def test_port_name_resolves_against_the_group_and_its_probe_decides_readiness() -> None:
    port = free_ports(8)
    probe = "readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 0.1}\n"
    async with running(declared_group("web", port, probe=probe), routed("web", "http")) as run:
        group = run.runtime.targets[("default", "web")]
        assert group.ready_replicas() == 0
        # Held through the cold start (the app listens after 0.8 s), answered by replica 0 on `http`.
        async with (
            aiohttp.ClientSession() as session,
            session.get(run.url + "/", headers={"Host": "web.local"}) as response,
        ):
            assert response.status == 200
            assert await response.text() == "hello from replica 0\n"
        assert group.ready_replicas() == 1
        assert group.status()[0].ready
        await eventually(lambda: run.ready("web") == 1, what="the pool follows the group's readiness")


async def test_an_unknown_port_name_is_a_clear_problem() -> None:
    port = free_ports(8)
    async with running(declared_group("web", port), routed("web", "grpc")) as run:
        problems = [m for _, m in run.recorder.problems]
        assert any(
            "spec.scaleTargetRef.portName: ProcessGroup web has no port named 'grpc' (declared: http=" in m
            for m in problems
        ), problems


async def test_a_group_with_a_busy_probe_drains_by_it_behind_a_route(tmp_path: Path) -> None:
    port = free_ports(8)
    busy = f'busyProbe: {{file: "{tmp_path}/busy-{{index}}", periodSeconds: 0.1}}\n'
    doc = declared_group("web", port, extra=busy).replace('value: "0.8"', 'value: "0"')
    async with running(doc, routed("web", "http", min_replicas=1).replace("0.3", "600")) as run:
        group = run.runtime.targets[("default", "web")]
        loop_target = next(loop.target for loop in run.runtime.loops.values())
        assert loop_target is group  # not the interceptor's DrainingTarget: the busyProbe decides
        await group.set_replicas(3)
        pool = run.frontend.pools[0]
        await eventually(lambda: pool.ready_count() == 3, what="3 replicas answering")
        pids = group.pids()
        for i in range(3):
            (tmp_path / f"busy-{i}").touch()
        await group.set_replicas(2)
        assert group.draining() == [2]
        assert pool.ready_count() == 2  # the draining replica is out of the pool at once
        async with aiohttp.ClientSession() as session:
            replicas = set()
            for _ in range(8):
                async with session.get(run.url + "/", headers={"Host": "web.local"}) as response:
                    assert response.status == 200
                    replicas.add(response.headers["X-Replica"])
        assert replicas == {"0", "1"}  # the draining replica takes no new requests
        assert pids[2] in [c.pid for c in group.children()]  # but keeps running while busy
        (tmp_path / "busy-2").unlink()
        await eventually(lambda: pids[2] not in [c.pid for c in group.children()], what="replica 2 stopped once idle")


async def test_the_interceptors_draining_target_defers_to_a_busy_probe(tmp_path: Path) -> None:
    # The route-through-a-ScaledObject path wraps the group in DrainingTarget: with a busyProbe, scale-in is the
    # group's own (idle first, busy ones drain), not "wait for requests in flight, up to the grace period".
    from ebb.http.pool import DrainingTarget, ReplicaPool
    from ebb.spec.models import BusyProbe
    from ebb.targets.process import ProcessGroupTarget

    group = ProcessGroupTarget(
        "web",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        termination_grace_period=5,
        output=lambda name, line: None,
        busy_probe=BusyProbe.model_validate({"file": f"{tmp_path}/busy-{{index}}", "periodSeconds": 0.1}),
    )
    pool = ReplicaPool(group, free_ports(8))
    target = DrainingTarget(group, pool)
    try:
        await target.set_replicas(3)
        await eventually(lambda: len(group.pids()) == 3, what="3 replicas")
        (tmp_path / "busy-1").touch()
        (tmp_path / "busy-2").touch()
        await target.set_replicas(1)
        # At once: the idle one (0) is stopped, one busy one (2) drains, the other (1) stays.
        assert group.draining() == [2]
        assert [s.index for s in group.status() if s.state not in ("terminating", "draining")] == [1]
        assert await target.get_replicas() == 1
        (tmp_path / "busy-2").unlink()
        await eventually(lambda: group.draining() == [] and len(group.pids()) == 1, what="replica 2 stopped")
    finally:
        await target.close()
