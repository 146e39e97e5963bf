"""The Agent interface and the context a run hands to it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string

from agents.errors import InvalidRequest, UnknownAgent

if TYPE_CHECKING:
    from agents.events.emitter import EventEmitter, RunRef
    from agents.runtime.tools import ToolDispatcher, ToolOutcome


class AgentFailure(Exception):
    """A run that cannot go on; `code` becomes agent_error.error.code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AgentDefinition:
    """A snapshot of an Agent row, safe to use outside the ORM."""

    name: str
    implementation: str
    allowed_tools: tuple[str, ...] = ()
    tool_timeout_seconds: float = 30.0
    max_run_seconds: float = 600.0
    config: dict[str, Any] = field(default_factory=dict)


class RunContext:
    """What an agent may do during a run: think, stream text and call tools."""

    def __init__(
        self,
        *,
        ref: RunRef,
        message: str,
        options: dict[str, Any],
        emitter: EventEmitter,
        dispatcher: ToolDispatcher,
    ) -> None:
        self.ref = ref
        self.message = message
        self.options = options
        self._emitter = emitter
        self._dispatcher = dispatcher

    async def think(self, reasoning: str, *, step: int, progress: float) -> None:
        """Emit an agent_thinking event."""
        await self._emitter.emit(
            self.ref,
            "agent_thinking",
            {"reasoning": reasoning, "step": step, "progress": progress},
        )

    async def stream(self, delta: str) -> None:
        """Emit a partial_result event carrying streamed text (without waiting for its commit)."""
        await self._emitter.stream(self.ref, "partial_result", {"delta": delta})

    async def call_tool(self, name: str, parameters: dict[str, Any]) -> ToolOutcome:
        """Call a tool through the dispatcher, which emits its events."""
        return await self._dispatcher.call(self._emitter, self.ref, name, parameters)


class Agent(ABC):
    """An agent implementation; one instance serves one run."""

    def __init__(self, *, definition: AgentDefinition) -> None:
        self.definition = definition

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Validate the client's options; raise InvalidRequest when they are wrong."""
        if options:
            raise InvalidRequest(f"unknown options: {', '.join(sorted(options))}")
        return {}

    @abstractmethod
    async def run(self, ctx: RunContext) -> str:
        """Do the work of one run and return the final answer."""


@cache
def load_agent_class(path: str) -> type[Agent]:
    """Import the Agent subclass named by a dotted path."""
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise UnknownAgent(f"agent implementation {path!r} cannot be imported") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UnknownAgent(f"{path!r} is not an Agent implementation")
    return cls


def int_option(options: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    """Read an integer option within [low, high] or raise InvalidRequest."""
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"options.{name} must be an integer from {low} to {high}")
    return value
