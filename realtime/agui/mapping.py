"""Our agent events as AG-UI events, built with the `ag-ui-protocol` package's models.

One of our events becomes zero or more AG-UI events; all of them carry its seq
as their SSE id. A translator keeps, per run, what AG-UI needs to stay well
formed across events (an open text message, the tool calls it has started,
the text streamed so far), so it is fed a run's events in seq order; a stream
that starts after some of them is first `prime`d with them.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder

ENCODER = EventEncoder()


@dataclass
class RunState:
    """What the translator remembers of one run."""

    text_id: str | None = None  # the open text message, if any
    streamed: list[str] = field(default_factory=list)
    tools: set[str] = field(default_factory=set)


def sse(seq: int, events: list[BaseEvent]) -> str:
    """Encode the AG-UI events made from one of ours, each with `id: <seq>`."""
    return "".join(f"id: {seq}\n{ENCODER.encode(event)}" for event in events)


class Translator:
    """Turns our envelopes into AG-UI events, run by run, in seq order."""

    def __init__(self) -> None:
        self._runs: dict[str, RunState] = {}

    def prime(self, envelopes: list[dict[str, Any]]) -> None:
        """Learn from events a client already has, producing nothing."""
        for envelope in envelopes:
            self.translate(envelope)

    def translate(self, envelope: dict[str, Any]) -> list[BaseEvent]:
        """Return the AG-UI events for one of our events."""
        kind, data = envelope["type"], envelope["data"]
        run_id, thread_id = envelope["run_id"], envelope["thread_id"]
        state = self._runs.setdefault(run_id, RunState())
        ids = {"thread_id": thread_id, "run_id": run_id}
        seq = envelope["seq"]
        if kind == "partial_result":
            return self._text(state, f"{run_id}-m{seq}", data["delta"])
        out = self._close_text(state)
        if kind in ("agent_started", "input_resolved"):
            # input_resolved: the run goes on after an interrupt, as a new AG-UI run.
            out.append(RunStartedEvent(**ids))
        elif kind == "agent_thinking":
            out += _reasoning(f"{run_id}-r{seq}", data["reasoning"])
        elif kind == "tool_executing":
            out += self._tool_start(
                state, data["tool_call_id"], data["tool_name"], data["parameters"]
            )
        elif kind in ("tool_completed", "tool_error"):
            call_id = data["tool_call_id"]
            if call_id not in state.tools:
                # A call refused before it ran (rejected, expired) still opens and closes.
                out += self._tool_start(state, call_id, data["tool_name"], {})
            content = data["result"] if kind == "tool_completed" else {"error": data["error"]}
            out.append(
                ToolCallResultEvent(
                    message_id=f"{call_id}-result",
                    tool_call_id=call_id,
                    content=json.dumps(content, ensure_ascii=False, default=str),
                    role="tool",
                )
            )
        elif kind == "input_requested":
            out.append(RunFinishedEvent(**ids, outcome=_interrupt(data)))
        elif kind == "agent_completed":
            out += self._answer(state, run_id, data["result"])
            usage = data.get("usage")
            out.append(
                RunFinishedEvent(
                    **ids,
                    result=data["result"],
                    outcome=RunFinishedSuccessOutcome(),
                    usage=[TokenUsage(**usage)] if usage else None,
                )
            )
            self._runs.pop(run_id, None)
        elif kind == "agent_error":
            out.append(RunErrorEvent(message=data["error"]["message"], code=data["error"]["code"]))
            self._runs.pop(run_id, None)
        elif kind == "agent_cancelled":
            out.append(RunFinishedEvent(**ids, outcome=RunFinishedCancelledOutcome()))
            self._runs.pop(run_id, None)
        return out

    def _text(self, state: RunState, message_id: str, delta: str) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        if state.text_id is None:
            state.text_id = message_id
            out.append(TextMessageStartEvent(message_id=message_id, role="assistant"))
        state.streamed.append(delta)
        out.append(TextMessageContentEvent(message_id=state.text_id, delta=delta))
        return out

    @staticmethod
    def _close_text(state: RunState) -> list[BaseEvent]:
        if state.text_id is None:
            return []
        message_id, state.text_id = state.text_id, None
        return [TextMessageEndEvent(message_id=message_id)]

    @staticmethod
    def _tool_start(state: RunState, call_id: str, name: str, parameters: Any) -> list[BaseEvent]:
        state.tools.add(call_id)
        return [
            ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name),
            ToolCallArgsEvent(
                tool_call_id=call_id, delta=json.dumps(parameters, ensure_ascii=False, default=str)
            ),
            ToolCallEndEvent(tool_call_id=call_id),
        ]

    @staticmethod
    def _answer(state: RunState, run_id: str, result: str) -> list[BaseEvent]:
        """The answer as a message of its own, unless it is the text already streamed."""
        if not result or "".join(state.streamed).strip() == result.strip():
            return []
        message_id = f"{run_id}-answer"
        return [
            TextMessageStartEvent(message_id=message_id, role="assistant"),
            TextMessageContentEvent(message_id=message_id, delta=result),
            TextMessageEndEvent(message_id=message_id),
        ]


def _reasoning(message_id: str, text: str) -> list[BaseEvent]:
    return [
        ReasoningStartEvent(message_id=message_id),
        ReasoningMessageStartEvent(message_id=message_id, role="reasoning"),
        ReasoningMessageContentEvent(message_id=message_id, delta=text or " "),
        ReasoningMessageEndEvent(message_id=message_id),
        ReasoningEndEvent(message_id=message_id),
    ]


def _interrupt(data: dict[str, Any]) -> RunFinishedInterruptOutcome:
    metadata: dict[str, Any] = {"kind": data["kind"]}
    if data["kind"] == "tool_approval":
        metadata.update(tool_name=data["tool_name"], parameters=data["parameters"])
    return RunFinishedInterruptOutcome(
        interrupts=[
            Interrupt(
                id=data["interrupt_id"],
                reason=data["kind"],
                message=data["message"],
                tool_call_id=data.get("tool_call_id"),
                response_schema=data.get("response_schema"),
                expires_at=data["expires_at"],
                metadata=metadata,
            )
        ]
    )
