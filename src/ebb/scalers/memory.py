"""`memory`: KEDA's memory trigger. In Kubernetes an HPA Resource metric; under `ebb run`, measured with psutil.

The value is the resident set size (RSS) of each running worker and its child processes, averaged over
the workers. Kubernetes measures a container's working set instead; RSS is the closest a process has, and
pages shared between a worker and its children are counted once per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import psutil

from ebb.scalers._resource import ResourceScaler, process_tree


def rss_bytes(pid: int) -> float | None:
    """Resident memory of a worker and its descendants; None when the worker is gone."""
    tree = process_tree(pid)
    if tree is None:
        return None
    total = 0.0
    for index, proc in enumerate(tree):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            if index == 0:
                return None
    return total


def average_rss(pids: Sequence[int]) -> float:
    sizes = [size for size in map(rss_bytes, pids) if size is not None]
    return sum(sizes) / len(sizes) if sizes else 0.0


class MemoryScaler(ResourceScaler):
    type_name = "memory"
    resource = "memory"

    async def average_usage(self, pids: Sequence[int]) -> float:
        return await asyncio.to_thread(average_rss, pids)
