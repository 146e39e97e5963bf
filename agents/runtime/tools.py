"""The Tool interface, the tool registry and the dispatcher that runs tool calls."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from django.conf import settings
from django.utils.module_loading import import_string
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from agents.events.sanitize import REDACTED
from agents.services.inputs import InputDecision

if TYPE_CHECKING:
    from agents.events.emitter import EventEmitter, RunRef

logger = logging.getLogger(__name__)


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the user."""


class Tool(ABC):
    """A named capability an agent can call with JSON parameters."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # JSON Schema of the parameters, offered to language models.
    parameters_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    @abstractmethod
    async def run(self, parameters: dict[str, Any]) -> Any:
        """Do the call and return a JSON-like result, or raise ToolError."""

    def check_parameters(self, parameters: dict[str, Any]) -> None:
        """Raise ToolError unless the parameters fit `parameters_schema` (edits are checked so)."""
        error = best_match(Draft202012Validator(self.parameters_schema).iter_errors(parameters))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "parameters"
            raise ToolError(f"{where}: {error.message}")


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one tool call as the agent sees it."""

    ok: bool
    result: Any = None
    error: str = ""


class ApprovalAsker(Protocol):
    """Asks the run's user to approve a tool call (agents/runtime/inputs.py InputAsker)."""

    async def approve_tool(
        self, *, tool_name: str, tool_call_id: str, parameters: dict[str, Any]
    ) -> InputDecision:
        """Wait for the user's decision on the call."""
        ...


@cache
def get_tool(name: str) -> Tool | None:
    """Return the tool registered under `name` in settings.AGENT_TOOLS."""
    path = settings.AGENT_TOOLS.get(name)
    if path is None:
        return None
    cls = import_string(path)
    tool = cls()
    if not isinstance(tool, Tool):
        raise TypeError(f"{path} is not a Tool")
    return tool


class ToolDispatcher:
    """Runs an agent's tool calls with a timeout and reports each as events."""

    def __init__(
        self,
        *,
        allowed_tools: Iterable[str],
        timeout_seconds: float,
        approval_tools: Iterable[str] = (),
        asker: ApprovalAsker | None = None,
    ) -> None:
        self.allowed_tools = frozenset(allowed_tools)
        self.timeout_seconds = timeout_seconds
        # Calls of these tools (and any call made with approval=True) wait for the user.
        self.approval_tools = frozenset(approval_tools)
        self.asker = asker

    async def call(
        self,
        emitter: EventEmitter,
        ref: RunRef,
        name: str,
        parameters: dict[str, Any],
        *,
        approval: bool = False,
    ) -> ToolOutcome:
        """Run one tool call; errors, refusals and timeouts become tool_error, never exceptions."""
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        started = time.monotonic()
        tool = get_tool(name) if name in self.allowed_tools else None
        if tool is not None and (approval or name in self.approval_tools):
            approved = await self._approval(name, call_id, parameters)
            if isinstance(approved, str):
                await self._report_error(emitter, ref, name, call_id, approved, started)
                return ToolOutcome(ok=False, error=approved)
            parameters, started = approved, time.monotonic()
        try:
            # Inside the try: a cancel that lands while this (shielded, so always
            # completed) emit runs still gets its tool_error "cancelled".
            await emitter.stream(
                ref,
                "tool_executing",
                {"tool_name": name, "tool_call_id": call_id, "parameters": parameters},
            )
            if tool is None:
                raise ToolError(f"tool {name!r} is not available to this agent")
            async with asyncio.timeout(self.timeout_seconds):
                result = await tool.run(parameters)
        except asyncio.CancelledError:
            await self._report_error(emitter, ref, name, call_id, "cancelled", started)
            raise
        except ToolError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"tool {name!r} timed out after {self.timeout_seconds:g} s"
        except Exception:
            logger.exception(
                "tool %s failed run_id=%s call=%s",
                name,
                ref.run_id,
                call_id,
                extra={"run_id": ref.run_id},
            )
            error = f"tool {name!r} failed with an internal error"
        else:
            await emitter.stream(
                ref,
                "tool_completed",
                {
                    "tool_name": name,
                    "tool_call_id": call_id,
                    "result": result,
                    "duration_ms": _elapsed_ms(started),
                },
            )
            return ToolOutcome(ok=True, result=result)
        await self._report_error(emitter, ref, name, call_id, error, started)
        return ToolOutcome(ok=False, error=error)

    async def _approval(
        self, name: str, call_id: str, parameters: dict[str, Any]
    ) -> dict[str, Any] | str:
        """Ask the user; return the parameters to run with, or why the call does not run."""
        if self.asker is None:
            return f"tool {name!r} needs approval, and this run cannot ask for it"
        decision = await self.asker.approve_tool(
            tool_name=name, tool_call_id=call_id, parameters=parameters
        )
        if decision.outcome == "approved":
            return parameters
        if decision.outcome == "edited":
            return with_secrets_kept(decision.response["parameters"], parameters)
        if decision.outcome == "rejected":
            why = decision.response.get("message")
            return f"the user rejected this call of {name!r}" + (f": {why}" if why else "")
        if decision.outcome == "expired":
            return f"nobody approved this call of {name!r} before the request expired"
        return f"this call of {name!r} was not approved ({decision.outcome})"

    async def _report_error(
        self,
        emitter: EventEmitter,
        ref: RunRef,
        name: str,
        call_id: str,
        error: str,
        started: float,
    ) -> None:
        await emitter.stream(
            ref,
            "tool_error",
            {
                "tool_name": name,
                "tool_call_id": call_id,
                "error": error,
                "duration_ms": _elapsed_ms(started),
            },
        )


def with_secrets_kept(edited: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """Keep the original value of a secret the user saw redacted and sent back unchanged."""
    return {
        key: original[key] if value == REDACTED and key in original else value
        for key, value in edited.items()
    }


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
