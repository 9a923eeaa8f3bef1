"""The runtime keeps long-lived objects out of the garbage collector's full collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ebb.runtime.heap import freeze_heap, refreeze_after


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_heap_moves_live_objects_out_of_collection(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    keep = [[i] for i in range(1000)]  # lists are always tracked by the collector
    freeze_heap()
    assert gc.get_freeze_count() >= len(keep)


async def test_refreeze_freezes_what_was_created_since(unfrozen: None) -> None:
    freeze_heap()
    before = gc.get_freeze_count()
    later = [[i] for i in range(1000)]
    await refreeze_after(0)
    assert gc.get_freeze_count() >= before + len(later)
