"""The graphite trigger against a private carbon-cache + graphite-web (Debian's packages, see _graphite.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from ebb.scalers.rabbitmq import basic_auth
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._graphite import ENABLE, Graphite, graphite_server
from ._servers import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graphite]:
    try:
        with graphite_server(tmp_path_factory.mktemp("graphite")) as srv:
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


@pytest.fixture
def prefix() -> str:
    return f"ebb.t{uuid.uuid4().hex[:10]}"


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"gr-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="graphite")


def scaler(metadata: dict[str, str], auth: dict[str, str] | None = None, **kw: Any) -> Scaler:
    return build_scaler("graphite", metadata, ctx=kw.pop("ctx", None) or ctx(), auth_params=auth, **kw)


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    s = scaler({"serverAddress": "http://graphite:8080", "query": "a.b", "queryTime": "-1min"}, ctx=ctx(index=2))
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s2-graphite", 100.0, "AverageValue")
    assert s.describe()["activationThreshold"] == 0.0
    assert s.url == "http://graphite:8080/render?from=-1min&target=a.b&format=json"  # type: ignore[attr-defined]


def test_query_is_escaped_and_basic_credentials_come_from_auth() -> None:
    s = scaler(
        {"serverAddress": "https://g/", "query": "sumSeries(jobs.*.n)", "queryTime": "-5min", "authMode": "basic"},
        {"username": "u", "password": "s3cr3t-pw"},
    )
    assert s.url == "https://g/render?from=-5min&target=sumSeries%28jobs.%2A.n%29&format=json"  # type: ignore[attr-defined]
    assert s.describe()["password"] == "***"


BASE = {"serverAddress": "http://g:80", "query": "a.b", "queryTime": "-1min"}
BAD: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("no serverAddress", {"query": "a", "queryTime": "-1min"}, {}, "serverAddress"),
    ("serverAddress without scheme", {**BASE, "serverAddress": "g:80"}, {}, "serverAddress"),
    ("serverAddress with credentials", {**BASE, "serverAddress": "http://u:s3cr3t-pw@g"}, {}, "serverAddress"),
    ("no query", {"serverAddress": "http://g", "queryTime": "-1min"}, {}, "query"),
    ("no queryTime", {"serverAddress": "http://g", "query": "a"}, {}, "queryTime"),
    ("text threshold", {**BASE, "threshold": "x"}, {}, "threshold"),
    ("zero threshold", {**BASE, "threshold": "0"}, {}, "threshold"),
    ("text activation", {**BASE, "activationThreshold": "x"}, {}, "activationThreshold"),
    ("unknown authMode", {**BASE, "authMode": "bearer"}, {}, "authMode"),
    ("basic without username", {**BASE, "authMode": "basic"}, {"password": "s3cr3t-pw"}, "username"),
    ("password in metadata", {**BASE, "password": "s3cr3t-pw"}, {}, "password"),
]


@pytest.mark.parametrize(("metadata", "auth", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert "s3cr3t-pw" not in str(err.value)


# --- against graphite-web --------------------------------------------------------------------------


async def test_known_value_is_the_latest_non_null_point(server: Graphite, prefix: str) -> None:
    now = time.time()
    server.send((f"{prefix}.jobs", 7, now - 3), (f"{prefix}.jobs", 12.5, now - 1))
    server.wait_for(f"{prefix}.jobs", 12.5)
    s = scaler({"serverAddress": server.url, "query": f"{prefix}.jobs", "queryTime": "-1min", "threshold": "5"})
    assert await read_once(s) == (12.5, True)


@pytest.mark.parametrize(("activation", "active"), [("8.5", True), ("9", False), ("20", False)])
async def test_activation_exactly_at_the_threshold(
    server: Graphite, prefix: str, activation: str, active: bool
) -> None:
    server.send((f"{prefix}.jobs", 9, time.time()))
    server.wait_for(f"{prefix}.jobs", 9)
    s = scaler(
        {
            "serverAddress": server.url,
            "query": f"{prefix}.jobs",
            "queryTime": "-1min",
            "activationThreshold": activation,
        }
    )
    assert await read_once(s) == (9.0, active)


async def test_functions_in_the_query(server: Graphite, prefix: str) -> None:
    now = time.time()
    server.send((f"{prefix}.a.pending", 3, now), (f"{prefix}.b.pending", 4, now))
    server.wait_for(f"sumSeries({prefix}.*.pending)", 7)
    s = scaler({"serverAddress": server.url, "query": f"sumSeries({prefix}.*.pending)", "queryTime": "-1min"})
    assert (await read_once(s))[0] == 7.0
    several = scaler({"serverAddress": server.url, "query": f"{prefix}.*.pending", "queryTime": "-1min"})
    with pytest.raises(ScalerError, match="returned 2 series; it must return one"):
        await read_once(several)


async def test_no_series_counts_zero(server: Graphite, prefix: str) -> None:
    s = scaler({"serverAddress": server.url, "query": f"{prefix}.nothing", "queryTime": "-1min"})
    assert await read_once(s) == (0.0, False)


async def test_only_null_points_is_an_error(server: Graphite, prefix: str) -> None:
    server.send((f"{prefix}.old", 5, time.time() - 120))
    server.wait_for(f"{prefix}.old", 5, since="-5min")
    s = scaler({"serverAddress": server.url, "query": f"{prefix}.old", "queryTime": "-10s"})
    with pytest.raises(ScalerError, match=r"no non-null point .* increase queryTime"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    s = scaler({"serverAddress": f"http://127.0.0.1:{port}", "query": "a", "queryTime": "-1min"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach Graphite at http://127.0.0.1:{port}" in str(err.value)


async def test_not_graphite_says_so(server: Graphite) -> None:
    s = scaler({"serverAddress": f"{server.url}/nowhere", "query": "a", "queryTime": "-1min"})
    with pytest.raises(ScalerError, match="answered 404 Not Found"):
        await read_once(s)


@pytest.fixture
async def basic_auth_proxy(server: Graphite) -> AsyncIterator[tuple[str, str]]:
    """graphite-web behind a proxy that asks for HTTP Basic credentials (graphite-web asks for none)."""
    password = "pw-" + uuid.uuid4().hex[:8]
    expected = basic_auth("keda", password)

    async def render(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="401 Authorization Required", headers={"WWW-Authenticate": "Basic"})
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}{request.path_qs}") as resp:
            return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")

    proxy = web.Application()
    proxy.router.add_get("/render", render)
    runner = web.AppRunner(proxy)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", password
    await runner.cleanup()


async def test_basic_auth_and_a_refused_password(
    server: Graphite, prefix: str, basic_auth_proxy: tuple[str, str]
) -> None:
    url, password = basic_auth_proxy
    server.send((f"{prefix}.jobs", 4, time.time()))
    server.wait_for(f"{prefix}.jobs", 4)
    meta = {"serverAddress": url, "query": f"{prefix}.jobs", "queryTime": "-1min", "authMode": "basic"}
    assert (await read_once(scaler(meta, {"username": "keda", "password": password})))[0] == 4.0
    wrong = "Wr0ng-" + uuid.uuid4().hex[:8]
    with pytest.raises(ScalerError) as err:
        await read_once(scaler(meta, {"username": "keda", "password": wrong}))
    assert f"Graphite at {url} answered 401 Unauthorized" in str(err.value)
    assert wrong not in str(err.value) and password not in str(err.value)


async def test_no_connection_or_fd_leak_over_1000_polls(server: Graphite, prefix: str) -> None:
    server.send((f"{prefix}.jobs", 3, time.time()))
    server.wait_for(f"{prefix}.jobs", 3)
    s = scaler({"serverAddress": server.url, "query": f"{prefix}.jobs", "queryTime": "-5min"})
    await s.get_metric_and_activity()
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert process.num_fds() <= fds + 1
    finally:
        await s.close()
    await asyncio.sleep(0)
    assert process.num_fds() <= fds


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: Graphite, tmp_path: Path) -> None:
    text = (REPO / "examples" / "graphite.yaml").read_text()
    assert "http://127.0.0.1:8080" in text
    path = tmp_path / "graphite.yaml"
    path.write_text(text.replace("http://127.0.0.1:8080", server.url))
    now = time.time()
    server.send(("jobs.eu.pending", 30, now), ("jobs.us.pending", 12, now))
    server.wait_for("sumSeries(jobs.*.pending)", 42, since="-10min")
    result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = row_of(result.output, "[0] graphite")
    assert (row["metric"], row["value"], row["target"], row["active"]) == (
        "s0-graphite",
        "42",
        "20 (AverageValue)",
        "yes",
    )
