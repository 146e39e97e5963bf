"""The triage agent: reads the message, picks a tool, answers with its result."""

import asyncio
import re
from typing import Any

from agents.runtime.base import Agent, RunContext

# A run of arithmetic characters holding at least one digit and one operator.
ARITHMETIC = re.compile(r"[\d.\s()+\-*/%^×÷]*\d[\d.\s()+\-*/%^×÷]*")
OPERATOR = re.compile(r"\d\s*(\*\*|[+\-*/%^×÷])\s*[\d(.\-]")
TIME_WORDS = re.compile(r"\b(time|clock|date|today|now)\b", re.IGNORECASE)
CHUNK_CHARS = 40


def find_expression(message: str) -> str | None:
    """Return the longest arithmetic expression in the message, if any."""
    candidates = [m.group().strip() for m in ARITHMETIC.finditer(message)]
    candidates = [c for c in candidates if OPERATOR.search(c)]
    return max(candidates, key=len) if candidates else None


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split text into streamable pieces at word boundaries."""
    pieces: list[str] = []
    current = ""
    for word in re.findall(r"\S+\s*", text):
        if current and len(current) + len(word) > size:
            pieces.append(current)
            current = ""
        current += word
    if current:
        pieces.append(current)
    return pieces


class TriageAgent(Agent):
    """Answers with the calculator, the clock or the knowledge base."""

    async def run(self, ctx: RunContext) -> str:
        """Pick a tool for the message, call it, and stream the answer."""
        await ctx.think("Reading the request to choose a tool.", step=1, progress=10)
        expression = find_expression(ctx.message)
        if expression is not None:
            answer = await self._calculate(ctx, expression)
        elif TIME_WORDS.search(ctx.message):
            answer = await self._tell_time(ctx)
        else:
            answer = await self._search(ctx)
        await ctx.think("Writing the answer.", step=2, progress=90)
        for piece in chunks(answer):
            await ctx.stream(piece)
            await asyncio.sleep(0)
        return answer

    async def _calculate(self, ctx: RunContext, expression: str) -> str:
        outcome = await ctx.call_tool("calculator", {"expression": expression})
        if not outcome.ok:
            return f"I could not calculate {expression}: {outcome.error}."
        return f"{expression} = {outcome.result['text']}"

    async def _tell_time(self, ctx: RunContext) -> str:
        outcome = await ctx.call_tool("clock", {})
        if not outcome.ok:
            return f"I could not read the clock: {outcome.error}."
        return f"It is {outcome.result['utc']} (UTC)."

    async def _search(self, ctx: RunContext) -> str:
        outcome = await ctx.call_tool("kb_search", {"query": ctx.message[:200], "limit": 3})
        if not outcome.ok:
            return f"I could not search the knowledge base: {outcome.error}."
        hits: list[dict[str, Any]] = outcome.result["hits"]
        if not hits:
            return "I found nothing about that in the knowledge base."
        best = hits[0]
        return f"{best['title']}: {best['snippet']}"
