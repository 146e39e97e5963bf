"""A bench-only agent streaming timestamped text at a fixed rate (never seeded in the product)."""

import time
from typing import Any

from agents.runtime.base import Agent, RunContext, int_option
from bench.pacing import paced


class FirehoseAgent(Agent):
    """Emits `count` partial_result events at `rate` per second, each carrying its emit time."""

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Accept rate (1-10000 per second) and count (1-1000000)."""
        return {
            "rate": int_option(options, "rate", default=10, low=1, high=10_000),
            "count": int_option(options, "count", default=10, low=1, high=1_000_000),
        }

    async def run(self, ctx: RunContext) -> str:
        """Stream the events on schedule (late ones go at once)."""
        rate, count = ctx.options["rate"], ctx.options["count"]
        async for _ in paced(rate, count):
            await ctx.stream(f"{time.time():.6f}")
        return f"{count} events"
