"""Helpers for the target tests: a recording output sink, polling, and checks that processes are gone."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

import psutil

PY = [sys.executable, "-u", "-c"]

# A worker that signals readiness only after its SIGTERM handling is in place, then idles.
SLEEPER = "import time; print('ready'); time.sleep(60)"
IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); time.sleep(60)"
FINISHES_ON_SIGTERM = """
import signal, sys, time
def finish(signum, frame):
    time.sleep(0.3)
    print('finished job')
    sys.exit(0)
signal.signal(signal.SIGTERM, finish)
print('ready')
time.sleep(60)
"""


class Recorder:
    """An output sink that keeps every (name, line) it receives."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, name: str, line: str) -> None:
        self.lines.append((name, line))

    def of(self, name: str) -> list[str]:
        return [line for n, line in self.lines if n == name]

    def count(self, name: str, line: str) -> int:
        return self.of(name).count(line)


async def wait_until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    """True when no live process has this pid (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(pid: int) -> bool:
    return not gone(pid)
