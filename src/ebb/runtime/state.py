"""Persisted per-object state, so that a restart of ebb resumes cooldowns and replica counts instead of flapping."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ebb.scaling.types import LifecycleState, MetricHealth


def _lifecycle_from_dict(data: dict[str, Any]) -> LifecycleState:
    return LifecycleState(
        last_active_time=data.get("last_active_time"),
        health={k: MetricHealth(**v) for k, v in (data.get("health") or {}).items()},
        fallback_active=bool(data.get("fallback_active", False)),
        was_active=data.get("was_active"),
        paused=bool(data.get("paused", False)),
        recommendations=[(float(t), int(r)) for t, r in data.get("recommendations") or []],
        scale_up_events=[(float(t), int(r)) for t, r in data.get("scale_up_events") or []],
        scale_down_events=[(float(t), int(r)) for t, r in data.get("scale_down_events") or []],
    )


class StateStore:
    """A JSON file of {object key: {lifecycle, replicas, saved_at}}, written atomically off the hot path."""

    def __init__(self, path: Path | None, flush_interval: float = 1.0) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self._data: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if path is not None and path.exists():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict):
                    self._data = loaded

    def lifecycle(self, key: str) -> LifecycleState | None:
        entry = self._data.get(key)
        if not entry or "lifecycle" not in entry:
            return None
        try:
            return _lifecycle_from_dict(entry["lifecycle"])
        except (TypeError, ValueError):
            return None

    def replicas(self, key: str) -> int | None:
        entry = self._data.get(key)
        value = entry.get("replicas") if entry else None
        return value if isinstance(value, int) and value >= 0 else None

    def save(self, key: str, lifecycle: LifecycleState, replicas: int) -> None:
        self._data[key] = {"lifecycle": asdict(lifecycle), "replicas": replicas, "saved_at": time.time()}
        self._dirty = True

    def forget(self, key: str) -> None:
        if self._data.pop(key, None) is not None:
            self._dirty = True

    def _snapshot(self) -> str | None:
        if not self._dirty or self.path is None:
            return None
        self._dirty = False
        return json.dumps(self._data, separators=(",", ":"))

    def _write(self, text: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    def flush(self) -> None:
        text = self._snapshot()
        if text is not None:
            self._write(text)

    async def run_flusher(self) -> None:
        """Write the file at most once per flush_interval while the runtime lives (and once at the end)."""
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                # Serialise on the loop (the dict changes under it otherwise), write in a thread.
                text = self._snapshot()
                if text is not None:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(self._write, text)
        finally:
            with contextlib.suppress(OSError):
                self.flush()
