"""The `llm` agent: any OpenAI-compatible /v1/chat/completions endpoint, streamed, with tools."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from channels.db import database_sync_to_async
from django.conf import settings

from agents.runtime.base import Agent, AgentDefinition, AgentFailure, RunContext
from agents.runtime.tools import get_tool
from agents.selectors import thread_history

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Use the tools when they help."
STATUS_CODES = {401: "llm_unauthorized", 403: "llm_unauthorized", 429: "llm_rate_limited"}


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to call the model, from settings and the Agent row's config."""

    base_url: str
    api_key: str = field(repr=False)
    model: str
    system_prompt: str
    timeout: float
    max_tool_rounds: int
    max_retries: int
    max_retry_wait: float
    context_chars: int
    flush_seconds: float

    @classmethod
    def for_agent(cls, definition: AgentDefinition) -> LLMSettings:
        """Combine the LLM_* settings with the agent's own overrides."""
        config = definition.config
        key_env = config.get("api_key_env")
        # The row names a variable, never holds a key: keys stay out of the admin.
        api_key = os.environ.get(str(key_env), "") if key_env else settings.LLM_API_KEY
        return cls(
            base_url=str(config.get("base_url") or settings.LLM_BASE_URL).rstrip("/"),
            api_key=api_key,
            model=str(config.get("model") or settings.LLM_MODEL),
            system_prompt=str(config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT),
            timeout=float(config.get("timeout_seconds") or settings.LLM_TIMEOUT_SECONDS),
            max_tool_rounds=int(config.get("max_tool_rounds") or settings.LLM_MAX_TOOL_ROUNDS),
            max_retries=settings.LLM_MAX_RETRIES,
            max_retry_wait=settings.LLM_MAX_RETRY_WAIT_SECONDS,
            context_chars=int(config.get("context_chars") or settings.LLM_CONTEXT_CHARS),
            flush_seconds=settings.LLM_STREAM_FLUSH_SECONDS,
        )


