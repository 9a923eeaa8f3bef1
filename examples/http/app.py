"""A tiny HTTP app for ebb's HTTP examples, tests and benchmark: it listens on $PORT (127.0.0.1).

GET /            -> "hello from replica <EBB_REPLICA_INDEX>"
GET /sleep?s=0.5 -> answers after s seconds (slow requests, to build concurrency)
POST /echo       -> streams the request body back
GET /stream?n=3  -> n chunks, 50 ms apart
SIGTERM          -> stops accepting, finishes requests in flight, exits (aiohttp's graceful shutdown)
Set APP_START_DELAY (seconds) to simulate a slow start before it listens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from aiohttp import web

REPLICA = os.environ.get("EBB_REPLICA_INDEX", "?")


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello from replica {REPLICA}\n", headers={"X-Replica": REPLICA})


async def sleep(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.5")))
    return web.Response(text=f"slept on replica {REPLICA}\n", headers={"X-Replica": REPLICA})


async def echo(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"X-Replica": REPLICA})
    await response.prepare(request)
    async for chunk in request.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"X-Replica": REPLICA})
    await response.prepare(request)
    for i in range(int(request.query.get("n", "3"))):
        await response.write(f"chunk {i}\n".encode())
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


async def headers(request: web.Request) -> web.Response:
    lines = [f"{k}: {v}" for k, v in request.headers.items()]
    return web.Response(text="\n".join(lines) + "\n", headers={"X-Replica": REPLICA})


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=30)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening {time.time():.6f}", flush=True)  # the benchmark reads when the app became ready
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()  # stops listening, lets requests in flight finish (up to shutdown_timeout)


def main() -> None:
    delay = float(os.environ.get("APP_START_DELAY", "0"))
    if delay:
        time.sleep(delay)
    app = web.Application()
    app.router.add_get("/sleep", sleep)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/headers", headers)
    app.router.add_route("*", "/{tail:.*}", hello)
    asyncio.run(serve(app, int(os.environ["PORT"])))


if __name__ == "__main__":
    main()
