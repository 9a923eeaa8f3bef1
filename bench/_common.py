"""What every benchmark shares: percentiles, the machine's description, and writing results."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: the value at or above q% of the samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """n, p50, p95, p99, max and mean of `values`, rounded."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def machine() -> dict[str, Any]:
    """Enough about where a figure was measured to judge it."""
    try:
        import psutil

        memory = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        memory = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": memory,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """bench/results/<name>.json, with when and where it was measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload: dict[str, Any] = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    payload["machine"] = machine()
    payload.update(data)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


class NoopTarget:
    """An in-memory ScaleTarget: replicas are a number, every one of them ready at once."""

    def __init__(self, replicas: int = 0) -> None:
        self.replicas = replicas
        self.changes = 0

    async def get_replicas(self) -> int:
        return self.replicas

    async def set_replicas(self, n: int) -> None:
        self.replicas = n
        self.changes += 1

    def ready_replicas(self) -> int:
        return self.replicas

    async def close(self) -> None:
        self.replicas = 0
