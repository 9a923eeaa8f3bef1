"""Is a replica busy? How a worker says so, read the same way for local processes and for pods.

A busy probe is one of:
- an HTTP GET: 200 means busy, 204 idle; a 200 may carry a small JSON body, `{"busy": false}` or
  `{"inFlight": 3}` (0 is idle), which then decides;
- a file the worker creates while it works: it exists = busy;
- an exit-when-idle contract (no probe at all: SIGTERM means "finish your current item, then exit").

A probe that times out, cannot connect or answers something else is `unknown`, and unknown counts as busy:
removing a worker ebb could not ask is what this module exists to avoid. Its reason says why, for an Event.

Everything here except `probe_http` is pure (no I/O beyond one `stat`), so the rules are tested without servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp

from ebb.spec.models import BusyProbe

#: A busy probe reads at most this much of a response body; a longer one is garbage.
MAX_BODY = 64 * 1024

BusyKind = Literal["busy", "idle", "unknown"]


@dataclass(frozen=True)
class BusyState:
    """What one probe found. `unknown` is counted as busy; `reason` says why it is unknown (or what was seen)."""

    kind: BusyKind
    reason: str = ""
    #: Work items in flight, when the worker said so (`{"inFlight": 3}`).
    in_flight: int | None = None
    #: The worker said it has stopped taking work (`{"draining": true}`): the drain handshake's confirmation.
    draining: bool = False

    @property
    def busy(self) -> bool:
        """True for busy and for unknown: a worker ebb could not ask is not removed as if idle."""
        return self.kind != "idle"

    @property
    def idle(self) -> bool:
        return self.kind == "idle"

    @property
    def known(self) -> bool:
        return self.kind != "unknown"


IDLE = BusyState("idle")
BUSY = BusyState("busy")


def unknown(reason: str) -> BusyState:
    return BusyState("unknown", reason)


def _short(body: bytes) -> str:
    text = body[:60].decode("utf-8", errors="replace").strip()
    return repr(text + ("..." if len(body) > 60 else ""))


def interpret_http(status: int, body: bytes) -> BusyState:
    """The busy state an HTTP busy probe's answer means: 204 idle; 200 busy unless a JSON body says otherwise."""
    if status == 204:
        return IDLE
    if status != 200:
        return unknown(f"answered HTTP {status} (expected 200 busy or 204 idle)")
    text = body.strip()
    if not text:
        return BUSY
    if len(body) > MAX_BODY:
        return unknown(f"answered a body over {MAX_BODY} bytes (expected a small JSON object or none)")
    if not text.startswith((b"{", b"[", b'"')) and text not in (b"true", b"false", b"null"):
        # A plain-text 200 ("OK", "working"): the status code decides.
        return BUSY
    try:
        data = json.loads(text)
    except ValueError:
        return unknown(f"answered a body that is not JSON: {_short(text)}")
    if not isinstance(data, dict):
        return unknown(f'answered JSON that is not an object: {_short(text)} (expected {{"busy": true}})')
    busy = data.get("busy")
    in_flight = data.get("inFlight", data.get("in_flight"))
    if busy is None and in_flight is None:
        return unknown(f'answered JSON without "busy" or "inFlight": {_short(text)}')
    if busy is not None and not isinstance(busy, bool):
        return unknown(f'answered "busy": {_short(json.dumps(busy).encode())} (expected true or false)')
    if in_flight is not None and (isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 0):
        return unknown(f'answered "inFlight": {_short(json.dumps(in_flight).encode())} (expected a count >= 0)')
    draining = data.get("draining", False)
    if not isinstance(draining, bool):
        return unknown(f'answered "draining": {_short(json.dumps(draining).encode())} (expected true or false)')
    if busy is None:
        assert isinstance(in_flight, int)
        return BusyState("busy" if in_flight > 0 else "idle", in_flight=in_flight, draining=draining)
    # Both given: busy wins if either says so (a worker between items may report inFlight 0 but busy true).
    is_busy = busy or (in_flight is not None and in_flight > 0)
    return BusyState("busy" if is_busy else "idle", in_flight=in_flight, draining=draining)


