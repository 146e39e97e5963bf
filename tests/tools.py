"""Tools registered only in tests, to drive the dispatcher's edge cases."""

import asyncio
from typing import Any

from agents.runtime.base import Agent, RunContext
from agents.runtime.tools import Tool, ToolError


class SlowTool(Tool):
    name = "slow"

    async def run(self, parameters: dict[str, Any]) -> Any:
        await asyncio.sleep(float(parameters.get("seconds", 60)))
        return {"slept": parameters.get("seconds", 60)}


class BrokenTool(Tool):
    name = "broken"

    async def run(self, parameters: dict[str, Any]) -> Any:
        raise RuntimeError("internal detail that must not reach the user")


class RefusingTool(Tool):
    name = "refusing"

    async def run(self, parameters: dict[str, Any]) -> Any:
        raise ToolError("cannot do that")


class EchoTool(Tool):
    name = "echo"

    async def run(self, parameters: dict[str, Any]) -> Any:
        return parameters.get("value")


class ScriptedAgent(Agent):
    """Calls the tools listed in options['calls'] in order, then answers."""

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return options

    async def run(self, ctx: RunContext) -> str:
        for call in ctx.options.get("calls", []):
            await ctx.call_tool(call["tool"], call.get("parameters", {}))
        if ctx.options.get("fail"):
            raise RuntimeError(ctx.options["fail"])
        if ctx.options.get("hang"):
            await asyncio.sleep(3600)
        return "done"
