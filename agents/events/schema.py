"""The one declaration of every agent event type and its data fields."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.events.sanitize import sanitize_parameters, sanitize_result


class EventSchemaError(ValueError):
    """An event does not match its declared schema."""


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_progress(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 100


def _is_duration(v: Any) -> bool:
    return _is_int(v) and v >= 0


def _is_any(v: Any) -> bool:
    return True


def _is_error(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"code", "message"}
        and _is_str(v["code"])
        and _is_str(v["message"])
    )


def _is_completed(v: Any) -> bool:
    return v == "completed"


def _is_usage(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and set(v) == {"input_tokens", "output_tokens"}
        and all(_is_int(n) and n >= 0 for n in v.values())
    )


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _is_schema(v: Any) -> bool:
    return isinstance(v, dict | bool)


INPUT_KINDS = ("tool_approval", "question")
INPUT_OUTCOMES = (
    "approved",
    "edited",
    "rejected",
    "answered",
    "expired",
    "cancelled",
    "interrupted",
)
INPUT_DECIDERS = ("user", "timeout", "cancel", "shutdown")


@dataclass(frozen=True)
class EventType:
    """The data fields of one event type and how they are sanitised."""

    name: str
    fields: dict[str, Callable[[Any], bool]]
    terminal: bool = False
    # Fields that may be left out (all others must be there).
    optional: dict[str, Callable[[Any], bool]] = dataclasses.field(default_factory=dict)
    sanitizers: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    # Worked out once here, not per event (every emit checks its data against them).
    required: frozenset[str] = dataclasses.field(init=False)
    allowed: frozenset[str] = dataclasses.field(init=False)
    checks: dict[str, Callable[[Any], bool]] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", frozenset(self.fields))
        object.__setattr__(self, "allowed", frozenset(self.fields) | frozenset(self.optional))
        object.__setattr__(self, "checks", {**self.fields, **self.optional})


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("agent_started", {"message": _is_str}),
        EventType(
            "agent_thinking", {"reasoning": _is_str, "step": _is_int, "progress": _is_progress}
        ),
        EventType(
            "tool_executing",
            {"tool_name": _is_str, "tool_call_id": _is_str, "parameters": _is_any},
            sanitizers=(("parameters", sanitize_parameters),),
        ),
        EventType(
            "tool_completed",
            {
                "tool_name": _is_str,
                "tool_call_id": _is_str,
                "result": _is_any,
                "duration_ms": _is_duration,
            },
            sanitizers=(("result", sanitize_result),),
        ),
        EventType(
            "tool_error",
            {
                "tool_name": _is_str,
                "tool_call_id": _is_str,
                "error": _is_str,
                "duration_ms": _is_duration,
            },
        ),
        EventType("partial_result", {"delta": _is_str}),
        EventType(
            "input_requested",
            {
                "interrupt_id": _is_str,
                "kind": _one_of(*INPUT_KINDS),
                "message": _is_str,
                "expires_at": _is_str,
            },
            optional={
                "tool_name": _is_str,
                "tool_call_id": _is_str,
                "parameters": _is_any,
                "response_schema": _is_schema,
            },
            sanitizers=(("parameters", sanitize_parameters),),
        ),
        EventType(
            "input_resolved",
            {
                "interrupt_id": _is_str,
                "outcome": _one_of(*INPUT_OUTCOMES),
                "by": _one_of(*INPUT_DECIDERS),
            },
            optional={"answer": _is_any},
            sanitizers=(("answer", sanitize_result),),
        ),
        EventType(
            "agent_completed",
            {"status": _is_completed, "result": _is_str, "duration_ms": _is_duration},
            terminal=True,
            optional={"usage": _is_usage},
        ),
        EventType("agent_error", {"error": _is_error}, terminal=True),
        EventType("agent_cancelled", {"reason": _is_str}, terminal=True),
    )
}

TERMINAL_TYPES = frozenset(name for name, t in EVENT_TYPES.items() if t.terminal)

ENVELOPE_FIELDS = ("type", "seq", "run_id", "thread_id", "agent_name", "timestamp", "data")


def clean_event_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check `data` against the schema of `event_type` and return it sanitised."""
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        raise EventSchemaError(f"unknown event type {event_type!r}")
    if not isinstance(data, dict) or not spec.required <= data.keys() <= spec.allowed:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise EventSchemaError(
            f"{event_type}: fields {got} != {sorted(spec.fields)}"
            f" (+ any of {sorted(spec.optional)})"
        )
    cleaned = dict(data)
    for name, sanitize in spec.sanitizers:
        if name in cleaned:
            cleaned[name] = sanitize(cleaned[name])
    for name, value in cleaned.items():
        if not spec.checks[name](value):
            raise EventSchemaError(f"{event_type}.{name}: bad value {value!r}")
    return cleaned


def check_envelope(envelope: dict[str, Any]) -> None:
    """Raise EventSchemaError unless `envelope` is a well-formed agent event."""
    if tuple(sorted(envelope)) != tuple(sorted(ENVELOPE_FIELDS)):
        raise EventSchemaError(f"envelope fields {sorted(envelope)}")
    if not _is_int(envelope["seq"]) or envelope["seq"] < 1:
        raise EventSchemaError("seq must be a positive integer")
    for field in ("run_id", "thread_id", "agent_name", "timestamp"):
        if not _is_str(envelope[field]) or not envelope[field]:
            raise EventSchemaError(f"{field} must be a non-empty string")
    if clean_event_data(envelope["type"], envelope["data"]) != envelope["data"]:
        raise EventSchemaError("data was not sanitised")
