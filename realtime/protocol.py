"""Parsing of client -> server frames into validated requests."""

import json
from dataclasses import dataclass
from typing import Any

from agents.runtime.inputs import DECISIONS, InputResolution

CLIENT_TYPES = ("start_agent", "user_message", "stop_agent", "resume", "resolve_input", "ping")
MAX_INTERRUPT_ID_CHARS = 64
MAX_REQUEST_ID_CHARS = 128


class ProtocolError(Exception):
    """A frame that cannot be served; `code` is the wire error code."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Frame:
    """A decoded client frame."""

    type: str
    request_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class StartRequest:
    """A request to run an agent on a message."""

    agent: str
    message: str
    thread_id: str | None
    options: dict[str, Any]
    on_busy: str


def request_id_of(raw: Any) -> str | None:
    """Return the echoable request_id of a parsed frame, if it has a valid one."""
    if isinstance(raw, dict):
        rid = raw.get("request_id")
        if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID_CHARS:
            return rid
    return None


def decode_frame(text: str) -> Frame:
    """Decode a text frame into type, request_id and payload."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {exc.args[0]}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_message", "a frame must be a JSON object")
    rid = request_id_of(raw)
    if raw.get("request_id") is not None and rid is None:
        raise ProtocolError(
            "invalid_message", f"request_id must be a string of at most {MAX_REQUEST_ID_CHARS}"
        )
    frame_type = raw.get("type")
    if not isinstance(frame_type, str) or not frame_type:
        raise ProtocolError("invalid_message", "a frame needs a string 'type'", rid)
    payload = raw.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_message", "'payload' must be a JSON object", rid)
    if frame_type not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {frame_type[:64]!r}", rid)
    return Frame(type=frame_type, request_id=rid, payload=payload)


def _optional_str(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise ProtocolError("invalid_message", f"payload.{name} must be a string or null")
    return value


def _start_request(payload: dict[str, Any], *, text_field: str, agent: str) -> StartRequest:
    message = payload.get(text_field)
    if not isinstance(message, str) or not message.strip():
        raise ProtocolError("invalid_message", f"payload.{text_field} must be a non-empty string")
    options = payload.get("options") or {}
    if not isinstance(options, dict):
        raise ProtocolError("invalid_message", "payload.options must be a JSON object")
    return StartRequest(
        agent=agent,
        message=message,
        thread_id=_optional_str(payload, "thread_id"),
        options=options,
        on_busy=_optional_str(payload, "on_busy") or "enqueue",
    )


def parse_start_agent(payload: dict[str, Any], *, default_agent: str) -> StartRequest:
    """Validate a start_agent payload."""
    agent = _optional_str(payload, "agent") or default_agent
    return _start_request(payload, text_field="message", agent=agent)


def parse_user_message(payload: dict[str, Any], *, default_agent: str) -> StartRequest:
    """Validate a user_message payload (the default agent)."""
    return _start_request(payload, text_field="text", agent=default_agent)


def parse_stop_agent(payload: dict[str, Any]) -> str:
    """Validate a stop_agent payload and return the run id."""
    run_id = payload.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise ProtocolError("invalid_message", "payload.run_id must be a non-empty string")
    return run_id


def parse_resume(payload: dict[str, Any]) -> int:
    """Validate a resume payload and return after_seq."""
    after = payload.get("after_seq")
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ProtocolError("invalid_message", "payload.after_seq must be an integer >= 0")
    return after


def parse_resolve_input(payload: dict[str, Any]) -> InputResolution:
    """Validate a resolve_input payload (its fit to the request is checked by the session)."""
    interrupt_id = payload.get("interrupt_id")
    if (
        not isinstance(interrupt_id, str)
        or not interrupt_id
        or len(interrupt_id) > MAX_INTERRUPT_ID_CHARS
    ):
        raise ProtocolError("invalid_message", "payload.interrupt_id must be a non-empty string")
    decision = payload.get("decision")
    if decision not in DECISIONS:
        raise ProtocolError(
            "invalid_message", f"payload.decision must be one of {', '.join(DECISIONS)}"
        )
    message = _optional_str(payload, "message") or ""
    parameters = payload.get("parameters")
    if decision == "edit" and not isinstance(parameters, dict):
        raise ProtocolError("invalid_message", "an edit needs payload.parameters, a JSON object")
    if decision == "answer" and "answer" not in payload:
        raise ProtocolError("invalid_message", "an answer needs payload.answer")
    return InputResolution(
        interrupt_id=interrupt_id,
        decision=decision,
        message=message,
        parameters=parameters if decision == "edit" else None,
        answer=payload.get("answer"),
    )
