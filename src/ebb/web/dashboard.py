"""The dashboard: one static page (and uPlot, vendored) reading the history's JSON API."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


def dashboard_routes() -> list[web.RouteDef | web.StaticDef]:
    """`/` (the page) and `/static/*` (its script, styles and uPlot)."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return [web.get("/", index), web.static("/static", STATIC)]
