"""A private Azurite (Microsoft's Azure Storage emulator, from npm) per test module, on a free loopback port.

`.ci/run` installs it with `npm install --prefix .node azurite`; an `azurite-queue` / `azurite-blob` on
PATH is used otherwise. Telemetry is off: Azurite would otherwise report to Microsoft.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests._skips import needs

from ._servers import _wait_listening, free_port

REPO = Path(__file__).resolve().parents[2]
ENABLE = needs("Azurite", "npm install --prefix .node azurite")
#: Azurite's development account and its documented key (public, the same in every Azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

Service = Literal["queue", "blob"]


def azurite_command(service: Service) -> str | None:
    local = REPO / ".node" / "node_modules" / ".bin" / f"azurite-{service}"
    if local.exists():
        return str(local)
    return shutil.which(f"azurite-{service}")


@dataclass(frozen=True)
class Azurite:
    service: Service
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def connection_string(self, key: str = KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
            f"{self.service.capitalize()}Endpoint={self.endpoint};"
        )


@contextmanager
def azurite(service: Service, location: Path, timeout: float = 30.0) -> Iterator[Azurite]:
    """Azurite's `service` on 127.0.0.1, its data in `location`, stopped afterwards.

    FileNotFoundError when Azurite is not installed.
    """
    command = azurite_command(service)
    if command is None:
        raise FileNotFoundError(f"azurite-{service}")
    port = free_port()
    cmd = [
        command,
        "--silent",
        "--disableTelemetry",
        # The Python SDKs may speak a newer API version than this Azurite knows; the calls used are older.
        "--skipApiVersionCheck",
        "--location",
        str(location),
        f"--{service}Host",
        "127.0.0.1",
        f"--{service}Port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, timeout)
        yield Azurite(service, port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
