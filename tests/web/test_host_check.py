"""The local web server answers only to its own names (DNS-rebinding defence) and warns on a public bind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from ebb.web.server import build_app, serve


async def status_for(url: str, host: str | None) -> int:
    headers = {"Host": host} if host is not None else {}
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics", headers=headers) as response:
        return response.status


async def test_loopback_server_refuses_a_foreign_host_header() -> None:
    served = await serve(build_app(registry=CollectorRegistry()), "127.0.0.1", 0, hosts=["ebb.internal"])
    port = served.port
    try:
        for host in (None, f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", "ebb.internal"):
            assert await status_for(served.url, host) == 200, host
        for host in (f"evil.example:{port}", "evil.example", "127.0.0.1.evil.example", f"10.1.2.3:{port}"):
            assert await status_for(served.url, host) == 421, host
    finally:
        await served.stop()


async def test_wildcard_bind_accepts_ip_addresses_but_not_foreign_names() -> None:
    served = await serve(build_app(registry=CollectorRegistry()), "0.0.0.0", 0)
    try:
        assert await status_for(served.url, f"192.0.2.10:{served.port}") == 200
        assert await status_for(served.url, f"rebind.example:{served.port}") == 421
        assert served.bound_url == f"http://0.0.0.0:{served.port}"
        assert not served.loopback
    finally:
        await served.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_run_announces_the_address_it_binds_and_warns_when_it_is_public(
    tmp_path: Path, host: str, warned: bool
) -> None:
    manifest = tmp_path / "idle.yaml"
    manifest.write_text(
        "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: idle}\n"
        "spec: {command: [sleep, '60'], replicas: 0}\n"
    )
    port = free_port()
    args = ["run", str(manifest), "--no-state", "--no-history", "--metrics-host", host, "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ebb.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "metrics on" in line:
                break
        lines.append(proc.stdout.readline() if warned else "")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = "".join(lines)
    assert f"metrics on http://{host}:{port}/metrics" in text, text
    assert ("warning: 0.0.0.0 is not a loopback address" in text) is warned, text