@dataclass
class ToolCall:
    """A tool call the model streamed in pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Completion:
    """One streamed answer of the model: its text and the tools it wants called."""

    text: str
    calls: list[ToolCall]


class Coalescer:
    """Sends streamed text as partial_result at most once an interval, dropping nothing."""

    def __init__(self, ctx: RunContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.pending = ""
        self._timer: asyncio.Task[None] | None = None

    def add(self, text: str) -> None:
        """Queue text for the next flush."""
        self.pending += text
        if self._timer is None:
            self._timer = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Send what is pending, if anything."""
        if self.pending:
            text, self.pending = self.pending, ""
            await self.ctx.stream(text)

    async def close(self) -> None:
        """Stop the timer and send the rest."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        await self.flush()


def _retry_after(response: httpx.Response, attempt: int) -> float:
    raw = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return min(8.0, 0.5 * 2**attempt)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return str(message or response.reason_phrase or "error")[:300]


class LLMAgent(Agent):
    """Answers with a language model, streaming its text and running its tool calls."""

    async def run(self, ctx: RunContext) -> str:
        """Talk with the model until it answers without asking for tools."""
        cfg = LLMSettings.for_agent(self.definition)
        history = await database_sync_to_async(thread_history)(
            thread_id=ctx.ref.thread_id,
            before_run_id=ctx.ref.run_id,
            budget_chars=cfg.context_chars,
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": cfg.system_prompt},
            *history,
            {"role": "user", "content": ctx.message},
        ]
        timeout = httpx.Timeout(cfg.timeout, connect=min(10.0, cfg.timeout))
        async with httpx.AsyncClient(base_url=cfg.base_url, timeout=timeout) as client:
            for round_no in range(1, cfg.max_tool_rounds + 2):
                await ctx.think(
                    f"Asking {cfg.model} (round {round_no})",
                    step=round_no,
                    progress=min(90, 10 * round_no),
                )
                offer_tools = round_no <= cfg.max_tool_rounds
                completion = await self._complete(client, cfg, ctx, messages, offer_tools)
                if not completion.calls:
                    return completion.text
                if not offer_tools:
                    break
                messages.append(self._assistant_turn(completion))
                for call in completion.calls:
                    messages.append(await self._run_tool(ctx, call))
        raise AgentFailure(
            "llm_tool_rounds", f"the model still wanted tools after {cfg.max_tool_rounds} rounds"
        )

    def _tool_specs(self) -> list[dict[str, Any]]:
        specs = []
        for name in self.definition.allowed_tools:
            tool = get_tool(name)
            if tool is not None:
                specs.append(
                    {
                        "type": "function",
                        "function": {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.parameters_schema,
                        },
                    }
                )
        return specs

    @staticmethod
    def _assistant_turn(completion: Completion) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": completion.text or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in completion.calls
            ],
        }

    @staticmethod
    async def _run_tool(ctx: RunContext, call: ToolCall) -> dict[str, Any]:
        try:
            parameters = json.loads(call.arguments or "{}")
        except ValueError:
            parameters = None
        if not isinstance(parameters, dict):
            # Still go through the dispatcher, so the user sees the failed call.
            parameters = {"invalid_arguments": call.arguments[:200]}
        outcome = await ctx.call_tool(call.name, parameters)
        content = outcome.result if outcome.ok else {"error": outcome.error}
        return {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps(content, default=str),
        }

    async def _complete(
        self,
        client: httpx.AsyncClient,
        cfg: LLMSettings,
        ctx: RunContext,
        messages: list[dict[str, Any]],
        offer_tools: bool,
    ) -> Completion:
        body: dict[str, Any] = {"model": cfg.model, "messages": messages, "stream": True}
        tools = self._tool_specs() if offer_tools else []
        if tools:
            body["tools"] = tools
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        waited = 0.0
        for attempt in range(cfg.max_retries + 1):
            try:
                async with client.stream(
                    "POST", "/chat/completions", json=body, headers=headers
                ) as response:
                    if response.status_code == 429 and attempt < cfg.max_retries:
                        wait = _retry_after(response, attempt)
                        if waited + wait <= cfg.max_retry_wait:
                            waited += wait
                            await asyncio.sleep(wait)
                            continue
                    if response.status_code >= 400:
                        await response.aread()
                        raise self._status_failure(response)
                    return await self._read_stream(response, ctx, cfg)
            except httpx.ConnectError as exc:
                raise AgentFailure("llm_unreachable", f"cannot connect to {cfg.base_url}") from exc
            except httpx.TimeoutException as exc:
                raise AgentFailure(
                    "llm_timeout", f"the model did not answer within {cfg.timeout:g} s"
                ) from exc
            except httpx.HTTPError as exc:
                raise AgentFailure("llm_unreachable", f"HTTP error: {type(exc).__name__}") from exc
        raise AgentFailure("llm_rate_limited", "the model kept answering 429 Too Many Requests")

    @staticmethod
    def _status_failure(response: httpx.Response) -> AgentFailure:
        status = response.status_code
        code = STATUS_CODES.get(status, "llm_server_error" if status >= 500 else "llm_bad_request")
        return AgentFailure(code, f"the model answered {status}: {_error_text(response)}")

    async def _read_stream(
        self, response: httpx.Response, ctx: RunContext, cfg: LLMSettings
    ) -> Completion:
        coalescer = Coalescer(ctx, cfg.flush_seconds)
        text: list[str] = []
        calls: dict[int, ToolCall] = {}
        finished = False
        deadline = time.monotonic() + cfg.timeout * 10
        try:
            async for line in response.aiter_lines():
                if time.monotonic() > deadline:
                    raise AgentFailure("llm_timeout", "the model's answer took too long")
                data = line.strip()
                if not data.startswith("data:"):
                    continue  # blank lines, comments, event: and id: fields
                data = data[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                finished = self._take_chunk(data, text, calls, coalescer) or finished
        finally:
            await coalescer.close()
        if not finished:
            raise AgentFailure("llm_bad_response", "the model's stream ended before it finished")
        return Completion(text="".join(text), calls=[calls[i] for i in sorted(calls)])

    @staticmethod
    def _take_chunk(
        data: str, text: list[str], calls: dict[int, ToolCall], coalescer: Coalescer
    ) -> bool:
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise AgentFailure("llm_bad_response", "the model's stream was not JSON") from exc
        if not isinstance(chunk, dict):
            raise AgentFailure("llm_bad_response", "the model's stream was not JSON objects")
        if isinstance(chunk.get("error"), dict):
            message = str(chunk["error"].get("message", "error"))[:300]
            raise AgentFailure("llm_error", f"the model reported: {message}")
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise AgentFailure("llm_bad_response", "the model's stream had no choices list")
        finished = False
        for choice in choices:
            if not isinstance(choice, dict):
                raise AgentFailure("llm_bad_response", "the model's stream had a bad choice")
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                text.append(content)
                coalescer.add(content)
            for piece in delta.get("tool_calls") or []:
                call = calls.setdefault(int(piece.get("index", 0)), ToolCall())
                call.id = piece.get("id") or call.id
                function = piece.get("function") or {}
                call.name += function.get("name") or ""
                call.arguments += function.get("arguments") or ""
            finished = finished or bool(choice.get("finish_reason"))
        return finished
