"""Persisted per-object state, so that a restart of ebb resumes cooldowns and replica counts instead of flapping.

The file also records this run's worker processes (pid and kernel start time) and a run id that every
worker carries in its environment: the next ebb uses them to stop what a killed ebb left behind.

A file that does not parse or whose values have the wrong types is moved aside (`state.json.damaged-<time>`)
and reported; ebb then starts fresh. A failed write is reported once, and its recovery too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ebb.scaling.types import LifecycleState
from ebb.targets.base import ChildRecord

#: The key of this run's own record in the file (object keys are Kind/namespace/name, never this).
RUN_KEY = "_ebb"

#: Receives (reason, message) for the event log: StateFileDamaged, StateWriteFailed, StateWriteRecovered.
ProblemSink = Callable[[str, str], None]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lifecycle: LifecycleState | None = None
    replicas: int | None = Field(default=None, ge=0)
    saved_at: float | None = None


class RunRecord(BaseModel):
    """The ebb that last wrote the file and the worker processes it had then."""

    model_config = ConfigDict(extra="ignore")

    pid: int
    run_id: str
    children: list[tuple[int, float | None]] = Field(default_factory=list)


_ENTRIES: TypeAdapter[dict[str, _Entry]] = TypeAdapter(dict[str, _Entry])


def _where(error: ValidationError) -> str:
    first = error.errors()[0]
    path = ".".join(str(p) for p in first["loc"])
    return f"{path}: {first['msg']}" if path else str(first["msg"])


class StateStore:
    """A JSON file of {object key: {lifecycle, replicas, saved_at}}, written atomically off the hot path."""

    def __init__(
        self,
        path: Path | None,
        flush_interval: float = 1.0,
        *,
        on_problem: ProblemSink | None = None,
        run_id: str = "",
    ) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.on_problem = on_problem
        self.run_id = run_id
        self._data: dict[str, dict[str, Any]] = {}
        self._entries: dict[str, _Entry] = {}
        self._dirty = False
        self._write_failing = False
        #: Where this run's live children come from (set by the runtime); recorded when they change.
        self.children_source: Callable[[], Sequence[ChildRecord]] | None = None
        self._children_written: list[tuple[int, float | None]] | None = None
        #: What the previous ebb recorded about itself, if anything (for the leftover cleanup).
        self.previous_run: RunRecord | None = None
        #: Problems found while loading, reported once an observer exists (see `report_load_problems`).
        self.load_problems: list[tuple[str, str]] = []
        if path is not None:
            self._load(path)

    # --- loading ---------------------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text()
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing saved yet (a directory that cannot hold it is reported at the first write)
        except (OSError, UnicodeDecodeError) as exc:
            self._damaged(path, f"cannot be read ({exc})")
            return
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
            run = raw.pop(RUN_KEY, None)
            previous = RunRecord.model_validate(run) if run is not None else None
            entries = _ENTRIES.validate_python(raw)
        except ValidationError as exc:
            self._damaged(path, f"has a wrong value at {_where(exc)}")
            return
        except ValueError as exc:  # JSONDecodeError included
            self._damaged(path, f"is not valid state JSON ({exc})")
            return
        self.previous_run = previous
        self._entries = entries
        self._data = {k: v for k, v in raw.items() if isinstance(v, dict)}

    def _damaged(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        try:
            os.replace(path, aside)
            moved = f"moved aside to {aside}"
        except OSError as exc:
            moved = f"could not be moved aside ({exc.strerror or exc})"
        self.load_problems.append(
            ("StateFileDamaged", f"state file {path} {why}; {moved}; starting without saved state")
        )
        self._dirty = True  # write a good file at the first flush

    def report_load_problems(self) -> None:
        problems, self.load_problems = self.load_problems, []
        for reason, message in problems:
            self._report(reason, message)

    def _report(self, reason: str, message: str) -> None:
        if self.on_problem is not None:
            with contextlib.suppress(Exception):
                self.on_problem(reason, message)

    # --- reading and saving ----------------------------------------------------------------------

    def lifecycle(self, key: str) -> LifecycleState | None:
        entry = self._entries.get(key)
        return entry.lifecycle if entry is not None else None

    def replicas(self, key: str) -> int | None:
        entry = self._entries.get(key)
        return entry.replicas if entry is not None else None

    def save(self, key: str, lifecycle: LifecycleState, replicas: int) -> None:
        self._data[key] = {"lifecycle": asdict(lifecycle), "replicas": replicas, "saved_at": time.time()}
        self._dirty = True

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)
        if self._data.pop(key, None) is not None:
            self._dirty = True

    def _children(self) -> list[tuple[int, float | None]] | None:
        if self.children_source is None:
            return None
        try:
            return sorted((c.pid, c.create_time) for c in self.children_source())
        except Exception:  # a target changing under us: next time
            return self._children_written

    def _snapshot(self) -> str | None:
        if self.path is None:
            return None
        children = self._children()
        if not self._dirty and children == self._children_written:
            return None
        self._dirty = False
        self._children_written = children
        data: dict[str, Any] = dict(self._data)
        if children is not None:
            data[RUN_KEY] = {"pid": os.getpid(), "run_id": self.run_id, "children": children}
        return json.dumps(data, separators=(",", ":"))

    def _write(self, text: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)

    def _wrote(self, error: OSError | None) -> None:
        if error is not None:
            self._dirty = True  # try again next time
            self._children_written = None
            if not self._write_failing:
                self._write_failing = True
                self._report(
                    "StateWriteFailed",
                    f"cannot write the state file {self.path}: {error.strerror or error}; "
                    "replica counts and cooldowns will not survive a restart until it works again",
                )
        elif self._write_failing:
            self._write_failing = False
            self._report("StateWriteRecovered", f"the state file {self.path} is written again")

    def flush(self) -> None:
        text = self._snapshot()
        if text is not None:
            try:
                self._write(text)
            except OSError as exc:
                self._wrote(exc)
            else:
                self._wrote(None)

    def clear_children(self) -> None:
        """At a clean stop: no worker is left, so the next ebb has nothing to clean up."""
        self.children_source = None
        if self.path is not None:
            self._dirty = True

    async def run_flusher(self) -> None:
        """Write the file at most once per flush_interval while the runtime lives (and once at the end)."""
        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                # Serialise on the loop (the dict changes under it otherwise), write in a thread.
                text = self._snapshot()
                if text is not None:
                    try:
                        await asyncio.to_thread(self._write, text)
                    except OSError as exc:
                        self._wrote(exc)
                    else:
                        self._wrote(None)
        finally:
            self.flush()
