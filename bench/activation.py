"""Activation latency: from one item put into an idle source to the decision to scale, and to a running worker.

Decision latency is measured with a no-op in-memory target: a trial pushes one item, waits for the first
PollRecord with desired_replicas > 0, then removes the item and calls `poll_once()` (cooldownPeriod 0) so
the object is idle again. Worker start latency (ProcessGroupTarget 0 -> 1 until the worker runs) is measured
on its own and combined with each source's decision latencies (every pair summed); a short real end-to-end
run (redis push with a real ProcessGroupTarget) checks the combination.

Push sources poll at 30 s, so only push can make them fast. The 30 s polling baseline is simulated (arrival
uniform within the interval plus a measured read) and checked with a few real trials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import NoopTarget, percentile, summary, write_result
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.scaled_object import ScaledObjectLoop
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import ObjectPolicy
from ebb.targets.base import ScaleTarget
from ebb.targets.process import ProcessGroupTarget

WORKER = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(3600)",
]
BASELINE_INTERVAL = 30.0


class FirstActive(Observer):
    """Resolves `waiter` with the loop time of the first poll that asks for replicas."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[tuple[float, float]] | None = None

    def poll(self, record: PollRecord) -> None:
        if record.desired_replicas > 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((asyncio.get_running_loop().time(), record.read_seconds))


@dataclass
class Source:
    """One kind of event source: how to build its trigger, put one item in, and take it out."""

    name: str
    trigger_type: str
    metadata: dict[str, str]
    add: Callable[[], Awaitable[None]]
    remove: Callable[[], Awaitable[None]]
    polling_interval: float = 30.0
    push: bool = True
    cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _loop(source: Source, target: ScaleTarget, observer: Observer, index: int = 0) -> ScaledObjectLoop:
    ctx = TriggerContext(name=f"bench-{source.name}-{index}", trigger_type=source.trigger_type)
    scaler = build_scaler(source.trigger_type, source.metadata, ctx=ctx)
    policy = ObjectPolicy(min_replicas=0, max_replicas=10, polling_interval=source.polling_interval, cooldown_period=0)
    decider = ScaledObjectDecider(policy, mode="direct", obj=f"ScaledObject bench/{source.name}")
    ref = ObjectRef("ScaledObject", "bench", f"{source.name}-{index}")
    return ScaledObjectLoop(ref, [scaler], target, decider, polling_interval=source.polling_interval, observer=observer)


async def _until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def decision_trials(source: Source, trials: int, index: int = 0) -> tuple[list[float], list[float]]:
    """Latencies (s) from add() to the first scaling decision, and the read time of that poll."""
    loop = asyncio.get_running_loop()
    observer = FirstActive()
    target = NoopTarget()
    so = _loop(source, target, observer, index)
    task = asyncio.create_task(so.run())
    latencies: list[float] = []
    reads: list[float] = []
    try:
        await asyncio.sleep(1.0)  # first poll done, push subscription in place
        for _ in range(trials):
            # Polled sources: a random phase against the poll schedule, as real arrivals have.
            await asyncio.sleep(0.06 + (0.0 if source.push else random.uniform(0, source.polling_interval)))
            observer.waiter = loop.create_future()
            t0 = loop.time()
            await source.add()
            t1, read = await asyncio.wait_for(observer.waiter, timeout=source.polling_interval + 15)
            latencies.append(t1 - t0)
            reads.append(read)
            observer.waiter = None
            await source.remove()
            while target.replicas:
                await so.poll_once()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await so.close()
    return latencies, reads


