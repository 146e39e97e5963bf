"""Sending at a fixed rate, shared by the benchmark servers and the firehose agent."""

import asyncio
import time
from collections.abc import AsyncIterator


async def paced(rate: float, count: int, phase: float = 0.0) -> AsyncIterator[int]:
    """Yield 0..count-1, each no earlier than its slot at `rate` per second (late ones at once).

    `phase` (0 to 1) shifts every slot by that fraction of an interval, so many
    senders at the same rate spread their events instead of sending together.
    """
    started = time.perf_counter() + phase / rate
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i
