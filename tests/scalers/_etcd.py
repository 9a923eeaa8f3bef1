"""A private etcd (Debian's etcd-server) on free loopback ports, with its data in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests._skips import needs

from ._servers import _wait_listening, free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ENABLE = needs("etcd", "apt-get install etcd-server")


@dataclass(frozen=True)
class Etcd:
    client_port: int
    peer_port: int

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@contextmanager
def etcd_server(
    data_dir: Path, ports: Etcd | None = None, *, token_ttl: int = 300, tls: dict[str, Path] | None = None
) -> Iterator[Etcd]:
    """A one-member etcd, stopped afterwards; `ports` of an earlier one restarts "the same" server.

    With `tls` (paths of `ca.crt`, `srv.crt`, `srv.key`) clients speak TLS and must show a certificate
    from that CA. FileNotFoundError when etcd is not installed.
    """
    if not Path(ETCD).exists():
        raise FileNotFoundError(ETCD)
    server = ports or Etcd(client_port=free_port(), peer_port=free_port())
    client = f"{'https' if tls else 'http'}://127.0.0.1:{server.client_port}"
    peer = f"http://127.0.0.1:{server.peer_port}"
    cmd = [
        ETCD,
        "--name",
        "ebb-test",
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"ebb-test={peer}",
        "--auth-token-ttl",
        str(token_ttl),
        "--log-level",
        "error",
        "--logger",
        "zap",
    ]
    if tls:
        cmd += [
            "--cert-file",
            str(tls["srv.crt"]),
            "--key-file",
            str(tls["srv.key"]),
            "--trusted-ca-file",
            str(tls["ca.crt"]),
            "--client-cert-auth",
        ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(server.client_port, proc, 30.0)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
