"""A bench-only agent streaming timestamped text at a fixed rate (never seeded in the product)."""

import asyncio
import time
from typing import Any

from agents.runtime.base import Agent, RunContext, int_option
from bench.pacing import paced


class FirehoseAgent(Agent):
    """Emits `count` partial_result events at `rate` per second, each carrying its emit time."""

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Accept rate (1-10000/s), count (1-1000000), phase (0-999 per mille), start_in_ms."""
        return {
            "rate": int_option(options, "rate", default=10, low=1, high=10_000),
            "count": int_option(options, "count", default=10, low=1, high=1_000_000),
            "phase": int_option(options, "phase", default=0, low=0, high=999),
            "start_in_ms": int_option(options, "start_in_ms", default=0, low=0, high=60_000),
        }

    async def run(self, ctx: RunContext) -> str:
        """Stream the events on schedule (late ones go at once)."""
        rate, count = ctx.options["rate"], ctx.options["count"]
        # The bench starts every user's run first, then all stream together.
        await asyncio.sleep(ctx.options["start_in_ms"] / 1000)
        async for _ in paced(rate, count, ctx.options["phase"] / 1000):
            await ctx.stream(f"{time.time():.6f}")
        return f"{count} events"
