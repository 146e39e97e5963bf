"""The Agent interface and the context a run hands to it."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.module_loading import import_string
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from agents.errors import InvalidRequest, UnknownAgent, reference

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from agents.events.emitter import EventEmitter, RunRef
    from agents.runtime.inputs import InputAnswer, InputAsker
    from agents.runtime.tools import ToolDispatcher, ToolOutcome


class AgentFailure(Exception):
    """A run that cannot go on: `code` and plain `message` for the user, `detail` for the log."""

    def __init__(self, code: str, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class AgentDefinition:
    """A snapshot of an Agent row, safe to use outside the ORM."""

    name: str
    implementation: str
    allowed_tools: tuple[str, ...] = ()
    approval_tools: tuple[str, ...] = ()
    tool_timeout_seconds: float = 30.0
    max_run_seconds: float = 600.0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    """Language-model tokens a run used, summed over its API calls."""

    input_tokens: int = 0
    output_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the usage as the agent_completed event and the run row carry it."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


class RunContext:
    """What an agent may do during a run: think, stream text, call tools, ask its user."""

    def __init__(
        self,
        *,
        ref: RunRef,
        message: str,
        options: dict[str, Any],
        emitter: EventEmitter,
        dispatcher: ToolDispatcher,
        asker: InputAsker | None = None,
    ) -> None:
        self.ref = ref
        self.message = message
        self.options = options
        self._emitter = emitter
        self._dispatcher = dispatcher
        self._asker = asker
        # Set by agents that call a language model (add_usage); None for the others.
        self.usage: Usage | None = None

    async def think(self, reasoning: str, *, step: int, progress: float) -> None:
        """Emit an agent_thinking event (queued in order; the agent need not wait for its commit).

        Like streamed text, it is stored before it is sent, in its place among the
        run's events; only the agent goes on without waiting for the commit.
        """
        await self._emitter.stream(
            self.ref,
            "agent_thinking",
            {"reasoning": reasoning, "step": step, "progress": progress},
        )

    async def stream(self, delta: str) -> None:
        """Emit a partial_result event carrying streamed text (without waiting for its commit)."""
        await self._emitter.stream(self.ref, "partial_result", {"delta": delta})

    async def call_tool(
        self, name: str, parameters: dict[str, Any], *, approval: bool = False
    ) -> ToolOutcome:
        """Call a tool through the dispatcher, which emits its events (and asks first if needed)."""
        return await self._dispatcher.call(
            self._emitter, self.ref, name, parameters, approval=approval
        )

    async def ask(self, message: str, *, response_schema: Any = None) -> InputAnswer:
        """Ask the user a question and wait for the answer (or its rejection or expiry)."""
        if self._asker is None:
            raise AgentFailure("cannot_ask", "this run cannot ask its user")
        return await self._asker.ask(message, response_schema=response_schema)

    def add_usage(self, *, input_tokens: int, output_tokens: int) -> None:
        """Count language-model tokens used by this run."""
        if self.usage is None:
            self.usage = Usage()
        self.usage.input_tokens += max(0, int(input_tokens))
        self.usage.output_tokens += max(0, int(output_tokens))


class Agent(ABC):
    """An agent implementation; one instance serves one run."""

    # JSON Schema of the Agent row's `config` (checked when an admin saves the row).
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    # JSON Schema of the options a client may send with start_agent (the page builds
    # its fields from it); `clean_options` checks them.
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }

    def __init__(self, *, definition: AgentDefinition) -> None:
        self.definition = definition

    @classmethod
    def check_config(cls, config: Any) -> None:
        """Raise ValueError unless `config` fits `config_schema`."""
        error = best_match(Draft202012Validator(cls.config_schema).iter_errors(config))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "config"
            raise ValueError(f"{where}: {error.message}")

    @classmethod
    def clean_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Check the client's options against `options_schema` and fill in its defaults."""
        error = best_match(Draft202012Validator(cls.options_schema).iter_errors(options))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            raise InvalidRequest(f"options{'.' + where if where else ''}: {error.message}")
        properties = cls.options_schema.get("properties", {})
        cleaned = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
        for name, value in options.items():
            # JSON Schema counts 5.0 as an integer; the agent gets 5.
            integer = properties.get(name, {}).get("type") == "integer"
            cleaned[name] = int(value) if integer else value
        return cleaned

    @abstractmethod
    async def run(self, ctx: RunContext) -> str:
        """Do the work of one run and return the final answer."""


@cache
def load_agent_class(path: str) -> type[Agent]:
    """Import the Agent subclass named by a dotted path."""
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise _unavailable(f"agent implementation {path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise _unavailable(f"{path!r} is not an Agent implementation")
    return cls


def load_agent_class_checked(path: str) -> type[Agent]:
    """Import an Agent subclass for the admin; raise ValueError saying what is wrong."""
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ValueError(f"{path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ValueError(f"{path!r} is not a subclass of agents.runtime.base.Agent")
    return cls


def _unavailable(detail: str) -> UnknownAgent:
    """A misconfigured agent: users get plain words and a reference, the log the detail."""
    ref = reference()
    logger.error("agent unavailable ref=%s: %s", ref, detail)
    return UnknownAgent(f"this agent is not available right now (reference {ref})")
