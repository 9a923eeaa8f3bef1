"""How a ScaledObjectLoop schedules polls: spread start offsets, pushes that wake an idle object."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from ebb.runtime.observer import ObjectRef
from ebb.runtime.scaled_object import PUSH_MIN_GAP, ScaledObjectLoop, spread_offset
from ebb.scalers import build_scaler
from ebb.scalers.base import TriggerContext
from ebb.scaling.lifecycle import ScaledObjectDecider
from ebb.scaling.types import ObjectPolicy

from ._support import Recorder, eventually, make_backlog


class MemoryTarget:
    """A ScaleTarget that only remembers a number."""

    def __init__(self) -> None:
        self.replicas = 0

    async def get_replicas(self) -> int:
        return self.replicas

    async def set_replicas(self, n: int) -> None:
        self.replicas = n

    def ready_replicas(self) -> int:
        return self.replicas

    async def close(self) -> None:
        self.replicas = 0


def _loop(db: Path, rec: Recorder, target: MemoryTarget, **kw: float | None) -> ScaledObjectLoop:
    ctx = TriggerContext(name="sched", trigger_type="sqlite")
    scaler = build_scaler(
        "sqlite",
        {"databasePath": str(db), "query": "SELECT count(*) FROM work", "targetQueryValue": "1"},
        ctx=ctx,
    )
    interval = float(kw.pop("polling_interval", None) or 3600.0)
    decider = ScaledObjectDecider(ObjectPolicy(max_replicas=5, polling_interval=interval, cooldown_period=0))
    return ScaledObjectLoop(
        ObjectRef("ScaledObject", "default", "sched"),
        [scaler],
        target,
        decider,
        polling_interval=interval,
        observer=rec,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("count", "interval", "span"),
    [
        (1, 30.0, 0.0),  # one object polls at once
        (4, 30.0, 0.02),  # few objects: 5 ms apart, not spread over the whole interval
        (10_000, 30.0, 30.0),  # many: spread over the interval, never beyond it
        (100, 0.2, 0.2),
    ],
)
def test_spread_offsets_are_even_and_within_the_interval(count: int, interval: float, span: float) -> None:
    offsets = [spread_offset(i, count, interval) for i in range(count)]
    assert offsets[0] == 0.0
    assert all(0.0 <= o < interval or o == 0.0 for o in offsets)
    assert offsets == sorted(offsets)
    assert max(offsets) == pytest.approx(span * (count - 1) / count)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert len(gaps) <= 1  # evenly spaced


async def test_a_push_right_after_a_poll_is_deferred_not_dropped(tmp_path: Path) -> None:
    """The poll that just ran may have read the source before the work arrived: the push must still count."""
    db = tmp_path / "work.db"
    make_backlog(db, rows=0)
    rec, target = Recorder(), MemoryTarget()
    so = _loop(db, rec, target)  # an hour between polls: only the push can activate it in time
    task = asyncio.create_task(so.run())
    try:
        await eventually(lambda: len(rec.polls) >= 1, what="first poll")
        await so.poll_once()
        make_backlog(db, rows=3)
        so.notify()  # within PUSH_MIN_GAP of that poll's start
        await eventually(lambda: target.replicas > 0, within=5, what="activation by the deferred push")
        assert rec.polls[-1].desired_replicas > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pushes_to_a_busy_object_do_not_cause_polls(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=2)
    rec, target = Recorder(), MemoryTarget()
    so = _loop(db, rec, target)
    task = asyncio.create_task(so.run())
    try:
        await eventually(lambda: target.replicas > 0, what="first poll activates")
        polls = len(rec.polls)
        for _ in range(20):
            so.notify()
            await asyncio.sleep(PUSH_MIN_GAP / 4)
        await asyncio.sleep(PUSH_MIN_GAP * 2)
        assert len(rec.polls) == polls
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_of_pushes_to_an_idle_object_polls_a_bounded_number_of_times(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    make_backlog(db, rows=0)
    rec, target = Recorder(), MemoryTarget()
    so = _loop(db, rec, target)
    task = asyncio.create_task(so.run())
    try:
        await eventually(lambda: len(rec.polls) >= 1, what="first poll")
        before = len(rec.polls)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < PUSH_MIN_GAP * 4:  # the source keeps saying "new work" (all of it removed)
            so.notify()
            await asyncio.sleep(0)
        elapsed = loop.time() - start
        await asyncio.sleep(PUSH_MIN_GAP * 2)
        # At most one poll per PUSH_MIN_GAP, plus the one at the end of the last gap.
        assert 1 <= len(rec.polls) - before <= elapsed / PUSH_MIN_GAP + 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_push_gap_follows_only_polls_a_push_woke(tmp_path: Path) -> None:
    """A push right after a timer poll wakes the loop at once; one right after a push-woken poll waits the gap."""
    db = tmp_path / "work.db"
    make_backlog(db, rows=0)
    rec, target = Recorder(), MemoryTarget()
    so = _loop(db, rec, target)
    task = asyncio.create_task(so.run())
    try:
        await eventually(lambda: len(rec.polls) >= 1, what="first (timer) poll")
        await so.poll_once()  # a poll no push woke, just now
        before = len(rec.polls)
        so.notify()
        assert so._woken and so._deferred is None  # at once, though a poll just started
        timer_poll_done = time.monotonic()
        await eventually(lambda: len(rec.polls) > before and not so._woken, what="the push-woken poll")
        assert so._last_push_poll >= timer_poll_done  # that poll counts as push-woken
        so._last_push_poll = time.monotonic()  # as if it had started just now (no timing in this test)
        so.notify()
        assert not so._woken and so._deferred is not None  # within the gap of a push-woken poll: deferred
        await eventually(lambda: len(rec.polls) > before + 1, what="the deferred poll")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
