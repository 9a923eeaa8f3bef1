"""A metrics endpoint that answers at once: `python -m bench._metrics_server PORT` (run in its own process)."""

from __future__ import annotations

import sys

from aiohttp import web

BODY = b'{"value": 0}'


async def metric(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_get("/metric", metric)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
