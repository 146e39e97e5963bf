"""The stepper demo agent: N steps, a pause and one tool call each; it can ask, too."""

import asyncio
import json
from typing import Any, ClassVar

from agents.errors import InvalidRequest
from agents.runtime.base import Agent, RunContext
from agents.runtime.inputs import MAX_QUESTION_CHARS, check_response_schema


class StepperAgent(Agent):
    """Thinks in `steps` steps with `delay_ms` between them; for demos, load and approvals."""

    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "steps": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 5,
                "title": "Steps",
            },
            "delay_ms": {
                "type": "integer",
                "minimum": 0,
                "maximum": 5000,
                "default": 200,
                "title": "Delay (ms)",
            },
            "approve_tools": {
                "type": "boolean",
                "default": False,
                "title": "Ask me before each tool call",
            },
            "ask": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUESTION_CHARS,
                "pattern": "\\S",
                "title": "Ask me first",
            },
            "ask_schema": {"type": "object", "title": "Answer's JSON Schema"},
        },
        "additionalProperties": False,
    }

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Check the options against the schema; an answer's schema must be a valid one."""
        cleaned = super().clean_options(options)
        if "ask_schema" in cleaned:
            if "ask" not in cleaned:
                raise InvalidRequest("options.ask_schema needs options.ask")
            try:
                check_response_schema(cleaned["ask_schema"])
            except ValueError as exc:
                raise InvalidRequest(f"options.ask_schema: {exc}") from exc
        return cleaned

    async def run(self, ctx: RunContext) -> str:
        """Ask first if told to, then run the steps: a calculator call and streamed text each."""
        steps, delay = ctx.options["steps"], ctx.options["delay_ms"] / 1000
        ending = ""
        if "ask" in ctx.options:
            reply = await ctx.ask(ctx.options["ask"], response_schema=ctx.options.get("ask_schema"))
            if reply.answered:
                answer = reply.answer if isinstance(reply.answer, str) else json.dumps(reply.answer)
                ending = f" Answer: {answer}"
            else:
                ending = f" No answer ({reply.outcome})."
        approval = bool(ctx.options.get("approve_tools"))
        for step in range(1, steps + 1):
            await ctx.think(
                f"Step {step} of {steps}", step=step, progress=round(step * 100 / steps)
            )
            outcome = await ctx.call_tool(
                "calculator", {"expression": f"{step}*{step}"}, approval=approval
            )
            value = outcome.result["text"] if outcome.ok else outcome.error
            await ctx.stream(f"step {step}: {value}\n")
            if delay and step < steps:
                await asyncio.sleep(delay)
        return f"Completed {steps} steps.{ending}"
