"""The `llm` agent: any OpenAI-compatible chat-completions API through the official `openai` SDK."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import openai
from channels.db import database_sync_to_async
from django.conf import settings
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageParam

from agents.runtime.base import Agent, AgentDefinition, AgentFailure, RunContext
from agents.runtime.tools import get_tool
from agents.selectors import thread_history

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Use the tools when they help."
# Errors of the SDK, most specific first, and the agent_error code each becomes.
SDK_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (openai.AuthenticationError, "llm_unauthorized"),
    (openai.PermissionDeniedError, "llm_unauthorized"),
    (openai.RateLimitError, "llm_rate_limited"),
    (openai.InternalServerError, "llm_server_error"),
    (openai.APIStatusError, "llm_bad_request"),
    (openai.APITimeoutError, "llm_timeout"),
    (openai.APIConnectionError, "llm_unreachable"),
    (openai.APIError, "llm_error"),
)


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
    context_chars: int
    flush_seconds: float
    stream_usage: bool

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
            context_chars=int(config.get("context_chars") or settings.LLM_CONTEXT_CHARS),
            flush_seconds=settings.LLM_STREAM_FLUSH_SECONDS,
            # Servers that refuse stream_options can turn usage reports off per agent.
            stream_usage=bool(config.get("stream_usage", True)),
        )


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


# What users read for each failure; the detail (addresses, the server's words) is logged.
PLAIN = {
    "llm_unauthorized": "the language model refused our credentials",
    "llm_rate_limited": "the language model is busy; try again in a moment",
    "llm_server_error": "the language model had a problem on its side",
    "llm_bad_request": "the language model did not accept the request",
    "llm_timeout": "the language model did not answer in time",
    "llm_unreachable": "the language model could not be reached",
    "llm_error": "the language model reported an error",
    "llm_bad_response": "the language model's answer could not be read",
    "llm_tool_rounds": "the language model kept asking for tools, so the run stopped",
}


def _llm_failure(code: str, detail: str) -> AgentFailure:
    return AgentFailure(code, PLAIN[code], detail=detail)


def _failure(exc: Exception, cfg: LLMSettings) -> AgentFailure:
    """Turn an SDK error into the agent_error users see, with the detail for the log."""
    code = next((code for kind, code in SDK_ERRORS if isinstance(exc, kind)), "llm_error")
    if isinstance(exc, openai.APIStatusError):
        detail = f"{cfg.base_url} answered {exc.status_code}: {_status_message(exc)}"
    elif code == "llm_timeout":
        detail = f"{cfg.base_url} did not answer within {cfg.timeout:g} s"
    elif code == "llm_unreachable":
        detail = f"cannot reach {cfg.base_url}: {exc}"
    else:
        detail = f"{cfg.base_url}: {str(getattr(exc, 'message', exc))[:300]}"
    return _llm_failure(code, detail)


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc.response.reason_phrase or "error")[:300]


def _assistant_turn(message: ChatCompletionMessage) -> dict[str, Any]:
    """Return the model's tool-calling answer as the next request's assistant message."""
    return {
        "role": "assistant",
        "content": message.content or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls or []
            if call.type == "function"
        ],
    }


class LLMAgent(Agent):
    """Answers with a language model, streaming its text and running its tool calls."""

    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "base_url": {"type": "string", "pattern": "^https?://"},
            "model": {"type": "string", "minLength": 1},
            "system_prompt": {"type": "string"},
            "api_key_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "max_tool_rounds": {"type": "integer", "minimum": 0, "maximum": 20},
            "context_chars": {"type": "integer", "minimum": 0},
            "stream_usage": {"type": "boolean"},
        },
        "additionalProperties": False,
    }

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
        client = openai.AsyncOpenAI(
            base_url=cfg.base_url,
            # The SDK insists on a key; local servers without auth take any.
            api_key=cfg.api_key or "no-key",
            timeout=openai.Timeout(cfg.timeout, connect=min(10.0, cfg.timeout)),
            max_retries=cfg.max_retries,
        )
        async with client:
            for round_no in range(1, cfg.max_tool_rounds + 2):
                await ctx.think(
                    f"Asking {cfg.model} (round {round_no})",
                    step=round_no,
                    progress=min(90, 10 * round_no),
                )
                offer_tools = round_no <= cfg.max_tool_rounds
                message = await self._complete(client, cfg, ctx, messages, offer_tools)
                calls = message.tool_calls or []
                if not calls:
                    return message.content or ""
                if not offer_tools:
                    break
                messages.append(_assistant_turn(message))
                for call in calls:
                    messages.append(await self._run_tool(ctx, call))
        raise _llm_failure(
            "llm_tool_rounds",
            f"{cfg.model} still wanted tools after {cfg.max_tool_rounds} rounds",
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
    async def _run_tool(ctx: RunContext, call: Any) -> dict[str, Any]:
        arguments = call.function.arguments or "{}"
        try:
            parameters = json.loads(arguments)
        except ValueError:
            parameters = None
        if not isinstance(parameters, dict):
            # Still go through the dispatcher, so the user sees the failed call.
            parameters = {"invalid_arguments": arguments[:200]}
        # A call the user rejects (or lets expire) comes back as an error the model reads.
        outcome = await ctx.call_tool(call.function.name, parameters)
        content = outcome.result if outcome.ok else {"error": outcome.error}
        return {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps(content, default=str),
        }

    async def _complete(
        self,
        client: openai.AsyncOpenAI,
        cfg: LLMSettings,
        ctx: RunContext,
        messages: list[dict[str, Any]],
        offer_tools: bool,
    ) -> ChatCompletionMessage:
        """Stream one answer (the SDK assembles tool calls and retries 429s); count its usage."""
        extra: dict[str, Any] = {}
        tools = self._tool_specs() if offer_tools else []
        if tools:
            extra["tools"] = tools
        if cfg.stream_usage:
            extra["stream_options"] = {"include_usage": True}
        coalescer = Coalescer(ctx, cfg.flush_seconds)
        try:
            async with asyncio.timeout(cfg.timeout * 10):
                async with client.chat.completions.stream(
                    model=cfg.model,
                    messages=cast("list[ChatCompletionMessageParam]", messages),
                    **extra,
                ) as stream:
                    async for event in stream:
                        if event.type == "content.delta" and event.delta:
                            coalescer.add(event.delta)
                    completion = await stream.get_final_completion()
        except TimeoutError as exc:
            raise _llm_failure("llm_timeout", f"{cfg.base_url}: the answer took too long") from exc
        except openai.OpenAIError as exc:
            raise _failure(exc, cfg) from exc
        except (ValueError, TypeError, AssertionError) as exc:
            # Not JSON, or JSON that is not a chat-completion chunk.
            raise _llm_failure(
                "llm_bad_response", f"{cfg.base_url}: unreadable stream: {exc}"[:300]
            ) from exc
        finally:
            await coalescer.close()
        if completion.usage is not None:
            ctx.add_usage(
                input_tokens=completion.usage.prompt_tokens,
                output_tokens=completion.usage.completion_tokens,
            )
        if not completion.choices or completion.choices[0].finish_reason is None:
            raise _llm_failure(
                "llm_bad_response", f"{cfg.base_url}: the stream ended before it finished"
            )
        return completion.choices[0].message
