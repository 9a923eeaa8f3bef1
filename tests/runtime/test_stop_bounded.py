"""Stopping is bounded even when a task swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from ebb.runtime.local import cancel_and_wait
from ebb.targets.jobs import JobRunner

from ._support import eventually


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    async def swallows_once() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # what asyncio.wait_for can do in Python 3.11
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    task = asyncio.create_task(swallows_once())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], 5.0) == []
    assert task.cancelled()


async def test_a_task_that_never_stops_is_left_behind_after_the_bound() -> None:
    released = False

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if released:
                    raise
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await cancel_and_wait([task], 0.3) == [task]
    assert time.monotonic() - started < 5.0
    released = True  # let the test end cleanly
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_finished_jobs_leave_the_history_after_ttl_seconds_after_finished() -> None:
    jobs = JobRunner("t", [sys.executable, "-c", "pass"], output=lambda n, line: None, ttl_seconds_after_finished=0.3)
    await jobs.start(1)
    await eventually(lambda: bool(jobs.succeeded()), what="the job to finish")
    assert [r.name for r in jobs.succeeded()] == ["t-1"]
    await asyncio.sleep(0.4)
    assert jobs.succeeded() == [] and jobs.succeeded_total == 1
    await jobs.close()
