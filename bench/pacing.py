"""Sending at a fixed rate, shared by the benchmark servers and the firehose agent."""

import asyncio
import time
from collections.abc import AsyncIterator


async def paced(rate: float, count: int) -> AsyncIterator[int]:
    """Yield 0..count-1, each no earlier than its slot at `rate` per second (late ones at once)."""
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i
