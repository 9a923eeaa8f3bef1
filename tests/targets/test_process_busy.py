"""Busy-aware scale-in, readiness and ports of ProcessGroupTarget, against real worker processes."""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ebb.spec.models import BusyProbe, ContainerPort, HTTPGetAction, ReadinessProbe, TCPSocketAction
from ebb.targets.process import ProcessGroupTarget
from tests.targets._support import Recorder, alive, gone, wait_until

WORKER = str(Path(__file__).with_name("busy_worker.py"))
Events = list[tuple[str, str, str]]
MakeGroup = Callable[..., ProcessGroupTarget]


def free_base(span: int) -> int:
    """A base port with `span` free ports above it (others' tests run at the same time: bind to check)."""
    for _ in range(50):
        # Below the ephemeral range (32768+): there, clients' connections in TIME_WAIT block listening.
        base = random.randrange(20000, 32000)
        if base + span > 65000:
            continue
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


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
async def group(tmp_path: Path, events: Events) -> AsyncIterator[MakeGroup]:
    made: list[ProcessGroupTarget] = []

    def make(*, env: dict[str, str] | None = None, grace: float = 2.0, **kwargs: Any) -> ProcessGroupTarget:
        base = free_base(20)
        kwargs.setdefault(
            "ports",
            [ContainerPort(name="web", container_port=base), ContainerPort(name="busy", container_port=base + 10)],
        )
        kwargs.setdefault(
            "busy_probe", BusyProbe(http_get=HTTPGetAction(path="/busy", port="busy"), period_seconds=0.1)
        )
        target = ProcessGroupTarget(
            "w",
            [sys.executable, "-u", WORKER],
            env={"CTL": str(tmp_path), **(env or {})},
            termination_grace_period=grace,
            output=Recorder(),
            on_event=lambda reason, message, type_: events.append((reason, message, type_)),
            backoff_initial=0.05,
            jitter=0.0,
            **kwargs,
        )
        made.append(target)
        return target

    yield make
    for target in made:
        await target.close()


async def started(target: ProcessGroupTarget, n: int) -> list[int]:
    await target.set_replicas(n)
    await wait_until(lambda: target.ready_replicas() == n, f"{n} workers running")
    # Serving their busy port: a probe before that would be "cannot connect", counted as busy.
    output = target.output
    assert isinstance(output, Recorder)
    await wait_until(lambda: all("ready" in output.of(f"w-{i}") for i in range(n)), "workers serving")
    return target.pids()


def reasons(events: Events) -> list[str]:
    return [reason for reason, _, _ in events]


async def test_scale_in_stops_idle_workers_first(group: MakeGroup, tmp_path: Path, events: Events) -> None:
    target = group()
    pids = await started(target, 4)
    (tmp_path / "busy-2").touch()
    (tmp_path / "busy-3").touch()  # without a probe, 3 and 2 would go
    await target.set_replicas(2)
    assert [s.index for s in target.status() if s.state not in ("terminating",)] == [2, 3]
    await wait_until(lambda: gone(pids[0]) and gone(pids[1]), "idle workers 0 and 1 stopped")
    assert alive(pids[2]) and alive(pids[3])
    assert target.draining() == []
    assert target.ready_replicas() == 2 and await target.get_replicas() == 2
    assert ("ScalingIn", "scaling 4→2: stopped 2 idle worker(s)", "Normal") in events


async def test_busy_workers_drain_until_idle_and_do_not_count_as_capacity(
    group: MakeGroup, tmp_path: Path, events: Events
) -> None:
    target = group()
    pids = await started(target, 4)
    for i in (1, 2, 3):
        (tmp_path / f"busy-{i}").touch()
    await target.set_replicas(1)  # 0 is idle and goes; of the busy ones 3 and 2 (highest first) drain
    await wait_until(lambda: 0 not in [s.index for s in target.status()], "idle worker 0 stopped")
    assert gone(pids[0])
    assert target.draining() == [2, 3]
    assert {s.index: s.state for s in target.status()} == {1: "running", 2: "draining", 3: "draining"}
    assert await target.get_replicas() == 1
    assert target.ready_replicas() == 1  # the draining ones are terminating, not capacity
    assert (
        "ScalingIn",
        "scaling 4→1: stopped 1 idle worker(s); waiting for 2 busy worker(s) to finish (up to maxDrainSeconds 10 min)",
        "Normal",
    ) in events
    await _sleep(0.5)
    assert alive(pids[2]) and alive(pids[3]), "a busy worker was signalled"
    (tmp_path / "busy-3").unlink()
    await wait_until(lambda: gone(pids[3]), "worker 3 stopped once idle")
    assert alive(pids[2])
    assert "Drained" in reasons(events)
    assert any(r == "Draining" and m.startswith("waiting for 1 busy worker(s) (longest ") for r, m, _ in events)
    (tmp_path / "busy-2").unlink()
    await wait_until(lambda: gone(pids[2]) and target.draining() == [], "worker 2 stopped once idle")
    # Nothing restarts a drained worker: it was leaving.
    await _sleep(0.3)
    assert [s.index for s in target.status()] == [1]


