"""ebb's annotations for busy-aware scale-in of a Kubernetes target (ScaledObject metadata.annotations).

`ebb.dev/busy-probe: "http://:8080/busy"` asks each pod of the target, at its pod IP, whether it is working
(200 busy / 204 idle, or a small JSON body; see ebb.targets.busy); `ebb.dev/max-drain-seconds` bounds how long a
scale-in waits for busy pods (direct mode). The URL has no host on purpose: every pod has its own IP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ebb.errors import SpecError

BUSY_PROBE_ANNOTATION = "ebb.dev/busy-probe"
MAX_DRAIN_ANNOTATION = "ebb.dev/max-drain-seconds"
#: "true": before a scale-in, ebb marks the chosen pods (DRAINING_POD_ANNOTATION) and removes only those that
#: confirm through their busy probe that they stopped taking work and are idle.
HANDSHAKE_ANNOTATION = "ebb.dev/drain-handshake"
#: The pod annotation ebb sets on the pods it asks to drain (read by the worker through a Downward API file).
DRAINING_POD_ANNOTATION = "ebb.dev/draining"
#: How long a scale-in waits for busy pods when the annotation does not say (seconds).
DEFAULT_MAX_DRAIN_SECONDS = 600.0


@dataclass(frozen=True)
class PodBusyProbe:
    """Where a pod says whether it is busy: scheme://<pod IP>:port/path."""

    scheme: str
    port: int
    path: str
    max_drain_seconds: float = DEFAULT_MAX_DRAIN_SECONDS
    #: ebb.dev/drain-handshake: only pods that confirm `{"draining": true}` and idle are removed.
    handshake: bool = False

    def url(self, pod_ip: str) -> str:
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _field(key: str) -> str:
    return f"metadata.annotations[{key}]"


def busy_probe(annotations: Mapping[str, str], obj: str = "ScaledObject ?") -> PodBusyProbe | None:
    """The busy probe a ScaledObject opts in to, or None. Raises SpecError naming the annotation at fault."""
    raw = annotations.get(BUSY_PROBE_ANNOTATION)
    drain_raw = annotations.get(MAX_DRAIN_ANNOTATION)
    handshake_raw = annotations.get(HANDSHAKE_ANNOTATION)
    if raw is None:
        for key, value in (
            (MAX_DRAIN_ANNOTATION, drain_raw),
            (HANDSHAKE_ANNOTATION, handshake_raw),
        ):
            if value is not None:
                raise SpecError(obj, _field(key), f"only means something with {BUSY_PROBE_ANNOTATION}: add it too")
        return None
    handshake = False
    if handshake_raw is not None:
        if handshake_raw.strip().lower() not in ("true", "false"):
            raise SpecError(obj, _field(HANDSHAKE_ANNOTATION), f'expected "true" or "false", got {handshake_raw!r}')
        handshake = handshake_raw.strip().lower() == "true"

    expected = "expected a URL with no host (the pod's IP is used), a port and a path, like http://:8080/busy"
    try:
        url = urlsplit(raw.strip())
        port = url.port
    except ValueError:
        raise SpecError(obj, _field(BUSY_PROBE_ANNOTATION), f"{expected}; got {raw!r}") from None
    if url.scheme not in ("http", "https"):
        raise SpecError(obj, _field(BUSY_PROBE_ANNOTATION), f"{expected}; got {raw!r} (scheme must be http or https)")
    if url.hostname:
        raise SpecError(
            obj, _field(BUSY_PROBE_ANNOTATION), f"{expected}; got {raw!r} (leave the host out: each pod is probed)"
        )
    if port is None or port == 0:
        raise SpecError(obj, _field(BUSY_PROBE_ANNOTATION), f"{expected}; got {raw!r} (no port)")
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"
    max_drain = DEFAULT_MAX_DRAIN_SECONDS
    if drain_raw is not None:
        try:
            max_drain = float(drain_raw)
        except ValueError:
            max_drain = math.nan
        if not math.isfinite(max_drain) or max_drain < 0:
            raise SpecError(
                obj, _field(MAX_DRAIN_ANNOTATION), f"expected a number of seconds (0 or more), got {drain_raw!r}"
            )
    return PodBusyProbe(url.scheme, port, path, max_drain, handshake)


__all__ = [
    "BUSY_PROBE_ANNOTATION",
    "DEFAULT_MAX_DRAIN_SECONDS",
    "DRAINING_POD_ANNOTATION",
    "HANDSHAKE_ANNOTATION",
    "MAX_DRAIN_ANNOTATION",
    "PodBusyProbe",
    "busy_probe",
]
