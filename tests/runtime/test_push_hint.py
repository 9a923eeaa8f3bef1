"""A push source that is not set up for push (stock Redis: keyspace notifications off) is one hint per server,
not an error per trigger and retry."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from rich.console import Console

from ebb.errors import PushUnavailable, ScalerError
from ebb.observe.console import ConsoleObserver
from ebb.runtime import scaled_object
from ebb.runtime.observer import ObjectRef, Observer, Observers
from ebb.runtime.scaled_object import watch_scaler


class NoPush:
    """A scaler whose server has push turned off (as the redis scaler reports it)."""

    def __init__(self, server: str, index: int) -> None:
        self.server = server
        self.ctx = SimpleNamespace(trigger_ref=f"triggers[{index}] (redis)")
        self.calls = 0

    async def watch(self, notify: Callable[[], None]) -> None:
        self.calls += 1
        raise PushUnavailable("ScaledObject default/x", self.ctx.trigger_ref, f"{self.server}: notifications off",
                              key=self.server)  # fmt: skip


class Problems(Observer):
    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        self.problems.append(message)


async def test_push_unavailable_is_one_hint_per_server_and_never_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaled_object, "PUSH_RECHECK", 0.01)
    out = io.StringIO()
    problems = Problems()
    observers = Observers([ConsoleObserver(Console(file=out, width=400)), problems])
    scalers = [NoPush("redis://a:6379", i) for i in range(4)] + [NoPush("redis://b:6379", 9)]
    tasks = [
        asyncio.create_task(
            watch_scaler(s, lambda: None, ObjectRef("ScaledObject", "default", f"o{i}"), observers, lambda: 0.0)  # type: ignore[arg-type]
        )
        for i, s in enumerate(scalers)
    ]
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(s.calls > 3 for s in scalers)  # re-checked quietly
    lines = out.getvalue().splitlines()
    assert [line.split(" hint ")[1] for line in lines] == [
        "redis://a:6379: notifications off",
        "redis://b:6379: notifications off",
    ]
    assert problems.problems == []


class Broken(NoPush):
    async def watch(self, notify: Callable[[], None]) -> None:
        raise ScalerError("ScaledObject default/x", self.ctx.trigger_ref, "refused the subscription")


async def test_other_push_failures_are_still_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = Problems()
    task = asyncio.create_task(
        watch_scaler(Broken("s", 0), lambda: None, ObjectRef("ScaledObject", "default", "o"), problems, lambda: 0.0)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert problems.problems and "push unavailable" in problems.problems[0]
