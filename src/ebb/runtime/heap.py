"""Keeping the garbage collector's pauses short when thousands of objects are scaled in one process.

A full collection walks every tracked object: with 10,000 ScaledObjects (their scalers, sessions, models)
that stalls the event loop for most of a second, and every poll due meanwhile starts late and in a burst.
Objects that live as long as the runtime are moved out of the collector's reach with `gc.freeze()`: once
after building, and once more after the first round of polls (scalers open their connections lazily).
"""

from __future__ import annotations

import asyncio
import gc


def freeze_heap(collect: bool = True) -> None:
    """Move every object alive now to the permanent generation (collected garbage first, if `collect`)."""
    if collect:
        gc.collect()
    gc.freeze()


async def refreeze_after(delay: float) -> None:
    """Freeze again once the first polls have opened their connections.

    No collection first: that would be the very pause this avoids; at worst the cyclic garbage of the
    first round stays uncollected, once.
    """
    await asyncio.sleep(delay)
    freeze_heap(collect=False)
