"""A bench-only agent streaming timestamped text at a fixed rate (never seeded in the product)."""

import asyncio
import time
from typing import Any, ClassVar

from agents.runtime.base import Agent, RunContext
from bench.pacing import paced


class FirehoseAgent(Agent):
    """Emits `count` partial_result events at `rate` per second, each carrying its emit time."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "rate": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 10},
            "count": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 10},
            "phase": {"type": "integer", "minimum": 0, "maximum": 999, "default": 0},
            "start_in_ms": {"type": "integer", "minimum": 0, "maximum": 60_000, "default": 0},
        },
        "additionalProperties": False,
    }

    async def run(self, ctx: RunContext) -> str:
        """Stream the events on schedule (late ones go at once)."""
        rate, count = ctx.options["rate"], ctx.options["count"]
        # The bench starts every user's run first, then all stream together.
        await asyncio.sleep(ctx.options["start_in_ms"] / 1000)
        async for _ in paced(rate, count, ctx.options["phase"] / 1000):
            await ctx.stream(f"{time.time():.6f}")
        return f"{count} events"
