"""Ten thousand ScaledObjects in one process: poll lateness, CPU, memory and how evenly polls spread.

Each object has one metrics-api trigger against a local aiohttp server (its own process, so its CPU is not
counted here) and a no-op in-memory target; all poll every `--interval` seconds (30), started with the
runtime's spread offsets. Figures are taken over the steady state: from the end of the first interval
(every object has polled once, every session is open) to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import psutil

from bench._common import NoopTarget, summary, write_result
from ebb.runtime.heap import freeze_heap, refreeze_after
from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.runtime.scaled_object import ScaledObjectLoop, spread_offset
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import ObjectPolicy


class GcPauses:
    """Durations of the garbage collector's runs (a full collection over 10,000 objects stalls the loop)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))


class Tally(Observer):
    """Keeps (loop time, lateness) of every poll, and counts errors."""

    def __init__(self) -> None:
        self.polls: list[tuple[float, float]] = []
        self.errors = 0

    def poll(self, record: PollRecord) -> None:
        self.polls.append((asyncio.get_running_loop().time(), record.lateness))
        if any(t.error for t in record.triggers):
            self.errors += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server() -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench._metrics_server", str(port)])
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("metrics server did not start")


def build(n: int, interval: float, port: int, observer: Observer) -> list[ScaledObjectLoop]:
    loops = []
    policy = ObjectPolicy(min_replicas=0, max_replicas=10, polling_interval=interval, cooldown_period=300)
    for i in range(n):
        ctx = TriggerContext(name=f"obj-{i}", trigger_type="metrics-api")
        meta = {"url": f"http://127.0.0.1:{port}/metric", "valueLocation": "value", "targetValue": "5"}
        scaler = build_scaler("metrics-api", meta, ctx=ctx)
        decider = ScaledObjectDecider(policy, mode="direct", obj=f"ScaledObject bench/obj-{i}")
        loops.append(
            ScaledObjectLoop(
                ObjectRef("ScaledObject", "bench", f"obj-{i}"),
                [scaler],
                NoopTarget(),
                decider,
                polling_interval=interval,
                observer=observer,
                start_offset=spread_offset(i, n, interval),
            )
        )
    return loops


async def run(n: int, interval: float, intervals: float, freeze: bool = True) -> dict[str, Any]:
    proc, port = _start_server()
    me = psutil.Process()
    # Reads cut short by the shutdown's cancellation end as orphaned TimeoutErrors: count, don't print them.
    orphans: list[object] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: orphans.append(context))
    try:
        gc.collect()
        rss0 = me.memory_info().rss
        tally = Tally()
        t_build = time.perf_counter()
        loops = build(n, interval, port, tally)
        build_seconds = time.perf_counter() - t_build
        loop = asyncio.get_running_loop()
        t_start = loop.time()
        if freeze:  # as LocalRuntime.start does
            freeze_heap()
            tasks = [asyncio.create_task(refreeze_after(interval + 1.0))]
        else:
            tasks = []
        tasks += [asyncio.create_task(so.run()) for so in loops]
        await asyncio.sleep(interval + 2.0)
        # Steady state from here: every object has polled once (and the heap was frozen again).
        steady_from = loop.time()
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        cpu0 = sum(me.cpu_times()[:2])
        polls0 = len(tally.polls)
        await asyncio.sleep(interval * (intervals - 1) - 2.0)
        cpu1 = sum(me.cpu_times()[:2])
        steady_to = loop.time()
        rss1 = me.memory_info().rss
        steady = tally.polls[polls0:]
        gc.callbacks.remove(pauses)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(so.close() for so in loops))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    seconds = steady_to - steady_from
    buckets = Counter(int(t - t_start) for t, _ in steady)
    lateness = [late for _, late in steady]
    cpu = cpu1 - cpu0
    return {
        "objects": n,
        "gc_freeze": freeze,
        "build_seconds": round(build_seconds, 1),
        "polling_interval": interval,
        "steady_seconds": round(seconds, 1),
        "polls": len(steady),
        "polls_expected": round(n * seconds / interval),
        "poll_errors": tally.errors,
        "lateness_seconds": summary(lateness),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_poll": round(1000 * cpu / max(1, len(steady)), 3),
        "cores_average": round(cpu / seconds, 3),
        "rss_mib_total": round(rss1 / 2**20, 1),
        "rss_kib_per_object": round((rss1 - rss0) / n / 1024, 1),
        "gc_full_collections": sum(1 for g, _ in pauses.pauses if g == 2),
        "gc_pause_max_seconds": round(max((d for _, d in pauses.pauses), default=0.0), 4),
        "polls_per_second_ideal": round(n / interval, 1),
        "polls_per_second_max_bucket": max(buckets.values()) if buckets else 0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.objects")
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--intervals", type=float, default=3.0, help="run length in intervals (default 3)")
    parser.add_argument("--no-freeze", action="store_true", help="leave the heap unfrozen (the runtime freezes it)")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.objects, args.interval, args.intervals, freeze=not args.no_freeze))
    write_result("objects", {"method": __doc__.strip() if __doc__ else "", **figures})
    late = figures["lateness_seconds"]
    print(
        f"objects: {figures['objects']} at {figures['polling_interval']:g}s: lateness p99 {late.get('p99')}s "
        f"max {late.get('max')}s, {figures['cores_average']} cores, {figures['cpu_ms_per_poll']} ms CPU/poll, "
        f"{figures['rss_kib_per_object']} KiB/object ({figures['rss_mib_total']} MiB RSS), "
        f"max {figures['polls_per_second_max_bucket']} polls in 1 s (ideal {figures['polls_per_second_ideal']})"
    )
    return figures


if __name__ == "__main__":
    main()