async def probe_http(url: str, timeout_seconds: float, session: aiohttp.ClientSession | None = None) -> BusyState:
    """GET `url` and interpret the answer; never raises (a failure is an unknown state with its reason)."""
    own = session is None
    client = session if session is not None else aiohttp.ClientSession()
    try:
        async with asyncio.timeout(timeout_seconds):
            async with client.get(url, allow_redirects=False) as response:
                body = await response.content.read(MAX_BODY + 1)
                return interpret_http(response.status, body)
    except TimeoutError:
        return unknown(f"no answer from {url} within {timeout_seconds:g}s")
    except aiohttp.ClientConnectorError as exc:
        return unknown(f"cannot connect to {url}: {exc.strerror or exc.os_error}")
    except (aiohttp.ClientError, OSError) as exc:
        return unknown(f"GET {url} failed: {exc.__class__.__name__}: {exc}")
    finally:
        if own:
            await client.close()


def probe_file(path: str | os.PathLike[str]) -> BusyState:
    """Busy while `path` exists; a path that cannot be checked (permissions) is unknown."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return IDLE
    except NotADirectoryError:
        return IDLE
    except OSError as exc:
        return unknown(f"cannot check {os.fspath(path)}: {exc.strerror or exc}")
    return BUSY


async def probe(
    spec: BusyProbe,
    *,
    host: str,
    port: int | None,
    index: int,
    working_dir: str | os.PathLike[str] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> BusyState:
    """One probe of one replica as `spec` says: its httpGet on `host`:`port` (the port already resolved for this
    replica), or its file (for replica `index`, relative to `working_dir`). exitWhenIdle cannot be asked: busy."""
    if spec.http_get is not None:
        if port is None:
            return unknown("httpGet has no port to probe")
        return await probe_http(f"http://{host}:{port}{spec.http_get.path}", spec.timeout_seconds, session)
    if spec.file is not None:
        path = expand_path(spec.file, index)
        if working_dir is not None:
            path = os.path.join(working_dir, path)
        return probe_file(path)
    return BUSY


_INDEX_VARIABLE = re.compile(r"\$\{EBB_REPLICA_INDEX\}|\$EBB_REPLICA_INDEX\b")


def expand_path(template: str, index: int) -> str:
    """A busy file's path for replica `index`: `{index}`, `$EBB_REPLICA_INDEX` and `${EBB_REPLICA_INDEX}` expand."""
    return _INDEX_VARIABLE.sub(str(index), template).replace("{index}", str(index))


def removal_order(states: Mapping[int, BusyState]) -> list[int]:
    """Replica indexes in the order to remove them: idle first, then busy with the fewest items in flight,
    then those whose state is unknown; the highest index first within each (as without a probe)."""

    def key(index: int) -> tuple[int, int, int]:
        state = states[index]
        rank = {"idle": 0, "busy": 1, "unknown": 2}[state.kind]
        return (rank, state.in_flight if state.in_flight is not None else 1, -index)

    return sorted(states, key=key)


class CauseReporter:
    """Says a probe problem once per cause, not once per poll: `report(who, cause)` is True when it is new.

    A cause is the reason with the replica's own address taken out by the caller if needed; `clear(who)`
    after a good answer, so that the same failure later is reported again.
    """

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def report(self, who: str, cause: str) -> bool:
        if self._last.get(who) == cause:
            return False
        self._last[who] = cause
        return True

    def clear(self, who: str) -> None:
        self._last.pop(who, None)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop what is remembered about anything not in `keep` (replicas that are gone)."""
        wanted = set(keep)
        for who in [w for w in self._last if w not in wanted]:
            del self._last[who]


def describe_duration(seconds: float) -> str:
    """A wait in the largest unit that reads naturally: "45 s", "4 min", "1.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
