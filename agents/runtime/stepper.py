"""The stepper demo agent: N steps, a pause and one tool call each; it can ask, too."""

import asyncio
import json
from typing import Any, ClassVar

from agents.errors import InvalidRequest
from agents.runtime.base import Agent, RunContext, int_option
from agents.runtime.inputs import MAX_QUESTION_CHARS, check_response_schema

OPTIONS = {"steps", "delay_ms", "approve_tools", "ask", "ask_schema"}


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
            "ask": {"type": "string", "maxLength": MAX_QUESTION_CHARS, "title": "Ask me first"},
            "ask_schema": {"type": "object", "title": "Answer's JSON Schema"},
        },
        "additionalProperties": False,
    }

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Accept steps, delay_ms, approve_tools (bool), ask (a question) and ask_schema."""
        unknown = set(options) - OPTIONS
        if unknown:
            return super().clean_options({k: options[k] for k in unknown})
        approve = options.get("approve_tools", False)
        if not isinstance(approve, bool):
            raise InvalidRequest("options.approve_tools must be true or false")
        ask = options.get("ask")
        if ask is not None and (
            not isinstance(ask, str) or not ask.strip() or len(ask) > MAX_QUESTION_CHARS
        ):
            raise InvalidRequest(
                f"options.ask must be a question of 1 to {MAX_QUESTION_CHARS} characters"
            )
        schema = options.get("ask_schema")
        if schema is not None:
            if ask is None:
                raise InvalidRequest("options.ask_schema needs options.ask")
            try:
                check_response_schema(schema)
            except ValueError as exc:
                raise InvalidRequest(f"options.ask_schema: {exc}") from exc
        cleaned: dict[str, Any] = {
            "steps": int_option(options, "steps", default=5, low=1, high=100),
            "delay_ms": int_option(options, "delay_ms", default=200, low=0, high=5000),
        }
        if approve:
            cleaned["approve_tools"] = True
        if ask is not None:
            cleaned["ask"] = ask
        if schema is not None:
            cleaned["ask_schema"] = schema
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
