"""Requests per second and latency of the external-metrics API server for cached values.

`python -m bench.metrics_api [--seconds 10] [--concurrency 32]`

The server (ebb.kube.metrics_api.MetricsAPIServer over HTTPS, TLS from ebb.kube.certs) runs in its own process,
pinned to one core; the load generator (aiohttp, keep-alive connections, like the API aggregator's) runs in
this process on the other core. The provider serves cached values from a dict keyed by (namespace,
ScaledObject), which is what the operator's cached path does (one lookup of the last poll's values).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from bench._common import summary, write_result

NAMESPACES = 50
OBJECTS_PER_NAMESPACE = 20
LABEL = "scaledobject.keda.sh/name"


def _metric(i: int) -> str:
    return f"s0-redis-queue-{i}"


async def serve(port_file: str) -> None:
    from ebb.kube.certs import generate
    from ebb.kube.metrics_api import MetricsAPIServer
    from ebb.kube.metrics_provider import ExternalMetricValue, MetricDescriptor, MetricNotFound

    class CachedProvider:
        """Cached values of 1,000 ScaledObjects, looked up as the operator looks up its last poll."""

        def __init__(self) -> None:
            self.values = {
                (f"ns-{n}", f"so-{i}"): {_metric(i): float(i % 40)}
                for n in range(NAMESPACES)
                for i in range(OBJECTS_PER_NAMESPACE)
            }

        def list_metrics(self) -> list[MetricDescriptor]:
            return [MetricDescriptor(ns, m, so) for (ns, so), ms in self.values.items() for m in ms]

        async def get_metric(
            self, namespace: str, metric_name: str, selector: Mapping[str, str]
        ) -> list[ExternalMetricValue]:
            values = self.values.get((namespace, selector.get(LABEL, "")))
            if values is None or metric_name not in values:
                raise MetricNotFound(metric_name)
            return [ExternalMetricValue(metric_name, values[metric_name], time.time())]

    bundle = generate(["localhost", "127.0.0.1"])
    server = MetricsAPIServer(CachedProvider(), host="127.0.0.1", port=0, ssl_context=bundle.ssl_context())
    await server.start()
    Path(port_file).write_text(f"{server.port}\n")  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


async def load(port: int, seconds: float, concurrency: int, warmup: float) -> tuple[list[float], int, float]:
    import aiohttp

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's certificate is generated per run
    latencies: list[float] = []
    errors = 0
    rng = random.Random(1)
    base = f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces"
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + warmup + seconds
        measure_from = time.perf_counter() + warmup

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                n, i = rng.randrange(NAMESPACES), rng.randrange(OBJECTS_PER_NAMESPACE)
                url = f"{base}/ns-{n}/{_metric(i)}"
                t0 = time.perf_counter()
                async with session.get(url, params={"labelSelector": f"{LABEL}=so-{i}"}) as resp:
                    await resp.read()
                    ok = resp.status == 200
                t1 = time.perf_counter()
                if now >= measure_from:
                    latencies.append(t1 - t0)
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, seconds


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_api", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve))
        return {}

    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[0], cores[-1]
    port_file = f"/tmp/ebb-bench-metrics-api-{os.getpid()}.port"
    proc = subprocess.Popen(
        ["taskset", "-c", str(server_core), sys.executable, "-m", "bench.metrics_api", "--serve", port_file],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        deadline = time.monotonic() + 30
        while not (os.path.exists(port_file) and Path(port_file).read_text().strip()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the metrics API server did not start")
            time.sleep(0.05)
        port = int(Path(port_file).read_text())
        os.sched_setaffinity(0, {client_core})
        server = psutil.Process(proc.pid)
        asyncio.run(load(port, 0.5, 4, 0.0))  # connect and warm the TLS sessions
        cpu0 = server.cpu_times()
        latencies, errors, seconds = asyncio.run(load(port, args.seconds, args.concurrency, args.warmup))
        cpu1 = server.cpu_times()
    finally:
        proc.terminate()
        proc.wait(10)
        with contextlib.suppress(FileNotFoundError):
            os.remove(port_file)
    server_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    rps = len(latencies) / seconds
    lat = summary([x * 1000 for x in latencies], digits=2)
    result: dict[str, object] = {
        "requests_per_second": round(rps),
        "latency_ms": lat,
        "errors": errors,
        "concurrency": args.concurrency,
        "seconds": seconds,
        # The warm-up is inside the CPU window: this slightly overstates the server's cores.
        "server_cores_used": round(server_cpu / (seconds + args.warmup), 2),
        "server_pinned_to_one_core": True,
        "objects": NAMESPACES * OBJECTS_PER_NAMESPACE,
        "tls": True,
    }
    write_result("metrics_api", result)
    print(
        f"metrics-api: {rps:,.0f} req/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, {errors} errors "
        f"(server on one core, {args.concurrency} keep-alive connections, HTTPS)"
    )
    return result


if __name__ == "__main__":
    main()