async def test_max_drain_seconds_bounds_the_wait(group: MakeGroup, tmp_path: Path, events: Events) -> None:
    target = group(max_drain_seconds=0.5)
    pids = await started(target, 2)
    (tmp_path / "busy-1").touch()
    (tmp_path / "busy-0").touch()
    await target.set_replicas(1)
    assert target.draining() == [1]
    await _sleep(0.3)
    assert alive(pids[1])
    await wait_until(lambda: gone(pids[1]), "worker 1 stopped after maxDrainSeconds", within=3)
    warning = [m for r, m, t in events if r == "DrainTimeout" and t == "Warning"]
    assert warning and "w-1 still busy after maxDrainSeconds" in warning[0]
    assert alive(pids[0])


@pytest.mark.parametrize(("mode", "cause"), [("garbage", "not JSON"), ("slow", "within 0.2s")])
async def test_a_probe_answering_garbage_or_nothing_counts_as_busy_with_one_event(
    group: MakeGroup, events: Events, mode: str, cause: str
) -> None:
    base = free_base(20)
    target = group(
        env={"MODE": mode},
        ports=[ContainerPort(name="web", container_port=base), ContainerPort(name="busy", container_port=base + 10)],
        busy_probe=BusyProbe(
            http_get=HTTPGetAction(path="/busy", port="busy"), period_seconds=0.1, timeout_seconds=0.2
        ),
    )
    pids = await started(target, 2)
    await target.set_replicas(1)
    assert target.draining() == [1]
    await _sleep(1.0)  # several polls
    assert alive(pids[1])
    failures = [(m, t) for r, m, t in events if r == "BusyProbeFailed" and "w-1" in m]
    assert len(failures) == 1, events
    message, type_ = failures[0]
    assert type_ == "Warning" and cause in message and "counted as busy" in message


async def test_scale_out_during_drain_takes_draining_workers_back(
    group: MakeGroup, tmp_path: Path, events: Events
) -> None:
    target = group()
    pids = await started(target, 3)
    for i in (0, 1, 2):
        (tmp_path / f"busy-{i}").touch()
    await target.set_replicas(1)
    assert target.draining() == [1, 2]
    await target.set_replicas(4)
    assert target.draining() == []
    # The two draining workers are capacity again; only one new worker starts, at the lowest free index.
    await wait_until(lambda: target.ready_replicas() == 4, "4 running")
    assert target.pids()[:3] == pids
    assert [s.index for s in target.status()] == [0, 1, 2, 3]
    assert any(r == "DrainCancelled" and "kept 2 draining" in m for r, m, _ in events)
    # No longer leaving: made idle, they are not stopped.
    for i in (1, 2):
        (tmp_path / f"busy-{i}").unlink()
    await _sleep(0.4)
    assert all(alive(p) for p in pids)


async def test_indexes_reused_after_idle_first_scale_in(group: MakeGroup, tmp_path: Path) -> None:
    target = group()
    pids = await started(target, 3)
    (tmp_path / "busy-2").touch()
    await target.set_replicas(2)  # 1 goes (idle, highest of the idle ones); while it terminates, 1 stays taken
    await wait_until(lambda: 1 not in [s.index for s in target.status()], "worker 1 stopped")
    await target.set_replicas(3)
    await wait_until(lambda: target.ready_replicas() == 3, "3 running")
    assert [s.index for s in target.status()] == [0, 1, 2]
    assert target.pids()[2] == pids[2]


