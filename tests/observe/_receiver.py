"""A CloudEvents receiver on loopback: a real aiohttp server that parses what arrives with the CloudEvents SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from ebb.web.server import AppServer, serve


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    attributes: dict[str, Any]
    data: Any


@dataclass
class Receiver:
    served: AppServer | None = None
    events: list[Received] = field(default_factory=list)
    #: Answer this many requests with `status` before accepting.
    failures_left: int = 0
    status: int = 503
    attempts: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.served is not None
        return f"{self.served.url}/events"

    def types(self) -> list[str]:
        return [e.attributes["type"] for e in self.events]

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.Response(status=self.status)
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
        attributes = dict(event.get_attributes())
        data = event.get_data()
        if isinstance(data, bytes | str):
            data = json.loads(data)
        self.events.append(Received(headers, body, attributes, data))
        self._arrived.set()
        return web.Response(status=202)

    async def wait_for(self, count: int, within: float = 10.0) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.add_routes([web.post("/events", r.handle)])
    r.served = await serve(app, "127.0.0.1", 0)
    try:
        yield r
    finally:
        await r.served.stop()
