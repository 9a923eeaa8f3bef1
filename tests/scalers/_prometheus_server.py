"""A real Prometheus for the prometheus scaler tests, scraping a metrics endpoint the tests serve.

Also the helpers the external scaler tests share: free ports and TLS test certificates (made with openssl).

Everything the tests serve (the metrics endpoint, auth-checking reverse proxies in front of Prometheus)
runs on a background thread's event loop, so the servers keep answering while a test's own loop
is blocked in a scaler call, and one Prometheus can serve a whole test module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import ClientSession, web

T = TypeVar("T")

#: What the scraped endpoint exposes: one single-series metric and one with two series.
METRICS_TEXT = """\
# TYPE queue_depth gauge
queue_depth 17
# TYPE jobs_waiting gauge
jobs_waiting{queue="a"} 4
jobs_waiting{queue="b"} 6
"""


def prometheus_binary() -> str | None:
    """Debian's package installs /usr/bin/prometheus; a prometheus on PATH works too."""
    if os.access("/usr/bin/prometheus", os.X_OK):
        return "/usr/bin/prometheus"
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Certs:
    """PEM files in `dir`: a CA, a server (localhost, 127.0.0.1) and a client certificate it signed, and
    `other`, a self-signed certificate for a name no test address has."""

    dir: Path

    def pem(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    @property
    def ca(self) -> bytes:
        return self.pem("ca.pem")

    @property
    def server_cert(self) -> bytes:
        return self.pem("server.pem")

    @property
    def server_key(self) -> bytes:
        return self.pem("server.key")

    @property
    def client_cert(self) -> bytes:
        return self.pem("client.pem")

    @property
    def client_key(self) -> bytes:
        return self.pem("client.key")

    @property
    def other_cert(self) -> bytes:
        return self.pem("other.pem")

    @property
    def other_key(self) -> bytes:
        return self.pem("other.key")

    def server_context(self, name: str = "server", client_ca: bool = False) -> ssl.SSLContext:
        """An https context presenting `name`.pem; with `client_ca`, clients need a cert from our CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        if client_ca:
            context.load_verify_locations(self.dir / "ca.pem")
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def make_certs(d: Path) -> Certs | None:
    """Write the test certificates into `d`; None when the openssl command is missing."""
    if shutil.which("openssl") is None:
        return None

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
    openssl("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-subj", "/CN=ebb test CA")
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:ebb-client")):
        openssl("req", *ec[:-2], "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl(
            "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", f"{d}/{name}.ext",
        )  # fmt: skip
    openssl(
        "req", "-x509", *ec, "-keyout", f"{d}/other.key", "-out", f"{d}/other.pem",
        "-subj", "/CN=other.example", "-addext", "subjectAltName=DNS:other.example",
    )  # fmt: skip
    return Certs(d)


class BackgroundLoop:
    """An event loop on its own thread; `run(coro)` runs a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="prometheus-fixture", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _start_site(app: web.Application, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    return runner, port


@dataclass
class SeenRequest:
    headers: dict[str, str]
    query: list[tuple[str, str]]


@dataclass
class AuthProxy:
    """A reverse proxy in front of Prometheus that refuses requests without the expected credentials.

    `auth` is None (accept all), ("basic", user, password) or ("bearer", token). Every request it gets
    is recorded in `seen`, refused or not. With `tls` it serves https (and may require client certificates).
    """

    upstream: str
    auth: tuple[str, ...] | None = None
    tls: ssl.SSLContext | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _client: ClientSession | None = None

    def _authorized(self, request: web.Request) -> bool:
        if self.auth is None:
            return True
        given = request.headers.get("Authorization", "")
        if self.auth[0] == "basic":
            expected = base64.b64encode(f"{self.auth[1]}:{self.auth[2]}".encode()).decode()
            return given == f"Basic {expected}"
        return given == f"Bearer {self.auth[1]}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(SeenRequest(dict(request.headers), list(request.query.items())))
        if not self._authorized(request):
            return web.json_response({"status": "error", "error": "unauthorized"}, status=401)
        assert self._client is not None
        async with self._client.get(self.upstream + request.path_qs) as resp:
            body = await resp.read()
            return web.Response(body=body, status=resp.status, content_type="application/json")

    async def start(self) -> None:
        self._client = ClientSession()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner, port = await _start_site(app, self.tls)
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()


class PrometheusFixture:
    """Prometheus on a free loopback port, scraping METRICS_TEXT every second from a test-served endpoint."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.bg = BackgroundLoop()
        self._tmp = tempfile.mkdtemp(prefix="ebb-prometheus-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._proxies: list[AuthProxy] = []
        self.port = 0
        self.url = ""
        self.metrics_url = ""

    async def _serve_metrics(self) -> int:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=METRICS_TEXT, content_type="text/plain")

        app = web.Application()
        # Every path answers with the exposition text, so the endpoint also stands in for "not Prometheus".
        app.router.add_get("/{tail:.*}", metrics)
        self._metrics_runner, port = await _start_site(app)
        self.metrics_url = f"http://127.0.0.1:{port}"
        return port

    def start(self) -> None:
        metrics_port = self.bg.run(self._serve_metrics())
        config = os.path.join(self._tmp, "prometheus.yml")
        with open(config, "w") as fh:
            fh.write(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: ebb-test\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{metrics_port}']\n"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(os.path.join(self._tmp, "prometheus.log"), "wb")  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(self._tmp, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_for_first_scrape()

    def _wait_for_first_scrape(self, limit: float = 60.0) -> None:
        """Until `queue_depth` is queryable at whole-second times, as the scaler queries (KEDA's RFC 3339)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}: {self.log_tail()}")
            if self.instant_query("queue_depth", at=int(time.time())) == ["17"]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus never scraped the test endpoint: {self.log_tail()}")

    def instant_query(self, query: str, at: float) -> list[str] | None:
        """The values of an instant query straight from Prometheus (None while it is not up)."""
        qs = urllib.parse.urlencode({"query": query, "time": str(at)})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=2) as resp:
                doc = json.load(resp)
        except OSError:
            return None
        return [sample["value"][1] for sample in doc["data"]["result"]]

    def log_tail(self) -> str:
        with open(os.path.join(self._tmp, "prometheus.log"), "rb") as fh:
            return fh.read()[-2000:].decode(errors="replace")

    def proxy(self, auth: tuple[str, ...] | None = None, tls: ssl.SSLContext | None = None) -> AuthProxy:
        """A new auth-checking reverse proxy in front of this Prometheus (stopped with the fixture)."""
        proxy = AuthProxy(upstream=self.url, auth=auth, tls=tls)
        self.bg.run(proxy.start())
        self._proxies.append(proxy)
        return proxy

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
        for proxy in self._proxies:
            self.bg.run(proxy.stop())
        if self._metrics_runner is not None:
            self.bg.run(self._metrics_runner.cleanup())
        self.bg.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)