async def parallel_trials(source: Source, trials: int, parallel: int) -> tuple[list[float], list[float]]:
    per = max(1, trials // parallel)
    parts = await asyncio.gather(*(decision_trials(source, per, i) for i in range(parallel)))
    return [x for p in parts for x in p[0]], [x for p in parts for x in p[1]]


async def worker_start_trials(trials: int) -> list[float]:
    """ProcessGroupTarget 0 -> 1: seconds until the worker runs; then back to 0, waiting for it to exit."""
    target = ProcessGroupTarget("bench-worker", WORKER, output=lambda n, line: None, termination_grace_period=5)
    out: list[float] = []
    try:
        for _ in range(trials):
            t0 = time.perf_counter()
            await target.set_replicas(1)
            await _until(lambda: target.ready_replicas() == 1)
            out.append(time.perf_counter() - t0)
            await target.set_replicas(0)
            await _until(lambda: not target.pids())
    finally:
        await target.close()
    return out


async def end_to_end_trials(source: Source, trials: int) -> list[float]:
    """A real ProcessGroupTarget behind the loop: from add() until the worker runs."""
    target = ProcessGroupTarget("bench-e2e", WORKER, output=lambda n, line: None, termination_grace_period=5)
    so = _loop(source, target, Observer(), 99)
    task = asyncio.create_task(so.run())
    out: list[float] = []
    try:
        await asyncio.sleep(1.0)
        for _ in range(trials):
            await asyncio.sleep(0.06)
            t0 = time.perf_counter()
            await source.add()
            await _until(lambda: target.ready_replicas() >= 1, within=source.polling_interval + 15)
            out.append(time.perf_counter() - t0)
            await source.remove()
            while await target.get_replicas():
                await so.poll_once()
            await _until(lambda: not target.pids())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await so.close()
        await target.close()
    return out


def combine(decisions: list[float], starts: list[float]) -> dict[str, Any]:
    """Percentiles of decision + worker start over every pair (independent stages)."""
    sums = [d + s for d, s in itertools.product(decisions, starts)]
    out = summary(sums)
    out["n"] = f"{len(decisions)} x {len(starts)} pairs"
    return out


# --- the sources ---------------------------------------------------------------------------------------


async def redis_source() -> Source:
    import redis.asyncio as aioredis

    key = f"bench:activation:{uuid.uuid4().hex}"
    client = aioredis.Redis(host="127.0.0.1", port=6379)

    async def add() -> None:
        await client.rpush(key, "job")

    async def remove() -> None:
        await client.delete(key)

    async def close() -> None:
        await client.delete(key)
        await client.aclose()

    meta = {"address": "127.0.0.1:6379", "listName": key, "listLength": "5", "enableKeyspaceNotifications": "true"}
    return Source("redis", "redis", meta, add, remove, cleanup=[close])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def nats_source(store: Path) -> Source:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    client_port, monitor_port = _free_port(), _free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting a server once, before any measurement
        [server, "-js", "-a", "127.0.0.1", "-p", str(client_port), "-m", str(monitor_port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", monitor_port), timeout=0.2):
            break
        await asyncio.sleep(0.05)
    nc = await nats.connect(f"nats://127.0.0.1:{client_port}")
    js = nc.jetstream()
    stream = f"BENCH{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    await js.add_consumer(stream, ConsumerConfig(durable_name="workers", ack_policy=AckPolicy.EXPLICIT))

    async def add() -> None:
        await js.publish(f"{stream.lower()}.job", b"job")

    async def remove() -> None:
        await js.purge_stream(stream)

    async def close() -> None:
        await nc.close()
        proc.terminate()
        proc.wait(timeout=10)

    meta = {
        "natsServerMonitoringEndpoint": f"127.0.0.1:{monitor_port}",
        "natsServerAddress": f"nats://127.0.0.1:{client_port}",
        "account": "$G",
        "stream": stream,
        "consumer": "workers",
        "lagThreshold": "5",
    }
    return Source("nats-jetstream", "nats-jetstream", meta, add, remove, cleanup=[close])


async def mqtt_source() -> Source:
    import aiomqtt

    base = f"bench/activation/{uuid.uuid4().hex}"
    client = aiomqtt.Client("127.0.0.1", 1883)
    await client.__aenter__()

    async def add() -> None:
        await client.publish(f"{base}/job", b"job", qos=1, retain=True)

    async def remove() -> None:
        await client.publish(f"{base}/job", b"", qos=1, retain=True)

    async def close() -> None:
        await remove()
        await client.__aexit__(None, None, None)

    # quietPeriodMs bounds every retained-mode read from below; 50 ms suits a loopback broker.
    meta = {"brokerAddress": "127.0.0.1:1883", "topic": f"{base}/#", "mode": "retained", "quietPeriodMs": "50"}
    return Source("mqtt", "mqtt", meta, add, remove, cleanup=[close])


async def postgres_source(interval: float, label: str) -> Source:
    import asyncpg

    table = f"bench_activation_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    await conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY)")
    lock = asyncio.Lock()  # parallel trials share one connection

    async def add() -> None:
        async with lock:
            await conn.execute(f"INSERT INTO {table} DEFAULT VALUES")

    async def remove() -> None:
        async with lock:
            await conn.execute(f"DELETE FROM {table}")

    async def close() -> None:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()

    meta = {
        "host": "127.0.0.1",
        "port": "5432",
        "userName": "postgres",
        "dbName": "test",
        "sslmode": "disable",
        "query": f"SELECT count(*) FROM {table}",
        "targetQueryValue": "5",
    }
    return Source(label, "postgresql", meta, add, remove, polling_interval=interval, push=False, cleanup=[close])


# --- main ----------------------------------------------------------------------------------------------


async def run(trials: int, real_baseline: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    decisions: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ebb-bench-nats-") as store:
        makers: list[tuple[Callable[[], Awaitable[Source]], int]] = [
            (redis_source, 1),
            (lambda: nats_source(Path(store)), 1),
            (mqtt_source, 1),
            (lambda: postgres_source(1.0, "postgresql-poll-1s"), 10),
        ]
        pg_reads: list[float] = []
        for make, parallel in makers:
            source = await make()
            try:
                lat, reads = await parallel_trials(source, trials, parallel)
            finally:
                for clean in source.cleanup:
                    await clean()
            decisions[source.name] = lat
            if not source.push:
                pg_reads = reads
            results[source.name] = {
                "push": source.push,
                "polling_interval": source.polling_interval,
                "parallel_objects": parallel,
                "decision": summary(lat),
            }
            print(
                f"  {source.name}: decision p50 {percentile(lat, 50):.3f}s p99 {percentile(lat, 99):.3f}s", flush=True
            )

        # The 30 s baseline: a uniformly random arrival waits U(0, 30) for the next poll, then one read.
        rng = random.Random(1)
        simulated = [rng.uniform(0, BASELINE_INTERVAL) + rng.choice(pg_reads) for _ in range(max(trials, 1000))]
        baseline: dict[str, Any] = {
            "polling_interval": BASELINE_INTERVAL,
            "decision_simulated": summary(simulated),
            "method": "simulated: arrival uniform within the interval + a measured postgresql read; checked by real",
        }
        if real_baseline:
            source = await postgres_source(BASELINE_INTERVAL, "postgresql-poll-30s")
            try:
                real, _ = await parallel_trials(source, real_baseline, real_baseline)
            finally:
                for clean in source.cleanup:
                    await clean()
            baseline["decision_real"] = summary(real)
        decisions["postgresql-poll-30s (simulated)"] = simulated
        results["postgresql-poll-30s"] = baseline

    starts = await worker_start_trials(trials)
    results["worker_start"] = summary(starts)
    for name, lat in decisions.items():
        key = name.split(" ")[0]
        results[key]["to_running_worker"] = combine(lat, starts)

    source = await redis_source()
    try:
        e2e = await end_to_end_trials(source, max(20, trials // 10))
    finally:
        for clean in source.cleanup:
            await clean()
    results["redis"]["to_running_worker_measured_end_to_end"] = summary(e2e)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.activation")
    parser.add_argument("--trials", type=int, default=200, help="trials per source (default 200)")
    parser.add_argument("--real-baseline", type=int, default=3, help="real trials at a 30 s interval (default 3)")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.trials, args.real_baseline))
    data = {
        "method": __doc__.strip() if __doc__ else "",
        "trials_per_source": args.trials,
        "results": figures,
    }
    write_result("activation", data)
    line = ", ".join(
        f"{name} p99 {f['decision']['p99']:.3f}s decision / {f['to_running_worker']['p99']:.3f}s worker"
        for name, f in figures.items()
        if isinstance(f, dict) and "decision" in f
    )
    base = figures["postgresql-poll-30s"]
    print(f"activation: {line}; 30 s polling p99 {base['to_running_worker']['p99']:.1f}s worker")
    return data


if __name__ == "__main__":
    main()
