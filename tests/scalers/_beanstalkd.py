"""A private beanstalkd (Debian's package) on a free loopback port, and a tiny client to fill its tubes."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._skips import needs

from ._servers import _wait_listening, free_port

BEANSTALKD = shutil.which("beanstalkd") or "/usr/bin/beanstalkd"
ENABLE = needs("beanstalkd", "apt-get install beanstalkd")


@contextmanager
def beanstalkd_server(port: int | None = None) -> Iterator[int]:
    """beanstalkd on 127.0.0.1 without a binlog (jobs in memory), stopped afterwards; yields its port.

    FileNotFoundError when beanstalkd is not installed.
    """
    if not Path(BEANSTALKD).exists():
        raise FileNotFoundError(BEANSTALKD)
    port = port or free_port()
    proc = subprocess.Popen(
        [BEANSTALKD, "-l", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, proc, 10.0)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Beanstalk:
    """One blocking connection speaking the commands the tests need."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def command(self, line: str, body: bytes | None = None) -> str:
        data = line.encode() + b"\r\n" + (body + b"\r\n" if body is not None else b"")
        self.sock.sendall(data)
        answer = self.file.readline().decode().strip()
        if answer.startswith(("RESERVED", "OK")):
            size = int(answer.rsplit(" ", 1)[1])
            self.file.read(size + 2)
        return answer

    def use(self, tube: str) -> None:
        assert self.command(f"use {tube}") == f"USING {tube}"

    def put(self, n: int = 1, delay: int = 0) -> None:
        for i in range(n):
            assert self.command(f"put 100 {delay} 60 2", f"j{i % 10}".encode()).startswith("INSERTED")

    def reserve(self, tube: str) -> int:
        self.command(f"watch {tube}")
        answer = self.command("reserve-with-timeout 0")
        assert answer.startswith("RESERVED"), answer
        return int(answer.split()[1])
