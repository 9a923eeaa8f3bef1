"""`python -m bench.http_kube`: how fast a request held by `ebb interceptor` reaches the operator's scaling loop.

Two ways, side by side in one run, against the same interceptor (KubeInterceptor's proxy and admin server on
loopback, one route with no ready endpoint, so every request is held):

- **push** (ebb): the operator's InterceptorFeed follows the interceptor's `/queue/stream`; the interceptor writes
  a line naming the route the moment a request is held. Measured: request sent -> the route's listener called
  (what wakes the ScaledObjectLoop).
- **add-on cadence**: the add-on's scaler polls each interceptor's `/queue` every 500 ms
  (KEDA_HTTP_QUEUE_TICK_DURATION) and tells KEDA through its IsActive stream, which ticks every 200 ms
  (KEDA_HTTP_SCALER_STREAM_INTERVAL_MS). Modelled here by the same two tickers in this process: `GET /queue`
  every 500 ms into a cache, and a 200 ms tick reading the cache; measured: request sent -> the first tick that
  sees the held request. A lower bound for the add-on: its gRPC hop to KEDA and KEDA's own reaction are left out.

Each trial starts at a random phase of the tickers, and ends by cancelling the held request (the client
disconnects) and waiting until the interceptor counts nothing held. No Kubernetes API is involved: the route is
built from an HTTPScaledObject manifest given to the interceptor's informer state directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from typing import Any

import aiohttp

from bench._common import summary, write_result
from ebb.kube.client import client_for_url
from ebb.kube.http_feed import InterceptorFeed
from ebb.kube.http_interceptor import InterceptorOptions, KubeInterceptor

NS = "bench"
ROUTE = f"{NS}/web"
#: The add-on's defaults: its scaler polls the interceptors, and ticks its stream to KEDA.
QUEUE_TICK = 0.5
STREAM_TICK = 0.2

HSO = {
    "apiVersion": "http.keda.sh/v1alpha1",
    "kind": "HTTPScaledObject",
    "metadata": {"name": "web", "namespace": NS, "resourceVersion": "1"},
    "spec": {"hosts": ["web.bench"], "scaleTargetRef": {"name": "web", "service": "web", "port": 80}},
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {"ports": [{"name": "http", "port": 80}]},
}


async def _held(session: aiohttp.ClientSession, port: int) -> None:
    async with session.get(f"http://127.0.0.1:{port}/", headers={"Host": "web.bench"}) as response:
        await response.read()


async def _queue(session: aiohttp.ClientSession, admin: int) -> dict[str, Any]:
    async with session.get(f"http://127.0.0.1:{admin}/queue") as response:
        body: dict[str, Any] = await response.json()
        return body


async def _drained(session: aiohttp.ClientSession, admin: int) -> None:
    for _ in range(2000):
        if not (await _queue(session, admin))["routes"].get(ROUTE, {}).get("held", 0):
            return
        await asyncio.sleep(0.005)
    raise RuntimeError("the interceptor still holds a cancelled request after 10 s")


async def run(trials: int) -> dict[str, Any]:
    api = client_for_url("http://127.0.0.1:9")  # never called: the informers are not started
    interceptor = KubeInterceptor(
        api,
        InterceptorOptions(host="127.0.0.1", port=0, admin_host="127.0.0.1", admin_port=0, condition_wait=60),
    )
    interceptor.routes.informers["HTTPScaledObjects"][0].objects = {(NS, "web"): HSO}
    interceptor.routes.informers["Services"][0].objects = {(NS, "web"): SERVICE}
    interceptor.routes.rebuild()
    await interceptor.routes.interceptor.start()
    await interceptor.admin.start()
    port, admin = interceptor.port, interceptor.admin.port
    feed = InterceptorFeed(None, NS)
    woken = asyncio.Event()
    feed.listen(ROUTE, woken.set)
    feed.follow(f"http://127.0.0.1:{admin}")
    push: list[float] = []
    poll: list[float] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            for _ in range(1000):
                if feed.connected:
                    break
                await asyncio.sleep(0.01)
            else:
                raise RuntimeError("the feed did not connect to the interceptor within 10 s")
            for _ in range(trials):
                await asyncio.sleep(random.uniform(0, QUEUE_TICK))
                woken.clear()
                start = time.perf_counter()
                request = asyncio.create_task(_held(session, port))
                await asyncio.wait_for(woken.wait(), 10)
                push.append(time.perf_counter() - start)
                request.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                    await request
                await _drained(session, admin)

            # The add-on's cadence: a 500 ms poll of /queue into a cache, a 200 ms stream tick reading it.
            cache: dict[str, Any] = {}
            #: When the poll behind `cache` was sent, and when the current trial started: a poll sent before
            #: the trial's request cannot have seen it.
            seen: dict[str, float] = {"polled": 0.0, "start": float("inf")}
            saw = asyncio.Event()

            async def queue_poller() -> None:
                while True:
                    sent = time.perf_counter()
                    routes = (await _queue(session, admin))["routes"]
                    cache.clear()
                    cache.update(routes)
                    seen["polled"] = sent
                    await asyncio.sleep(QUEUE_TICK)

            async def stream_ticker() -> None:
                while True:
                    fresh = seen["polled"] >= seen["start"]
                    if fresh and cache.get(ROUTE, {}).get("held", 0) and not saw.is_set():
                        seen["at"] = time.perf_counter()
                        saw.set()
                    await asyncio.sleep(STREAM_TICK)

            tickers = [asyncio.create_task(queue_poller()), asyncio.create_task(stream_ticker())]
            try:
                for _ in range(trials):
                    await asyncio.sleep(random.uniform(0, QUEUE_TICK))
                    start = seen["start"] = time.perf_counter()
                    request = asyncio.create_task(_held(session, port))
                    await asyncio.wait_for(saw.wait(), 10)
                    poll.append(seen["at"] - start)
                    request.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                        await request
                    await _drained(session, admin)
                    seen["start"] = float("inf")
                    saw.clear()
            finally:
                for task in tickers:
                    task.cancel()
                await asyncio.gather(*tickers, return_exceptions=True)
    finally:
        await feed.stop()
        await interceptor.stop()
        await api.aclose()
    return {
        "push_ms": summary([s * 1000 for s in push], 2),
        "addon_cadence_ms": summary([s * 1000 for s in poll], 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.http_kube")
    parser.add_argument("--trials", type=int, default=100, help="trials each way (default 100)")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.trials))
    data = {"method": __doc__.strip() if __doc__ else "", "trials": args.trials, "wake": figures}
    write_result("http_kube", data)
    push, poll = figures["push_ms"], figures["addon_cadence_ms"]
    print(
        f"http_kube: held request -> operator loop woken: push p50 {push['p50']:.2f} ms p99 {push['p99']:.2f} ms; "
        f"add-on cadence (500 ms poll + 200 ms stream tick) p50 {poll['p50']:.0f} ms p99 {poll['p99']:.0f} ms"
    )
    return data


if __name__ == "__main__":
    main()