async def test_file_probe(group: MakeGroup, tmp_path: Path, events: Events) -> None:
    target = group(busy_probe=BusyProbe(file=str(tmp_path / "busy-$EBB_REPLICA_INDEX"), period_seconds=0.1))
    pids = await started(target, 3)
    (tmp_path / "busy-0").touch()
    await target.set_replicas(1)
    await wait_until(lambda: gone(pids[1]) and gone(pids[2]), "idle 1 and 2 stopped")
    assert alive(pids[0]) and target.draining() == []


async def test_exit_when_idle_extends_the_grace_period(tmp_path: Path, events: Events) -> None:
    # A worker that takes 0.6 s to finish its item on SIGTERM: the 0.1 s grace alone would kill it.
    script = (
        "import signal, sys, time\n"
        "def finish(*_):\n    time.sleep(0.6); print('finished item', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, finish)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    rec = Recorder()
    target = ProcessGroupTarget(
        "x",
        [sys.executable, "-u", "-c", script],
        termination_grace_period=0.1,
        output=rec,
        busy_probe=BusyProbe(exit_when_idle=True),
        max_drain_seconds=5,
        on_event=lambda r, m, t: events.append((r, m, t)),
    )
    try:
        await target.set_replicas(2)
        await wait_until(lambda: rec.count("x-1", "ready") == 1, "worker ready")
        await target.set_replicas(1)
        await wait_until(lambda: "finished item" in rec.of("x-1"), "x-1 finished its item", within=3)
        await wait_until(lambda: len(target.recent_exits()) == 1, "x-1 exited")
        exit_ = target.recent_exits()[0]
        assert (exit_.returncode, exit_.killed) == (0, False)
    finally:
        await target.close()


async def test_ports_reach_each_replica(tmp_path: Path) -> None:
    rec = Recorder()
    target = ProcessGroupTarget(
        "p",
        [
            sys.executable,
            "-u",
            "-c",
            "import os; print(os.environ['PORT'], os.environ['PORT_METRICS'], os.environ['PORT_WEB'])",
        ],
        ports=[ContainerPort(name="web", container_port=18000), ContainerPort(name="metrics", container_port=19000)],
        output=rec,
        backoff_initial=10,
    )
    try:
        await target.set_replicas(2)
        await wait_until(lambda: bool(rec.of("p-1")) and bool(rec.of("p-0")), "both printed")
        assert rec.of("p-0")[0] == "18000 19000 18000"
        assert rec.of("p-1")[0] == "18001 19001 18001"
    finally:
        await target.close()


@pytest.mark.parametrize("kind", ["tcpSocket", "httpGet"])
async def test_readiness_probe_gates_ready(tmp_path: Path, kind: str) -> None:
    base = free_base(4)
    handler: dict[str, Any] = {"port": "web"}
    probe = (
        ReadinessProbe(tcp_socket=TCPSocketAction(port="web"), period_seconds=0.1)
        if kind == "tcpSocket"
        else ReadinessProbe(http_get=HTTPGetAction(path="/ready", **handler), period_seconds=0.1)
    )
    rec = Recorder()
    target = ProcessGroupTarget(
        "r",
        [sys.executable, "-u", WORKER],
        env={"CTL": str(tmp_path), "READY_AFTER": "0.8"},
        ports=[ContainerPort(name="web", container_port=base)],
        readiness_probe=probe,
        output=rec,
    )
    try:
        await target.set_replicas(1)
        await wait_until(lambda: [s.state for s in target.status()] == ["running"], "spawned")
        assert target.ready_replicas() == 0
        assert target.status()[0].ready is False
        reason = target.not_ready_reason()
        assert reason is not None and reason.startswith("r-0: ")
        await wait_until(lambda: target.ready_replicas() == 1, "ready once its port answers", within=5)
        assert "ready" in rec.of("r-0")
        assert target.status()[0].ready is True
    finally:
        await target.close()


async def test_without_a_readiness_probe_running_is_ready(tmp_path: Path) -> None:
    target = ProcessGroupTarget("n", [sys.executable, "-c", "import time; time.sleep(60)"], output=Recorder())
    try:
        await target.set_replicas(1)
        await wait_until(lambda: target.ready_replicas() == 1, "running")
    finally:
        await target.close()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_a_ready_worker_failing_its_probe_becomes_unready_with_an_event(tmp_path: Path, events: Events) -> None:
    base = free_base(4)
    target = ProcessGroupTarget(
        "u",
        [sys.executable, "-u", WORKER],
        env={"CTL": str(tmp_path)},
        ports=[ContainerPort(name="web", container_port=base)],
        readiness_probe=ReadinessProbe(
            http_get=HTTPGetAction(path="/ready", port="web"), period_seconds=0.1, failure_threshold=3
        ),
        output=Recorder(),
        on_event=lambda r, m, t: events.append((r, m, t)),
    )
    try:
        await target.set_replicas(1)
        await wait_until(lambda: target.ready_replicas() == 1, "ready")
        (tmp_path / "unready-0").touch()
        await wait_until(lambda: target.ready_replicas() == 0, "unready after 3 failures")
        [(_, message, type_)] = [e for e in events if e[0] == "Unhealthy"]
        assert type_ == "Warning" and "u-0 readiness probe failed 3 times" in message and "HTTP 503" in message
        reason_ = target.not_ready_reason()
        assert reason_ is not None and "readiness probe failed" in reason_
        (tmp_path / "unready-0").unlink()
        await wait_until(lambda: target.ready_replicas() == 1, "ready again")
    finally:
        await target.close()


async def test_a_long_drain_is_reported_again(group: MakeGroup, tmp_path: Path, events: Events) -> None:
    target = group(drain_report_every=0.3)
    await started(target, 2)
    (tmp_path / "busy-0").touch()
    (tmp_path / "busy-1").touch()
    await target.set_replicas(1)
    await wait_until(lambda: reasons(events).count("Draining") >= 3, "three reports of one drain", within=5)
    assert all(m.startswith("waiting for 1 busy worker(s) (longest ") for r, m, _ in events if r == "Draining")


async def test_a_worker_that_took_an_item_before_its_sigterm_is_asked_again_before_sigkill(
    tmp_path: Path, events: Events
) -> None:
    # Idle at the probe; its SIGTERM finds it holding an item (the race): it finishes it in 0.8 s, past the grace.
    busy = tmp_path / "busy-1"
    script = (
        "import os, signal, sys, time\n"
        f"busy = {str(busy)!r}\n"
        "def finish(*_):\n"
        "    open(busy, 'w').close(); time.sleep(0.8); os.unlink(busy)\n"
        "    print('finished item', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, finish)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    rec = Recorder()
    target = ProcessGroupTarget(
        "x",
        [sys.executable, "-u", "-c", script],
        termination_grace_period=0.2,
        output=rec,
        busy_probe=BusyProbe(file=str(tmp_path / "busy-{index}"), period_seconds=0.1),
        max_drain_seconds=5,
        on_event=lambda r, m, t: events.append((r, m, t)),
    )
    try:
        await target.set_replicas(2)
        await wait_until(lambda: rec.count("x-1", "ready") == 1, "worker ready")
        assert await target.busy_replicas() == 0
        await target.set_replicas(1)
        await wait_until(lambda: len(target.recent_exits()) == 1, "x-1 exited", within=4)
        exit_ = target.recent_exits()[0]
        assert (exit_.returncode, exit_.killed) == (0, False)
        assert "finished item" in rec.of("x-1")
        assert "DrainExtended" in reasons(events)
    finally:
        await target.close()


async def test_a_worker_still_busy_after_the_extension_is_killed(tmp_path: Path, events: Events) -> None:
    busy = tmp_path / "busy-1"
    script = (
        "import signal, time\n"
        f"busy = {str(busy)!r}\n"
        "def hold(*_):\n    open(busy, 'w').close(); time.sleep(60)\n"
        "signal.signal(signal.SIGTERM, hold)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    rec = Recorder()
    target = ProcessGroupTarget(
        "x",
        [sys.executable, "-u", "-c", script],
        termination_grace_period=0.2,
        output=rec,
        busy_probe=BusyProbe(file=str(tmp_path / "busy-{index}"), period_seconds=0.1),
        max_drain_seconds=0.5,
        on_event=lambda r, m, t: events.append((r, m, t)),
    )
    try:
        await target.set_replicas(2)
        await wait_until(lambda: rec.count("x-1", "ready") == 1, "worker ready")
        await target.set_replicas(1)
        await wait_until(lambda: len(target.recent_exits()) == 1, "x-1 killed", within=4)
        assert target.recent_exits()[0].killed
    finally:
        await target.close()
