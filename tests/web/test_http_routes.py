"""The dashboard's HTTP routes table in headless Chromium, against a real `ebb run` wiring (Services and the
interceptor) with real app processes: one route after a cold start, one kept warm, one whose ProcessGroup is
missing. Writes test-output/http-routes.png (docs/http-routes.png is a copy)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from tests._skips import needs
from tests.http._support import ebb_run, free_ports, group, httpso
from tests.runtime._support import eventually

from .test_dashboard import CHROMIUM, OUTPUT, _chromium


@pytest.mark.skipif(CHROMIUM is None, reason=needs("Chromium", "apt-get install chromium"))
async def test_routes_table_shows_hosts_replicas_counts_and_the_last_cold_start(tmp_path: Path) -> None:
    web, shop = free_ports(2), free_ports(2)
    docs = [
        group("web"),
        httpso("web", web, spec="hosts: [web.example.com]\npathPrefixes: [/api, /static]\n"),
        group("shop"),
        httpso("shop", shop, spec="hosts: [shop.example.com]\n", min_replicas=1),
        httpso("ghost", free_ports(1), spec="hosts: [ghost.example.com]\n"),
    ]
    async with ebb_run(tmp_path, *docs) as run, aiohttp.ClientSession() as http:

        async def get(host: str, path: str) -> int:
            async with http.get(run.url + path, headers={"Host": host}) as resp:
                await resp.read()
                return resp.status

        assert await asyncio.gather(*(get("web.example.com", "/api/x") for _ in range(12))) == [200] * 12
        await eventually(lambda: any(r[1] == "ColdStart" for r in run.reasons()), what="cold start")
        await eventually(lambda: run.frontend.pools[1].ready_count() == 1, what="shop ready")
        assert await get("shop.example.com", "/") == 200
        assert await get("ghost.example.com", "/") == 503
        held = asyncio.create_task(get("shop.example.com", "/sleep?s=3"))
        await asyncio.sleep(0.3)
        dom = await _chromium(tmp_path, "--dump-dom", f"{run.admin}/")
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "http-routes.png"
        shot.unlink(missing_ok=True)
        await _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,700", f"{run.admin}/")
        assert await held == 200
    assert 'data-ready="1"' in dom
    section = dom.split('id="http"', 1)[1].split("</table>", 1)[0]
    assert not section.startswith(" hidden")
    rows = dict(re.findall(r'<tr class="route[^"]*" data-route="([^"]+)">(.*?)</tr>', section, re.S))
    assert set(rows) == {f"HTTPScaledObject/default/{name}" for name in ("web", "shop", "ghost")}

    def cell(key: str, name: str) -> str:
        return re.search(rf'<td class="num {name}[^"]*">([^<]*)</td>', rows[key]).group(1)  # type: ignore[union-attr]

    web_row, shop_row = "HTTPScaledObject/default/web", "HTTPScaledObject/default/shop"
    assert "web.example.com" in rows[web_row] and "/api, /static" in rows[web_row]
    assert (cell(web_row, "ready"), cell(web_row, "in-flight"), cell(web_row, "held")) == ("1", "0", "0")
    assert re.search(r"ago: held 12 requests for [0-9.]+ (ms|s) while scaling 0→1", rows[web_row])
    assert (cell(shop_row, "ready"), cell(shop_row, "in-flight")) == ("1", "1")
    assert float(cell(web_row, "rate")) > 0
    assert "broken" in rows["HTTPScaledObject/default/ghost"] and "Warning" in section
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
