"""`cpu`: KEDA's cpu trigger. In Kubernetes an HPA Resource metric; under `ebb run`, measured with psutil.

The value is the cores each running worker (with its child processes) used since the previous poll, averaged
over the workers, as psutil's `cpu_percent(interval=None)` measures: a worker seen for the first time has no
earlier sample, so it is sampled over PRIME_INTERVAL seconds instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psutil

from ebb.scalers._resource import ResourceScaler, process_tree
from ebb.scalers.base import TriggerContext

#: Seconds over which a worker's first reading is sampled.
PRIME_INTERVAL = 0.1

#: A worker is known by pid and start time, so that a reused pid is a new worker.
WorkerKey = tuple[int, float]
Sample = tuple[float, float]  # (monotonic time, cpu seconds)


def cpu_seconds(pid: int) -> tuple[WorkerKey, float] | None:
    """CPU seconds used so far by a worker and its descendants; None when the worker is gone.

    Reaped children's time is counted in their parent's children_user/system, so a helper process that
    exits between two polls still counts.
    """
    tree = process_tree(pid)
    if tree is None:
        return None
    try:
        key = (pid, tree[0].create_time())
    except psutil.Error:
        return None
    total = 0.0
    for proc in tree:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue  # exited meanwhile: its time moves to its parent once reaped
        total += t.user + t.system + t.children_user + t.children_system
    return key, total


def sample(pids: Sequence[int]) -> dict[int, tuple[WorkerKey, Sample]]:
    out: dict[int, tuple[WorkerKey, Sample]] = {}
    for pid in pids:
        found = cpu_seconds(pid)
        if found is not None:
            key, seconds = found
            out[pid] = (key, (time.monotonic(), seconds))
    return out


class CpuScaler(ResourceScaler):
    type_name = "cpu"
    resource = "cpu"

    def __init__(self, ctx: TriggerContext, meta: Any) -> None:
        super().__init__(ctx, meta)
        self._last: dict[WorkerKey, Sample] = {}

    async def average_usage(self, pids: Sequence[int]) -> float:
        now = await asyncio.to_thread(sample, pids)
        fresh = [pid for pid, (key, _) in now.items() if key not in self._last]
        previous = dict(self._last)
        if fresh:
            for pid in fresh:
                key, s = now.pop(pid)
                previous[key] = s
            await asyncio.sleep(PRIME_INTERVAL)
            now.update(await asyncio.to_thread(sample, fresh))
        cores: list[float] = []
        for key, (wall, seconds) in now.values():
            before = previous.get(key)
            if before is None:
                continue  # its pid was reused during the priming sample: measured next poll
            elapsed = wall - before[0]
            # An orphaned grandchild reaped by init takes its time with it: never report negative use.
            cores.append(max(0.0, seconds - before[1]) / elapsed if elapsed > 0 else 0.0)
        self._last = {key: s for key, s in now.values()}
        return sum(cores) / len(cores) if cores else 0.0
