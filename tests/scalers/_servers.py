"""Helpers for scaler tests that need a server of their own: free ports, a private nats-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class NatsServer:
    client_port: int
    monitoring_port: int

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def monitoring_endpoint(self) -> str:
        return f"127.0.0.1:{self.monitoring_port}"


@contextmanager
def nats_server(store_dir: Path, ports: NatsServer | None = None, timeout: float = 10.0) -> Iterator[NatsServer]:
    """A nats-server with JetStream and a monitoring port on loopback, stopped afterwards.

    Free ports unless `ports` names those of an earlier server (to restart "the same" server).
    """
    if not Path(NATS_SERVER).exists():
        raise FileNotFoundError(f"nats-server not found at {NATS_SERVER}")
    server = ports or NatsServer(client_port=free_port(), monitoring_port=free_port())
    cmd = [
        NATS_SERVER,
        "-js",
        "-a",
        "127.0.0.1",
        "-p",
        str(server.client_port),
        "-m",
        str(server.monitoring_port),
        "-sd",
        str(store_dir),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(server.client_port, proc, timeout)
        _wait_listening(server.monitoring_port, proc, timeout)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
