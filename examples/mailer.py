"""A small worker for the README's quick start: takes mails off a Redis list and "sends" them.

Standard library only, so it runs with any python3. Each worker pops with BLPOP and handles SIGTERM by
finishing the mail in hand, then exiting: what ebb sends when it scales in.

    python3 examples/mailer.py               # work (what the ProcessGroup runs)
    python3 examples/mailer.py --send 100    # queue 100 mails to watch ebb scale out

REDIS_URL (default redis://127.0.0.1:6379/0) and MAIL_LIST (default mail) say where the list is.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from urllib.parse import unquote, urlparse

stopping = False


def _stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


class Redis:
    """Just enough of the Redis protocol (RESP) for RPUSH and BLPOP."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=10)
        self.reader = self.sock.makefile("rb")
        if parsed.password:
            user = [unquote(parsed.username)] if parsed.username else []
            self.call("AUTH", *user, unquote(parsed.password))
        database = parsed.path.strip("/")
        if database and database != "0":
            self.call("SELECT", database)

    def call(self, *args: str) -> object:
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> object:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RuntimeError(f"unexpected reply {line!r}")


def main() -> int:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    queue = os.environ.get("MAIL_LIST", "mail")
    redis = Redis(url)
    if sys.argv[1:2] == ["--send"]:
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
        redis.call("RPUSH", queue, *(f"mail {n}" for n in range(1, count + 1)))
        print(f"queued {count} mails on {queue}")
        return 0
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker = os.environ.get("EBB_REPLICA_INDEX", "?")
    print(f"worker {worker} waiting for mail on {queue}", flush=True)
    while not stopping:
        reply = redis.call("BLPOP", queue, "1")  # wakes every second to notice SIGTERM
        if isinstance(reply, list):
            time.sleep(0.2)  # "sending"
            print(f"worker {worker} sent {reply[1]}", flush=True)
    print(f"worker {worker} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
