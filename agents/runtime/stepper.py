"""The stepper demo agent: N steps, a pause and one tool call each."""

import asyncio
from typing import Any

from agents.runtime.base import Agent, RunContext, int_option


class StepperAgent(Agent):
    """Thinks in `steps` steps with `delay_ms` between them; for demos and load."""

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Accept steps (1-100, default 5) and delay_ms (0-5000, default 200)."""
        unknown = set(options) - {"steps", "delay_ms"}
        if unknown:
            return super().clean_options({k: options[k] for k in unknown})
        return {
            "steps": int_option(options, "steps", default=5, low=1, high=100),
            "delay_ms": int_option(options, "delay_ms", default=200, low=0, high=5000),
        }

    async def run(self, ctx: RunContext) -> str:
        """Run the steps, each with a calculator call and a line of streamed text."""
        steps, delay = ctx.options["steps"], ctx.options["delay_ms"] / 1000
        for step in range(1, steps + 1):
            await ctx.think(
                f"Step {step} of {steps}", step=step, progress=round(step * 100 / steps)
            )
            outcome = await ctx.call_tool("calculator", {"expression": f"{step}*{step}"})
            value = outcome.result["text"] if outcome.ok else outcome.error
            await ctx.stream(f"step {step}: {value}\n")
            if delay and step < steps:
                await asyncio.sleep(delay)
        return f"Completed {steps} steps."
