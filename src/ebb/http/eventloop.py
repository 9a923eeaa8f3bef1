"""The event loop `ebb run` and `ebb interceptor` serve on: uvloop when installed, asyncio's own otherwise.

uvloop (libuv) roughly halves the interceptor's per-request cost against asyncio's selector loop (measured in
docs/performance.md). Set EBB_EVENT_LOOP=asyncio to serve on asyncio's loop instead (to compare, or to rule
uvloop out when chasing a problem). The process supervisor works on both: children are started with
`loop.subprocess_exec` (uvloop supports `preexec_fn` and `start_new_session`, and reaps children itself).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "EBB_EVENT_LOOP"
log = logging.getLogger("ebb.http")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop (EBB_EVENT_LOOP=asyncio, or no uvloop)."""
    wanted = os.environ.get(ENV, "uvloop").strip().lower()
    if wanted == "asyncio":
        return None
    if wanted not in ("", "uvloop"):
        raise SystemExit(f"{ENV}={wanted!r}: expected 'uvloop' or 'asyncio'")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; a platform without wheels falls back
        log.info("uvloop is not installed: serving on asyncio's event loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    return "asyncio" if loop_factory() is None else "uvloop"


def run_serving(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the serving event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
